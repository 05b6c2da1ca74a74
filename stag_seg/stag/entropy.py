"""Shannon entropy of a softmax and its closed-form gradient w.r.t. the logits."""

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


def entropy_logit_grad(logits: Tensor, dim: int = -1) -> tuple[Tensor, Tensor]:
    """Closed-form entropy gradient u = dH/dz = -p * (log p + H), from the forward pass alone.

    Args:
        logits: (..., K) raw scores z (class axis ``dim``).
    Returns:
        u: same shape as ``logits``; differentiable w.r.t. ``logits`` (no autograd.grad call).
        entropy: H with ``dim`` reduced.
    """
    log_p = logits.log_softmax(dim)
    p = log_p.exp()
    entropy = -(p * log_p).sum(dim, keepdim=True)
    return -p * (log_p + entropy), entropy.squeeze(dim)
