# CoTTA + STAG on the offline demo stream: the CoTTA config plus the STAG hook.
_base_ = './segformer_mini_demo-acdc_cotta.py'
custom_hooks = [dict(type='STAGHook')]  # STAG's defaults (README: Choosing STAG's defaults)
