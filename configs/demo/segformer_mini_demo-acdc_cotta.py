# CoTTA on the offline demo stream with the settings of CoTTA's code (as the Cityscapes-to-ACDC
# CoTTA configs): its 14 views made from the loaded 512x256 image (MultiScaleFlipViews around
# the demo's 256x128 base view, ratios 0.5 ... 2.0, flipped and not), for the adapted stream and
# the clean_val forgetting check alike (CoTTA's prediction is its anchor-gated ensemble); the
# student's loss at the label's resolution; a new Adam at each domain visit; the demo's lr 1e-4.
# The demo model's views all fit one forward: mode='whole' (slide inference changes nothing).
_base_ = ['./segformer_mini_demo-acdc_tent.py', '../_base_/datasets/cotta_views.py']

demo_cotta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadExactAnnotations'),
    dict(type='MultiScaleFlipViews', scale=(256, 128), ratios={{_base_.cotta_ratios}},
         flip=True),
]
test_dataloader = dict(dataset=dict(pipeline=demo_cotta_pipeline))
test_cfg = dict(method=dict(_delete_=True, type='cotta', loss_resolution='label'),
                optimizer_reset='domain',
                forgetting=dict(dataset=dict(pipeline=demo_cotta_pipeline)))
