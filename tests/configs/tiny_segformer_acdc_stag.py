# The tiny SegFormer stream config plus the STAG hook: "mmseg's config + one line".
_base_ = './tiny_segformer_acdc.py'
custom_hooks = [dict(type='STAGHook', loss_weight=1.0)]
