"""MiT backbone with NVlabs SegFormer's LayerNorm eps: 1e-5 in patch embeddings and attention
spatial reduction, ``norm_cfg`` (1e-6) in the blocks and at each stage's end."""
from __future__ import annotations

from mmseg.models.backbones import MixVisionTransformer
from mmseg.registry import MODELS
from torch import nn


@MODELS.register_module()
class NVMixVisionTransformer(MixVisionTransformer):
    """mmseg's ``MixVisionTransformer`` with NVlabs' two other LayerNorm eps.

    NVlabs' MiT builds the patch-embedding norms and the spatial-reduction norms as plain
    ``nn.LayerNorm`` (eps 1e-5) and only the block and stage-end norms with eps 1e-6, while
    mmseg builds every norm from one ``norm_cfg``. Layout and weights are mmseg's.

    Args:
        patch_norm_eps: eps of the norm after each stage's overlapping patch embedding.
        sr_norm_eps: eps of the norm after each attention's spatial-reduction conv
            (the blocks of stages with ``sr_ratio > 1``).
        **kwargs: ``MixVisionTransformer`` arguments (``norm_cfg`` sets the other norms).
    """

    def __init__(self, patch_norm_eps: float = 1e-5, sr_norm_eps: float = 1e-5,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        for patch_embed, blocks, _ in self.layers:
            _set_eps(patch_embed.norm, patch_norm_eps, 'patch_norm_eps')
            for block in blocks:
                if block.attn.sr_ratio > 1:
                    _set_eps(block.attn.norm, sr_norm_eps, 'sr_norm_eps')


def _set_eps(norm: nn.Module, eps: float, option: str) -> None:
    if not isinstance(norm, nn.LayerNorm):
        raise ValueError(f'NVMixVisionTransformer: {option} needs LayerNorm norms, '
                         f'got {type(norm).__name__} (norm_cfg must be LN)')
    norm.eps = eps
