"""Model parts for the literature's source model: NVlabs SegFormer's head and MiT norms."""
from stag_seg.models.nv_mit import NVMixVisionTransformer
from stag_seg.models.nv_segformer_head import NVSegFormerHead, TokenLinear

__all__ = ['NVMixVisionTransformer', 'NVSegFormerHead', 'TokenLinear']
