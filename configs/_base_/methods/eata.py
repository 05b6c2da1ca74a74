# EATA for the Cityscapes -> ACDC stream: per-pixel reliable-entropy weighting and the Fisher
# regulariser from 500 Cityscapes train images (labels unused; computed before the first
# update; kept in the resume state). A stream config takes it with
#   _base_ = ['./<model>_cs2acdc_tent.py', '../_base_/methods/eata.py']
#   test_cfg = dict(method={{_base_.eata_method}})
eata_method = dict(
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
                  dict(type='PackSegInputs')]))
