"""The context of one adaptation step, shared by the method and the plug-ins, and the result
the step hands back."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor, nn


@dataclass
class StepContext:
    """One forward pass and what the step built on it.

    Attributes:
        outputs: ``SegDataSample`` per image with ``pred_sem_seg`` at the label's resolution
            (the scored prediction of this step).
        batch: the data batch of the forward (for another pass on it: SAR's second).
        samples: the forward's ``SegDataSample`` per image (their metainfo: padding, flips).
        logits: (N, K, h, w) classifier output at the decode head's resolution (the tapped
            classifier's output; for several calls, e.g. 'slide' inference, (P, K) rows);
            None when the classifier was not called with gradients.
        features: (N, C, h, w) or (P, C) classifier inputs; None unless a plug-in asked.
        params: the trainable parameters (what the optimizer adapts).
        losses: named loss terms: the method's base losses, then the plug-ins' terms.
        selection: what a method's filter chose for its loss (EATA's pixels, CoTTA's
            pseudo-labels); None for methods without one.
        stats: counters the method reports for this step (summed per domain).
        updated: whether the update happened (None until it is decided).
        attempted: in a captured step, a device bool: whether the method's filter kept
            anything to update on (None: it did, or the step is eager).
    """

    outputs: list
    batch: dict = field(default_factory=dict)
    samples: list = field(default_factory=list)
    logits: Tensor | None = None
    features: Tensor | None = None
    params: list[nn.Parameter] = field(default_factory=list)
    losses: dict[str, Tensor] = field(default_factory=dict)
    selection: object = None
    stats: dict[str, float] = field(default_factory=dict)
    updated: bool | Tensor | None = None
    attempted: Tensor | None = None


@dataclass
class StepResult:
    """What one step hands back to the loop.

    Attributes:
        outputs: the scored predictions (``SegDataSample`` with ``pred_sem_seg`` at the
            label's resolution), made before this step's update.
        attempted: an update was attempted (False for no-update methods and stages, and
            steps whose filter kept nothing); a device bool from a captured step.
        updated: the update happened (False when it was skipped, e.g. a non-finite loss); a
            device bool from a captured step (read once per domain).
        stats: counters a method reports per domain (summed over steps), e.g.
            ``{'kept_pixels': 812, 'pixels': 1024}``; a captured step's are device tensors.
        losses: the named loss terms of the update (detached tensors; the adapter fills it
            from the step context it updated on), empty when no update was attempted.
    """

    outputs: list
    attempted: bool | Tensor = False
    updated: bool | Tensor = False
    stats: dict[str, float | Tensor] = field(default_factory=dict)
    losses: dict[str, Tensor] = field(default_factory=dict)
