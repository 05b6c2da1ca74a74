# CoTTA + STAG: the CoTTA config plus the STAG hook on the student's forward (defaults: see
# README, "Choosing the defaults").
_base_ = './segformer_mit-b5_cs2acdc_cotta.py'
custom_hooks = [dict(type='STAGHook', loss_weight=2.0, grad_space='classifier', tau=1.0)]
