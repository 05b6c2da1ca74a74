# EATA + STAG on the offline demo stream: the EATA config plus the STAG hook.
_base_ = './segformer_mini_demo-acdc_eata.py'
custom_hooks = [dict(type='STAGHook')]  # STAG's defaults (README: Choosing STAG's defaults)
