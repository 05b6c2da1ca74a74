# TENT with hard pseudo-labels (cross-entropy with the model's argmax; CoTTA's "TENT").
_base_ = './segformer_mit-b5_cs2acdc_tent.py'
# CoTTA's code builds a new Adam at each domain visit (single_gpu_tent): optimizer_reset='domain'
test_cfg = dict(method=dict(type='tent-pl'), optimizer_reset='domain')
