# The Cityscapes -> ACDC stream (acdc_continual.py) with CoTTA's test-time-augmented views.
#
# Every image goes through the stream's own steps (the base view: Resize to 960x540 keeping the
# ratio, the label at full resolution), then mmcv's TestTimeAug makes CoTTA's 14 views: the base
# view scaled by each of cotta_scales (scale_factor is relative to the base view), each without
# and with a horizontal flip, scales outermost: (0.5, no flip), (0.5, flip), (0.75, no flip), ...
# View 4, (1.0, no flip), is the base view (the student's input, as every other method's);
# TestTimeAugSharedLabel flags it and packs the label once, on it alone.
_base_ = './acdc_continual.py'

cotta_scales = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
cotta_views = dict(
    type='TestTimeAugSharedLabel',
    transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in cotta_scales],
        [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
         dict(type='RandomFlip', prob=1.0, direction='horizontal')],
        [dict(type='PackSegInputs')],
    ])
cotta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(960, 540), keep_ratio=True),
    dict(type='LoadExactAnnotations'),
    cotta_views,
]
stream_dataloader = dict(dataset=dict(pipeline=cotta_pipeline))
stream_loop = dict(method=dict(type='cotta', alpha=0.999, threshold=0.69, restore_prob=0.01))
