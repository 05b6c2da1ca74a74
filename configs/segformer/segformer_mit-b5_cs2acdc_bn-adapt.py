# segformer_mit-b5 (Cityscapes) over the Cityscapes->ACDC stream with BN-adapt: BatchNorm layers
# normalise with the test batch's statistics, no gradient step. Only the decode head's fusion
# BatchNorm changes (the MiT backbone has LayerNorm only; README, method table).
_base_ = './segformer_mit-b5_cs2acdc_tent.py'
test_cfg = dict(method=dict(type='bn-adapt'))
