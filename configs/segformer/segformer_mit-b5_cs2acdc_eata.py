# segformer_mit-b5 (Cityscapes) adapted online with EATA over the Cityscapes->ACDC stream
# (configs/_base_/methods/eata.py: per-pixel filters, Fisher from 500 Cityscapes train images).
_base_ = ['./segformer_mit-b5_cs2acdc_tent.py', '../_base_/methods/eata.py']
test_cfg = dict(method={{_base_.eata_method}})
