# NVlabs' SegFormer-B5: the CoTTA config plus the STAG hook on the student's forward (defaults:
# see README, "Choosing the defaults"); the classifier STAG uses is the head's conv_seg.
_base_ = './segformer_mit-b5-nvlabs_cs2acdc_cotta.py'
custom_hooks = [dict(type='STAGHook')]  # STAG's defaults (README: Choosing STAG's defaults)
