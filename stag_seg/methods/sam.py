"""Sharpness-aware minimisation (Foret et al., ICLR 2021) as two in-place steps on a parameter
list, for SAR's two passes through the learner (the ascent, then back before the optimizer)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


@torch.no_grad()
def sam_ascent(params: list[nn.Parameter], rho: float) -> list[Tensor]:
    """Moves each parameter with a gradient to ``w + rho * g / (||g|| + 1e-12)`` (``||g||``: the
    L2 norm over all gradients; SAM's ``first_step``, non-adaptive).

    Returns:
        The parameters' values before the move (for :func:`sam_restore`).
    """
    moved = [p for p in params if p.grad is not None]
    old = [p.detach().clone() for p in params]
    if not moved:
        return old
    scale = rho / (torch.nn.utils.get_total_norm([p.grad for p in moved]) + 1e-12)
    for p in moved:
        p.add_(p.grad * scale.to(p.grad))
    return old


@torch.no_grad()
def sam_restore(params: list[nn.Parameter], old: list[Tensor]) -> None:
    """Puts the parameters back to ``old`` exactly (SAM's ``second_step`` before the base
    optimizer steps with the gradients taken at the moved point)."""
    for p, value in zip(params, old, strict=True):
        p.copy_(value)
