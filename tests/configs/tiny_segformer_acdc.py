# A tiny SegFormer (MiT + SegformerHead) on the ACDC stream: fast enough for engine tests.
# Tests set the data root, input size and rounds with cfg_options (tests/engine_utils.py).
_base_ = [
    'mmseg::_base_/models/segformer_mit-b0.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_20k.py',
    '../../configs/_base_/datasets/acdc_continual.py'
]
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=None),
    backbone=dict(embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 2, 5, 8]),
    decode_head=dict(in_channels=[8, 16, 40, 64], channels=16, norm_cfg=norm_cfg),
    test_cfg=dict(mode='whole'))
test_dataloader = {{_base_.stream_dataloader}}
test_evaluator = {{_base_.stream_evaluator}}
test_cfg = {{_base_.stream_loop}}
