# NVlabs' SegFormer-B5 for Cityscapes (segformer.b5.1024x1024.city.160k.pth, the CTTA literature's
# source model): our mmseg MiT-B5 config + NVlabs' decode head and LayerNorm eps.
# Weights: tools/convert_segformer_checkpoint.py turns the NVlabs or HuggingFace file into a
# checkpoint of this model (NVIDIA's non-commercial licence applies to those weights).
_base_ = './segformer_mit-b5_cityscapes.py'

model = dict(
    backbone=dict(type='NVMixVisionTransformer', patch_norm_eps=1e-5, sr_norm_eps=1e-5),
    decode_head=dict(type='NVSegFormerHead', channels=768))  # channels: NVlabs' embed_dim
