"""Fused attention for mmseg's MiT (SegFormer's backbone): the same weights, one SDPA kernel.

mmseg's ``EfficientMultiheadAttention`` asks its ``nn.MultiheadAttention`` for the attention
weights as well, so torch computes ``softmax(QK^T)V`` as explicit batched matmuls in the
forward's precision (35 % of a SegFormer-B5 TENT step's GPU time on an H200). Asking for the
output only lets torch take ``F.scaled_dot_product_attention`` (flash / memory-efficient
kernels; in bf16 on CUDA the flash kernel). The module tree and the parameter names stay as
they are, so every checkpoint and resume state loads key for key.
"""
from __future__ import annotations

from mmseg.models.backbones.mit import EfficientMultiheadAttention, MixVisionTransformer
from mmseg.registry import MODELS
from torch import Tensor, nn


class OutputOnlyMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` that never returns the attention weights (its second output
    is None), so torch runs scaled-dot-product attention as one fused kernel."""

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                **kwargs) -> tuple[Tensor, None]:
        kwargs['need_weights'] = False
        return super().forward(query, key, value, **kwargs)


def use_fused_attention(model: nn.Module) -> int:
    """Makes the attention of every MiT block of ``model`` a fused SDPA call, in place.

    Returns how many attention modules were switched (0: the model has no MiT attention,
    e.g. DeepLabV3+). Parameters, buffers and their names are unchanged.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, EfficientMultiheadAttention) and type(module.attn) is \
                nn.MultiheadAttention:
            module.attn.__class__ = OutputOnlyMultiheadAttention
            count += 1
    return count


@MODELS.register_module()
class FusedMixVisionTransformer(MixVisionTransformer):
    """mmseg's ``MixVisionTransformer`` with fused attention (:func:`use_fused_attention`):
    ``backbone=dict(type='FusedMixVisionTransformer', ...)`` takes the same arguments and
    loads the same checkpoints."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        use_fused_attention(self)
