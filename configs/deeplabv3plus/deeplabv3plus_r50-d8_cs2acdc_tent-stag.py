# TENT + STAG: the TENT config plus the STAG hook.
_base_ = './deeplabv3plus_r50-d8_cs2acdc_tent.py'
custom_hooks = [dict(type='STAGHook')]  # STAG's defaults (README: Choosing STAG's defaults)
