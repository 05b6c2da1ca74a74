# deeplabv3plus_r50-d8 (Cityscapes) scored over the Cityscapes->ACDC stream without adaptation.
_base_ = './deeplabv3plus_r50-d8_cs2acdc_tent.py'
test_cfg = dict(method=dict(type='source'))
