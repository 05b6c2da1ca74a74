"""EATA's anti-forgetting regulariser: the diagonal Fisher information of the adapted
parameters on a source-domain set, and the penalty alpha * sum F (theta - theta*)^2."""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stag_seg.step.learner import Learner


def fisher_information(learner: Learner, loader: Iterable[dict],
                       max_images: int | None = None) -> tuple[list[Tensor], int]:
    """The diagonal Fisher information of ``learner.params`` on ``loader``'s batches.

    EATA's estimate: for each batch, the gradient g of the cross-entropy of the model's
    logits with its own argmax (pseudo-labels; here the mean over the batch's pixels at the
    decode head's resolution); F = mean over batches of g ** 2. The model is used as it is
    (the source model, in the method's test-time mode); no parameter or optimizer changes.

    Args:
        learner: its grad-mode forward and its trainable parameters.
        loader: batches of source-domain images (labels are not used).
        max_images: stop after the batch that reaches this many images (None: all).
    Returns:
        F (one tensor per parameter, shaped like it) and the number of images used.
    """
    params = learner.params
    fisher = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    batches = images = 0
    for batch in loader:
        if max_images is not None and images >= max_images:
            break
        ctx = learner.forward(batch, grad=True, predict=False)
        logits = ctx.logits.float()
        loss = F.cross_entropy(logits, logits.detach().argmax(1))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for f, g in zip(fisher, grads, strict=True):
            if g is not None:
                f.add_(g.detach().float() ** 2)
        batches += 1
        images += len(ctx.outputs)
    if batches == 0:
        raise ValueError('eata: the Fisher source set gave no image')
    return [f / batches for f in fisher], images


def fisher_penalty(params: list[nn.Parameter], fisher: list[Tensor], anchor: list[Tensor],
                   alpha: float) -> Tensor:
    """alpha * sum_i F_i (theta_i - theta*_i)^2 over every element of every parameter
    (EATA's Eqn. 9; gradient 2 alpha F (theta - theta*)); zero at the anchor theta*."""
    terms = [(f * (p.float() - a) ** 2).sum() for p, f, a in zip(params, fisher, anchor,
                                                                 strict=True)]
    return alpha * torch.stack(terms).sum()
