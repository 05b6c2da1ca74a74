# NVlabs' SegFormer-B5: the TENT config plus the STAG hook (defaults: see README,
# "Choosing the defaults"); the classifier STAG uses is the head's conv_seg.
_base_ = './segformer_mit-b5-nvlabs_cs2acdc_tent.py'
custom_hooks = [dict(type='STAGHook', loss_weight=2.0, grad_space='classifier', tau=1.0)]
