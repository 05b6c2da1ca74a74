"""Colour tables of materials (facades, cars, clothing, skin) and per-object colour jitter."""
from __future__ import annotations

import numpy as np

BUILDING_COLORS = np.array([[150, 180, 200], [150, 150, 152], [70, 85, 150], [200, 205, 210],
                            [80, 100, 130], [140, 200, 220], [160, 140, 120], [110, 120, 125],
                            [120, 150, 190]], np.float32)  # BGR
CAR_COLORS = np.array([[40, 40, 40], [200, 200, 200], [150, 150, 155], [40, 40, 170],
                       [140, 70, 30], [230, 230, 235], [60, 90, 60], [20, 20, 25],
                       [90, 140, 190], [110, 100, 90]], np.float32)
CLOTH_COLORS = np.array([[30, 30, 30], [60, 40, 30], [120, 120, 120], [40, 40, 140],
                         [130, 80, 40], [200, 200, 200], [40, 110, 50], [50, 150, 200],
                         [90, 50, 110], [150, 110, 60]], np.float32)
SKIN_COLORS = np.array([[150, 175, 220], [110, 140, 190], [70, 95, 140], [50, 65, 100]],
                       np.float32)


def jitter(rng: np.random.Generator, color: np.ndarray, amount: float) -> np.ndarray:
    """(3,) BGR ``color`` with a random gain and per-channel offset up to ``amount``."""
    out = color * rng.uniform(0.85, 1.12) + rng.uniform(-amount, amount, 3)
    return np.clip(out, 0, 255).astype(np.float32)


def pick(rng: np.random.Generator, palette: np.ndarray, amount: float = 12) -> np.ndarray:
    """A random row of an (n, 3) BGR ``palette``, jittered."""
    return jitter(rng, palette[rng.integers(len(palette))], amount)
