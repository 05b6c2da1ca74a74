# The demo source model adapted with TENT over the offline demo stream (tools/demo.py).
_base_ = ['./segformer_mini_minicity.py', '../_base_/datasets/demo_acdc_continual.py']
test_dataloader = {{_base_.stream_dataloader}}
test_evaluator = {{_base_.stream_evaluator}}
test_cfg = {{_base_.stream_loop}}
