# The demo source model adapted with EATA over the offline demo stream; the Fisher regulariser
# comes from 100 mini-Cityscapes train images (the forgetting check scores val).
_base_ = './segformer_mini_demo-acdc_tent.py'
test_cfg = dict(method=dict(
    type='eata', e_margin=None, d_margin=None, fisher_alpha=2000.0, fisher_size=100,
    fisher_dataset=dict(
        type='CityscapesDataset', data_root='data/demo/cityscapes/',
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='Resize', scale=(256, 128), keep_ratio=True),
                  dict(type='PackSegInputs')])))
