# SegFormer MiT-B5 for Cityscapes (19 classes): plain BN, whole-image inference, no downloads.
_base_ = 'mmseg::segformer/segformer_mit-b5_8xb1-160k_cityscapes-1024x1024.py'

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    backbone=dict(init_cfg=None),
    decode_head=dict(norm_cfg=norm_cfg),
    test_cfg=dict(_delete_=True, mode='whole'))
