# The demo source model with BN-adapt over the offline demo stream: its decode head's BatchNorm
# normalises with test-batch statistics (the MiT backbone has LayerNorm only); no update.
_base_ = './segformer_mini_demo-acdc_tent.py'
test_cfg = dict(method=dict(type='bn-adapt'))
