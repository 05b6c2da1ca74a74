# The demo source model scored over the offline demo stream without adaptation.
_base_ = './segformer_mini_demo-acdc_tent.py'
test_cfg = dict(method=dict(type='source'))
