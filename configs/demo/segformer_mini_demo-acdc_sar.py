# The demo source model adapted with SAR (two SAM passes per image, model recovery) over the
# offline demo stream.
_base_ = './segformer_mini_demo-acdc_tent.py'
test_cfg = dict(method=dict(type='sar', margin_e0=None, rho=0.05, reset_constant_em=None))
