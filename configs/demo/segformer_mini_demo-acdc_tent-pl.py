# TENT-PL on the offline demo stream with the settings of CoTTA's code for its TENT
# (single_gpu_tent, as the Cityscapes-to-ACDC tent-pl configs): eval mode (BatchNorm on its
# running statistics), the hard pseudo-label's cross-entropy at the label's resolution, a new
# Adam at each domain visit; the demo's lr 1e-4.
_base_ = ['./segformer_mini_demo-acdc_tent.py']
test_cfg = dict(method=dict(_delete_=True, type='tent-pl', loss_resolution='label'),
                optimizer_reset='domain')
