# TENT + STAG on the offline demo stream: the TENT config plus the STAG hook.
_base_ = './segformer_mini_demo-acdc_tent.py'
custom_hooks = [dict(type='STAGHook')]  # STAG's defaults (README: Choosing STAG's defaults)
