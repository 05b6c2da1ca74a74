# EATA + STAG: the EATA config plus the STAG hook (defaults: see README, "Choosing the defaults").
_base_ = './segformer_mit-b5_cs2acdc_eata.py'
custom_hooks = [dict(type='STAGHook', loss_weight=2.0, grad_space='classifier', tau=1.0)]
