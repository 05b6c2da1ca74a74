# CoTTA + STAG on the offline demo stream: the CoTTA config plus the STAG hook.
_base_ = './segformer_mini_demo-acdc_cotta.py'
custom_hooks = [dict(type='STAGHook', loss_weight=2.0, grad_space='classifier', tau=1.0)]
