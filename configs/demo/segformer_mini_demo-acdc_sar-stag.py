# SAR + STAG on the offline demo stream: the SAR config plus the STAG hook.
_base_ = './segformer_mini_demo-acdc_sar.py'
custom_hooks = [dict(type='STAGHook', loss_weight=2.0, grad_space='classifier', tau=1.0)]
