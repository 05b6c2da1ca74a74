# TENT with hard pseudo-labels (cross-entropy with the model's argmax; CoTTA's "TENT").
_base_ = './segformer_mit-b5_cs2acdc_tent.py'
test_cfg = dict(method=dict(type='tent-pl'))
