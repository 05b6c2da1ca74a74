# NVlabs' SegFormer-B5 (Cityscapes) scored over the Cityscapes->ACDC stream without adaptation.
_base_ = './segformer_mit-b5-nvlabs_cs2acdc_tent.py'
test_cfg = dict(method=dict(type='source'))
