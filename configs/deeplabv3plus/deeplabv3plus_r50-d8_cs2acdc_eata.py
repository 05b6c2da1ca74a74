# DeepLabV3+ R50-D8 (Cityscapes) adapted online with EATA over the Cityscapes->ACDC
# stream: per-pixel reliable-entropy weighting and the Fisher regulariser from 500 Cityscapes
# train images (labels unused; computed before the first update; kept in the resume state).
_base_ = './deeplabv3plus_r50-d8_cs2acdc_tent.py'
test_cfg = dict(method=dict(
    type='eata',
    e_margin=None,          # E0 in nats; None: 0.4 ln K
    d_margin=None,          # redundancy filter off (EATA's 0.05 assumes 1000 classes)
    fisher_alpha=2000.0,
    fisher_size=500,
    fisher_dataset=dict(
        type='CityscapesDataset', data_root='data/cityscapes/',
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='Resize', scale=(960, 540), keep_ratio=True),
                  dict(type='PackSegInputs')])))
