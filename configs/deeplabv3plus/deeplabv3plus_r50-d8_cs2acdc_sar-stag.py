# SAR + STAG: the SAR config plus the STAG hook (its term joins both SAM passes).
_base_ = './deeplabv3plus_r50-d8_cs2acdc_sar.py'
custom_hooks = [dict(type='STAGHook', loss_weight=2.0, grad_space='classifier', tau=1.0)]
