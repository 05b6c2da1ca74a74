"""TENT (Wang et al., ICLR 2021): entropy minimisation on the affine parameters of norm layers."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from stag_seg.methods.base import TTAMethod
from stag_seg.methods.norm import norm_affine_params, use_test_batch_statistics
from stag_seg.ops import softmax_entropy
from stag_seg.registry import TTA_METHODS
from stag_seg.step.context import StepContext


@TTA_METHODS.register_module(name='tent')
class Tent(TTAMethod):
    """TENT: mean per-pixel softmax entropy of the classifier's logits (float32).

    Only the affine parameters of normalisation layers adapt (selected by module type);
    BatchNorm layers normalise with test-batch statistics (see
    :func:`~stag_seg.methods.norm.use_test_batch_statistics`).
    """

    updates = True
    capturable = True

    def configure_model(self, model: nn.Module) -> None:
        super().configure_model(model)
        for param in norm_affine_params(model):
            param.requires_grad_(True)
        use_test_batch_statistics(model)

    def collect_params(self, model: nn.Module) -> list[nn.Parameter]:
        return norm_affine_params(model)

    def loss(self, ctx: StepContext) -> dict[str, Tensor]:
        return {'loss_entropy': softmax_entropy(ctx.logits.float(), dim=1).mean()}


@TTA_METHODS.register_module(name='tent-pl')
class TentPseudoLabel(Tent):
    """Cross-entropy with the model's own argmax (what the CoTTA code calls TENT)."""

    def loss(self, ctx: StepContext) -> dict[str, Tensor]:
        logits = ctx.logits.float()
        return {'loss_pseudo_label': F.cross_entropy(logits, logits.detach().argmax(1))}
