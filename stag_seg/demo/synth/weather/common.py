"""Helpers shared by the weather renderers: float conversion, value noise, label cues."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.classes import ROAD


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 image -> float32 in [0, 1]."""
    return image.astype(np.float32) / 255


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float image in [0, 1] -> uint8, rounded and clipped."""
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """(H, W) float32 value noise in [0, 1] with features about ``cell`` pixels wide."""
    h, w = shape
    small = rng.random((max(h // cell, 2), max(w // cell, 2))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blends float32 BGR ``img`` with its grey version (``factor`` 1 = unchanged)."""
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.addWeighted(img, factor, cv2.merge([grey] * 3), 1 - factor, 0)


def components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """(n, 5) int stats (x, y, w, h, area) of the connected components of ``mask``."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    stats = stats[1:n]
    return stats[stats[:, 4] >= min_area]


def horizon_row(label: np.ndarray) -> int:
    """Row of the horizon, estimated as the top of the road."""
    rows = np.nonzero((label == ROAD).any(axis=1))[0]
    return int(rows[0]) if rows.size else label.shape[0] // 2
