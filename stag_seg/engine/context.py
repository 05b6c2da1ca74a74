"""The context of one adaptation step, shared by the method and the plug-ins."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn


@dataclass
class StepContext:
    """One forward pass and what the step built on it.

    Attributes:
        batch: the data batch as the loader gave it.
        outputs: ``SegDataSample`` per image with ``pred_sem_seg`` at the label's resolution
            (the scored prediction of this forward).
        logits: (N, K, h, w) classifier output at the decode head's resolution (the tapped
            classifier's output; for several calls, e.g. 'slide' inference, (P, K) rows);
            None when the classifier was not called with gradients.
        features: (N, C, h, w) or (P, C) classifier inputs; None unless a plug-in asked.
        params: the trainable parameters (what the optimizer adapts).
        losses: named loss terms: the method's base losses, then the plug-ins' terms.
        updated: whether the update happened (None until the adapter has decided).
    """

    batch: dict
    outputs: list
    logits: Tensor | None = None
    features: Tensor | None = None
    params: list[nn.Parameter] = field(default_factory=list)
    losses: dict[str, Tensor] = field(default_factory=dict)
    updated: bool | None = None
