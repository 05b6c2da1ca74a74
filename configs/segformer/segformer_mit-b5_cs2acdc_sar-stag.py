# SAR + STAG: the SAR config plus the STAG hook (its term joins both SAM passes).
_base_ = './segformer_mit-b5_cs2acdc_sar.py'
custom_hooks = [dict(type='STAGHook')]  # STAG's defaults (README: Choosing STAG's defaults)
