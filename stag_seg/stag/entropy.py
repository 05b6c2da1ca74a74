"""The closed-form gradient of a softmax's entropy w.r.t. the logits (the entropy itself:
``stag_seg.ops.softmax_entropy``)."""

from torch import Tensor


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
