"""Sanity checks on loaded ground-truth label maps."""
from __future__ import annotations

import numpy as np
import torch


def check_label_ids(label: np.ndarray | torch.Tensor, num_classes: int,
                    ignore_index: int, path: str) -> None:
    """Raise ValueError naming ``path`` and the bad ids if ``label`` has ids outside
    ``{0..num_classes-1, ignore_index}``.
    """
    if isinstance(label, torch.Tensor):
        label = label.detach().cpu().numpy()
    ids = np.unique(np.asarray(label))
    bad = ids[((ids < 0) | (ids >= num_classes)) & (ids != ignore_index)]
    if bad.size:
        shown = ', '.join(str(int(i)) for i in bad[:20]) + (' ...' if bad.size > 20 else '')
        raise ValueError(f'label file {path}: invalid ids [{shown}]; expected 0..{num_classes - 1} '
                         f'or ignore_index={ignore_index}')
