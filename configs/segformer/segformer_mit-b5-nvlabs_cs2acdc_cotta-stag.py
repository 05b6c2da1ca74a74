# NVlabs' SegFormer-B5: the CoTTA config plus the STAG hook on the student's forward (defaults:
# see README, "Choosing the defaults"); the classifier STAG uses is the head's conv_seg.
_base_ = './segformer_mit-b5-nvlabs_cs2acdc_cotta.py'
custom_hooks = [dict(type='STAGHook', loss_weight=2.0, grad_space='classifier', tau=1.0)]
