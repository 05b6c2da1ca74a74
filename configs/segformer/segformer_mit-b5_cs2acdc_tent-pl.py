# TENT with hard pseudo-labels (cross-entropy with the model's argmax; CoTTA's "TENT").
_base_ = './segformer_mit-b5_cs2acdc_tent.py'
# As CoTTA's code (single_gpu_tent): eval mode (tent-pl's), a new Adam at each domain visit,
# the loss on logits resized to the prediction's full resolution
test_cfg = dict(method=dict(type='tent-pl', loss_resolution='label'), optimizer_reset='domain')
