# SAR + STAG on the offline demo stream: the SAR config plus the STAG hook.
_base_ = './segformer_mini_demo-acdc_sar.py'
custom_hooks = [dict(type='STAGHook')]  # STAG's defaults (README: Choosing STAG's defaults)
