# Cityscapes -> ACDC continual test-time adaptation stream (the CoTTA protocol):
# fog -> night -> rain -> snow, ACDC train split (400 images each), 10 rounds, inputs resized
# to 960x540 keeping the ratio, predictions scored at the label's full resolution.
#
# A model config that inherits a full mmseg config takes this stream with three lines:
#   test_dataloader = {{_base_.stream_dataloader}}
#   test_evaluator = {{_base_.stream_evaluator}}
#   test_cfg = {{_base_.stream_loop}}
# (mmengine forbids the same key in two bases, so the stream is named stream_* here and each
# dict carries _delete_=True to replace mmseg's test settings rather than merge into them.)
acdc_data_root = 'data/acdc/'
acdc_conditions = ['fog', 'night', 'rain', 'snow']
stream_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(960, 540), keep_ratio=True),
    dict(type='LoadExactAnnotations'),  # after Resize: labels at full resolution, ids as stored
    dict(type='PackSegInputs'),
]
stream_dataloader = dict(
    _delete_=True,
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    # the template every domain's dataset is merged onto
    dataset=dict(type='ACDCDataset', data_root=acdc_data_root, split='train',
                 pipeline=stream_pipeline))
stream_evaluator = dict(_delete_=True, type='IoUMetric', iou_metrics=['mIoU'])
stream_loop = dict(
    _delete_=True,
    type='ContinualTTALoop',
    domains=[dict(name=c, dataset=dict(condition=c)) for c in acdc_conditions],
    num_rounds=10,
    order='sequential',          # or 'mixed', 'dirichlet' (see the README's stream options)
    method=dict(type='tent'),    # source | bn-adapt | tent | tent-pl | eata | sar | cotta
    optimizer=dict(type='Adam', lr=6e-5 / 8, betas=(0.9, 0.999)),
    reset='never',
    # forgetting=dict(name='cityscapes_val', dataset=dict(type='CityscapesDataset', ...)),
)
