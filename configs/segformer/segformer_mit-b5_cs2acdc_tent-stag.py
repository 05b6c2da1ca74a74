# TENT + STAG: the TENT config plus the STAG hook.
_base_ = './segformer_mit-b5_cs2acdc_tent.py'
custom_hooks = [dict(type='STAGHook')]  # STAG's defaults (README: Choosing STAG's defaults)
