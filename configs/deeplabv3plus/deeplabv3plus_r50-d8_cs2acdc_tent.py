# DeepLabV3+ R50-D8 (Cityscapes) adapted online with TENT over the Cityscapes->ACDC stream.
# mmseg's own config + the stream (three lines); variants below change only the method.
_base_ = [
    '../_base_/models/deeplabv3plus_r50-d8_cityscapes.py', '../_base_/datasets/acdc_continual.py'
]
test_dataloader = {{_base_.stream_dataloader}}
test_evaluator = {{_base_.stream_evaluator}}
test_cfg = {{_base_.stream_loop}}
