# segformer_mit-b5 (Cityscapes) adapted online with TENT over the Cityscapes->ACDC continual stream.
# mmseg's own config + the stream (three lines); variants below change only the method.
_base_ = ['../_base_/models/segformer_mit-b5_cityscapes.py', '../_base_/datasets/acdc_continual.py']
test_dataloader = {{_base_.stream_dataloader}}
test_evaluator = {{_base_.stream_evaluator}}
test_cfg = {{_base_.stream_loop}}
