# NVlabs' SegFormer-B5: TENT with hard pseudo-labels (cross-entropy with the argmax, CoTTA's TENT).
_base_ = './segformer_mit-b5-nvlabs_cs2acdc_tent.py'
test_cfg = dict(method=dict(type='tent-pl'))
