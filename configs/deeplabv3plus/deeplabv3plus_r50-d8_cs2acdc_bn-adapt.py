# DeepLabV3+ R50-D8 (Cityscapes) over the Cityscapes->ACDC stream with BN-adapt: every
# BatchNorm normalises with the test batch's statistics (the ASPP image pool, one value per
# channel at batch size 1, keeps the source statistics), no gradient step.
_base_ = './deeplabv3plus_r50-d8_cs2acdc_tent.py'
test_cfg = dict(method=dict(type='bn-adapt'))
