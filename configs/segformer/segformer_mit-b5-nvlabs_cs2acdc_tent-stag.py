# NVlabs' SegFormer-B5: the TENT config plus the STAG hook (defaults: see README,
# "Choosing the defaults"); the classifier STAG uses is the head's conv_seg.
_base_ = './segformer_mit-b5-nvlabs_cs2acdc_tent.py'
custom_hooks = [dict(type='STAGHook')]  # STAG's defaults (README: Choosing STAG's defaults)
