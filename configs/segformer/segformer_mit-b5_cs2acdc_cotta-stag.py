# CoTTA + STAG: the CoTTA config plus the STAG hook on the student's forward (defaults: see
# README, "Choosing the defaults").
_base_ = './segformer_mit-b5_cs2acdc_cotta.py'
custom_hooks = [dict(type='STAGHook')]  # STAG's defaults (README: Choosing STAG's defaults)
