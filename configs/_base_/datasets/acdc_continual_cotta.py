# The Cityscapes -> ACDC stream (acdc_continual.py) with CoTTA's 14 test-time-augmented views
# (cotta_views.py), made from the loaded 1920x1080 image as in CoTTA's code; the base view
# (960x540 keeping the ratio) and the label at full resolution are exactly what every other
# method gets. A model config using it sets its model's test_cfg to cotta_test_cfg (CoTTA's
# slide inference of the views).
_base_ = ['./acdc_continual.py', './cotta_views.py']

cotta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadExactAnnotations'),
    {{_base_.cotta_views}},
]
stream_dataloader = dict(dataset=dict(pipeline=cotta_pipeline))
# As CoTTA's code: a new Adam at each domain visit (single_gpu_cotta runs once per domain and
# round), the student's loss on its logits resized to the pseudo-label's full resolution
stream_loop = dict(method=dict(type='cotta', alpha=0.999, threshold=0.69, restore_prob=0.01,
                               loss_resolution='label'),
                   optimizer_reset='domain')
