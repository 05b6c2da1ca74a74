# DeepLabV3+ R50-D8 (Cityscapes) adapted online with SAR over the Cityscapes->ACDC
# stream: per-pixel reliable entropy, sharpness-aware minimisation (two passes per image) and
# model recovery.
_base_ = './deeplabv3plus_r50-d8_cs2acdc_tent.py'
test_cfg = dict(method=dict(
    type='sar',
    margin_e0=None,           # E0 in nats; None: 0.4 ln K
    rho=0.05,
    reset_constant_em=None))  # recovery threshold in nats; None: 0.2 ln K / ln 1000
