"""Neutral tensor operations shared by methods, plug-ins, STAG and the step: the entropy of a
softmax and the pixel layout of (N, D, H, W) maps (pure torch)."""
from __future__ import annotations

from torch import Tensor


def softmax_entropy(logits: Tensor, dim: int = 1) -> Tensor:
    """H(softmax(z)) = -sum_j p_j log p_j along ``dim`` (the class axis).

    Args:
        logits: (..., K, ...) raw scores z.
    Returns:
        Entropy with ``dim`` reduced, e.g. (N, H, W) for (N, K, H, W) logits.
    """
    log_p = logits.log_softmax(dim)
    return -(log_p.exp() * log_p).sum(dim)


def pixels_last(x: Tensor) -> Tensor:
    """(N, D, H, W) -> (N*H*W, D); (P, D) is returned as is."""
    if x.dim() == 2:
        return x
    if x.dim() != 4:
        raise ValueError(f'expected (N, D, H, W) or (P, D), got {tuple(x.shape)}')
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
