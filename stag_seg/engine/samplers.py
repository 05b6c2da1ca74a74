"""Seeded stream orders: a shuffled order per round, and a Dirichlet label-shift order."""
from __future__ import annotations

import cv2
import numpy as np
from mmengine.registry import DATA_SAMPLERS
from torch.utils.data import Dataset, Sampler


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([int(k) for k in key])


@DATA_SAMPLERS.register_module()
class SeededOrderSampler(Sampler):
    """A seeded random order that changes with ``set_epoch`` (one epoch = one round).

    ``stream`` separates the orders of several samplers drawn from one seed (e.g. one per
    domain); the mixed stream uses the default.
    """

    def __init__(self, dataset: Dataset, seed: int | None = 0, stream: int | None = None) -> None:
        self.size = len(dataset)
        self.seed = 0 if seed is None else seed
        self.stream = stream
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        key = (self.seed, epoch) if self.stream is None else (self.seed, self.stream, epoch)
        self.order = _rng(*key).permutation(self.size).tolist()

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return self.size


def dominant_label(path: str, ignore_index: int = 255) -> int:
    """The most frequent labelled id of a label file (-1 if every pixel is ignored)."""
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if label is None:
        raise OSError(f'cannot read label file {path}')
    counts = np.bincount(label.ravel().astype(np.int64))
    if ignore_index < len(counts):
        counts[ignore_index] = 0
    return int(counts.argmax()) if counts.any() else -1


def dirichlet_order(labels: np.ndarray, gamma: float, num_slots: int,
                    rng: np.random.Generator) -> list[int]:
    """A label-shift order (the "practical TTA" benchmarks' non-i.i.d. stream).

    The stream is cut into ``num_slots`` consecutive slots; each class spreads its samples
    over the slots in proportions drawn from Dirichlet(gamma * 1); samples are shuffled
    within a slot. Small gamma puts each class into few slots, so the label distribution
    drifts along the stream; gamma -> inf spreads every class evenly (i.i.d.).

    Args:
        labels: (N,) a class per sample (e.g. each image's dominant label).
    Returns:
        A permutation of range(N).
    """
    slots: list[list[int]] = [[] for _ in range(num_slots)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        shares = rng.dirichlet(np.full(num_slots, float(gamma)))
        cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(int)
        for slot, part in zip(slots, np.split(members, cuts), strict=True):
            slot.extend(part.tolist())
    return [int(i) for slot in slots for i in rng.permutation(slot)]


@DATA_SAMPLERS.register_module()
class DirichletOrderSampler(Sampler):
    """The Dirichlet label-shift order of one domain, redrawn each round from the seed.

    Each image's class is its label's dominant id (read once, from ``dataset.label_path(i)``).

    Args:
        dataset: a stream domain's dataset.
        gamma: Dirichlet concentration (> 0); 0.1 is a strong shift, large values i.i.d.
        num_slots: slots of the stream (default: one per 5 images, at least 2).
        seed, stream: as :class:`SeededOrderSampler`.
    """

    def __init__(self, dataset: Dataset, gamma: float = 0.1, num_slots: int | None = None,
                 seed: int | None = 0, stream: int = 0) -> None:
        self.labels = np.array([dominant_label(dataset.label_path(i))
                                for i in range(len(dataset))])
        self.gamma = gamma
        self.num_slots = num_slots or max(2, len(dataset) // 5)
        self.seed = 0 if seed is None else seed
        self.stream = stream
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.order = dirichlet_order(self.labels, self.gamma, self.num_slots,
                                     _rng(self.seed, self.stream, epoch))

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.labels)
