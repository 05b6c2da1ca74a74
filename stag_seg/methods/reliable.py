"""Per-pixel entropy filtering shared by EATA and SAR, and their constants rescaled from the
papers' 1000 ImageNet classes to a segmentor's K classes."""
from __future__ import annotations

import math

import torch
from torch import Tensor

#: the number of classes the EATA and SAR constants were tuned for (ImageNet)
PAPER_NUM_CLASSES = 1000
#: E0 = 0.4 ln K: EATA's and SAR's entropy margin, as a fraction of the maximum entropy
MARGIN_FRACTION = 0.4


def entropy_margin(num_classes: int, margin: float | None = None) -> float:
    """The reliable-entropy margin E0 in nats: ``margin`` if set, else 0.4 ln K (the papers'
    0.4 ln 1000 written for K classes)."""
    return MARGIN_FRACTION * math.log(num_classes) if margin is None else float(margin)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask`` (both (M,)); 0 (still in the graph) when it is empty."""
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp(min=1)
