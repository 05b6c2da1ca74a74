"""A randomly initialised classifier made confident enough for every method to do its full step.

A random-init segmentor's logits are near-uniform: on SegFormer-B5 every pixel's entropy is
above 2.2 nats, over EATA's and SAR's reliability margin E0 = 0.4 ln 19 = 1.18 nats, so both
would keep no pixel and skip every update (their steps would be forwards only). Scaling the
classifier's weight and bias by s scales its logits by s, and a pixel's entropy falls as s
grows; the benchmark sets s so that the median pixel entropy on its batch is E0 / 2.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from stag_seg.methods.base import TTAMethod
from stag_seg.methods.reliable import entropy_margin
from stag_seg.ops import pixels_last, softmax_entropy
from stag_seg.step.tap import get_submodule

#: the target median pixel entropy, as a fraction of E0 (the default EATA / SAR margin)
TARGET_FRACTION = 0.5


def classifier_logits(model: nn.Module, batch: dict, classifier: str) -> Tensor:
    """The (N, K, h, w) output of the ``classifier`` module in one no-grad forward of
    ``model`` on ``batch``, in the model's current modes."""
    module = get_submodule(model, classifier)
    captured = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            data = model.data_preprocessor(batch, False)
            model.inference(data['inputs'], [s.metainfo for s in data['data_samples']])
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f'the classifier {classifier!r} ran {len(captured)} times in one '
                           'forward; the benchmark needs one (N, K, h, w) output')
    return captured[0].float()


def median_entropy(logits: Tensor, scale: float) -> float:
    """The median over pixels of the softmax entropy (nats) of ``scale * logits``."""
    return float(softmax_entropy(pixels_last(logits * scale), dim=1).median())


def scale_for_entropy(logits: Tensor, target: float, low: float = 1e-3,
                      high: float = 1e4, iters: int = 60) -> float:
    """The s in [low, high] at which the median pixel entropy of ``s * logits`` (N, K, h, w)
    is ``target`` nats, by bisection on log s (the entropy falls as s grows). A target out
    of reach in that range is a ValueError."""
    if not median_entropy(logits, high) <= target <= median_entropy(logits, low):
        raise ValueError(f'a median pixel entropy of {target:.3g} nats is out of reach with '
                         f'the classifier scaled by {low:g} ... {high:g}')
    lo, hi = torch.tensor(low).log(), torch.tensor(high).log()
    for _ in range(iters):
        mid = (lo + hi) / 2
        if median_entropy(logits, float(mid.exp())) > target:
            lo = mid
        else:
            hi = mid
    return float(((lo + hi) / 2).exp())


@torch.no_grad()
def calibrate_classifier(model: nn.Module, batch: dict, classifier: str,
                         method: TTAMethod | None = None) -> dict:
    """Scales the ``classifier`` module's weight and bias in place so that the median pixel
    entropy of its logits on ``batch`` is E0 / 2 (E0 = 0.4 ln K), the logits of a copy of
    ``model`` configured by ``method`` (e.g. TENT: BatchNorm on the batch's statistics; None:
    eval mode). Returns the scale, the target and the fraction of pixels below E0 before
    and after."""
    probe = copy.deepcopy(model)
    if method is None:
        probe.eval()
    else:
        method.configure_model(probe)
    logits = classifier_logits(probe, batch, classifier)
    del probe
    margin = entropy_margin(logits.shape[1])
    target = TARGET_FRACTION * margin
    scale = scale_for_entropy(logits, target)
    module = get_submodule(model, classifier)
    module.weight.mul_(scale)
    if module.bias is not None:
        module.bias.mul_(scale)

    def reliable(s: float) -> float:
        return float((softmax_entropy(pixels_last(logits * s), dim=1) < margin).float().mean())

    return {'scale': scale, 'target_nats': target, 'margin_nats': margin,
            'reliable_before': reliable(1.0), 'reliable_after': reliable(scale)}
