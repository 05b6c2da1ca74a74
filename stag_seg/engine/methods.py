"""Test-time adaptation methods: which parameters adapt, norm-layer modes, and the loss.

Each method is a small class registered in ``TTA_METHODS`` and chosen in the config by
``test_cfg.method=dict(type='tent')``. Loss terms of plug-ins (STAG) are added by hooks.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from stag_seg.registry import TTA_METHODS
from stag_seg.stag.entropy import softmax_entropy

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
              nn.modules.instancenorm._InstanceNorm)


class TTAMethod:
    """Base: adapts nothing. Subclasses choose the trainable parameters and the loss."""

    #: whether the method updates the model (runs the forward with gradients)
    updates = False

    def configure_model(self, model: nn.Module) -> None:
        """Puts ``model`` in its test-time mode and freezes everything."""
        model.eval()
        model.requires_grad_(False)

    def collect_params(self, model: nn.Module) -> list[nn.Parameter]:
        return []

    def loss(self, logits: Tensor) -> dict[str, Tensor]:
        """Base loss from the classifier's logits, (N, K, h, w) or (P, K)."""
        return {}


@TTA_METHODS.register_module(name='source')
class Source(TTAMethod):
    """No adaptation: the source model as deployed."""


def _use_batch_stats(bn: nn.Module, args: tuple) -> None:
    """Batch statistics, except where a batch has one value per channel (e.g. after
    global pooling with batch size 1), which falls back to the source running statistics."""
    x = args[0]
    bn.train(x.numel() // x.shape[1] > 1)


@TTA_METHODS.register_module(name='tent')
class Tent(TTAMethod):
    """TENT: entropy minimisation; only the affine parameters of norm layers adapt.

    Norm layers are selected by module type (mmseg's MiT stage-end LayerNorms are named
    ``backbone.layers.{i}.2``). BatchNorm layers normalise with test-batch statistics.
    """

    updates = True

    def configure_model(self, model: nn.Module) -> None:
        super().configure_model(model)
        for module in model.modules():
            if not isinstance(module, NORM_TYPES):
                continue
            for param in (module.weight, module.bias):
                if param is not None:
                    param.requires_grad_(True)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.track_running_stats = False
                module.register_forward_pre_hook(_use_batch_stats)

    def collect_params(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for m in model.modules() if isinstance(m, NORM_TYPES)
                for p in (m.weight, m.bias) if p is not None]

    def loss(self, logits: Tensor) -> dict[str, Tensor]:
        return {'loss_entropy': softmax_entropy(logits.float(), dim=1).mean()}


@TTA_METHODS.register_module(name='tent-pl')
class TentPseudoLabel(Tent):
    """Cross-entropy with the model's own argmax (what the CoTTA code calls TENT)."""

    def loss(self, logits: Tensor) -> dict[str, Tensor]:
        logits = logits.float()
        return {'loss_pseudo_label': F.cross_entropy(logits, logits.detach().argmax(1))}
