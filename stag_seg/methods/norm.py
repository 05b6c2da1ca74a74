"""Normalisation layers: which modules count as norms, and BatchNorm's test-batch statistics."""
from __future__ import annotations

from torch import nn

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
              nn.modules.instancenorm._InstanceNorm)


def _batch_stats_unless_one_value(bn: nn.Module, args: tuple) -> None:
    """Forward pre-hook: batch statistics, except where a batch has one value per channel
    (e.g. after global pooling at batch size 1): there the source running statistics."""
    x = args[0]
    bn.train(x.numel() // x.shape[1] > 1)


def use_test_batch_statistics(model: nn.Module) -> int:
    """Makes every BatchNorm of ``model`` normalise with the test batch's statistics and leave
    its running statistics untouched (TENT's and BN-adapt's mode). Returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.track_running_stats = False
            module.register_forward_pre_hook(_batch_stats_unless_one_value)
            count += 1
    return count


def norm_affine_params(model: nn.Module) -> list[nn.Parameter]:
    """Weights and biases of every normalisation layer, selected by module type (mmseg's MiT
    stage-end LayerNorms are named ``backbone.layers.{i}.2``, not ``*.norm``)."""
    return [p for m in model.modules() if isinstance(m, NORM_TYPES)
            for p in (m.weight, m.bias) if p is not None]
