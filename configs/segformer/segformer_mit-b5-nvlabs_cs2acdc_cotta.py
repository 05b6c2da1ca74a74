# NVlabs' SegFormer-B5 (Cityscapes; checkpoint from tools/convert_segformer_checkpoint.py)
# adapted online with CoTTA over the Cityscapes->ACDC continual stream, with CoTTA's 14
# test-time-augmented views from the original image, inferred in slide mode
# (configs/_base_/datasets/acdc_continual_cotta.py) and Adam lr 6e-5/8
# on all parameters.
_base_ = ['../_base_/models/segformer_mit-b5-nvlabs_cityscapes.py',
          '../_base_/datasets/acdc_continual_cotta.py']
model = dict(test_cfg={{_base_.cotta_test_cfg}})  # CoTTA's slide inference of the views
test_dataloader = {{_base_.stream_dataloader}}
test_evaluator = {{_base_.stream_evaluator}}
test_cfg = {{_base_.stream_loop}}
