"""The STAG term alone: its forward + backward on one step's captured logits (and features),
a low-noise measure of what STAG adds to a step."""
from __future__ import annotations

import statistics

import torch

from stag_seg.benchmark.step_timing import AdapterStep
from stag_seg.benchmark.timers import elapsed, stamp
from stag_seg.step.context import StepContext


def classifier_shape(step: AdapterStep) -> dict:
    """K, C and the classifier's output pixels P of one forward of ``step``'s model on the
    base view."""
    adapter = step.adapter
    try:
        ctx = adapter.forward(step.base_batch, grad=True)
        logits = ctx.logits
    finally:
        adapter.tap.clear()
    return {'num_classes': adapter.classifier.out_channels,
            'channels': adapter.classifier.in_channels,
            'pixels': logits.numel() // logits.shape[1], 'logits_shape': list(logits.shape)}


def plugin_term_ms(step: AdapterStep, device: torch.device, clock: str,
                   reps: int = 20) -> float | None:
    """Median ms on ``clock`` of the step's plug-in terms (their ``losses``, summed, and its
    backward) on the logits and features of one forward of the base view (the student's
    input, for CoTTA); None for a step without plug-ins."""
    adapter = step.adapter
    if not adapter.plugins:
        return None
    try:
        ctx = adapter.forward(step.base_batch, grad=True)
        logits = ctx.logits.detach()
        feats = None if ctx.features is None else ctx.features.detach()
    finally:
        adapter.tap.clear()
    samples = []
    for _ in range(reps):
        probe = StepContext(batch=step.base_batch, outputs=[],
                            logits=logits.clone().requires_grad_(True),
                            features=None if feats is None else feats.clone().requires_grad_(True))
        start = stamp(device)
        adapter.add_plugin_losses(probe)
        sum(probe.losses.values()).backward()
        samples.append(elapsed(start, stamp(device))[clock])
    return statistics.median(samples) * 1e3
