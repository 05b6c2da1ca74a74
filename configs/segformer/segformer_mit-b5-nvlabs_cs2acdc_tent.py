# NVlabs' SegFormer-B5 (Cityscapes; checkpoint from tools/convert_segformer_checkpoint.py)
# adapted online with TENT over the Cityscapes->ACDC continual stream (the CoTTA protocol).
_base_ = ['../_base_/models/segformer_mit-b5-nvlabs_cityscapes.py',
          '../_base_/datasets/acdc_continual.py']
test_dataloader = {{_base_.stream_dataloader}}
test_evaluator = {{_base_.stream_evaluator}}
test_cfg = {{_base_.stream_loop}}
