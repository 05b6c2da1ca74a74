# CoTTA on the offline demo stream: the demo's base view (256x128) and CoTTA's 14 views
# (configs/_base_/datasets/cotta_views.py), for the adapted stream and the clean_val forgetting
# check alike (CoTTA's prediction is its anchor-gated ensemble); the demo's Adam lr 1e-4.
_base_ = ['./segformer_mini_demo-acdc_tent.py', '../_base_/datasets/cotta_views.py']

demo_cotta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadExactAnnotations'),
    {{_base_.cotta_views}},
]
test_dataloader = dict(dataset=dict(pipeline=demo_cotta_pipeline))
test_cfg = dict(method=dict(_delete_=True, type='cotta'),
                forgetting=dict(dataset=dict(pipeline=demo_cotta_pipeline)))
