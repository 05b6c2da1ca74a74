"""Float32 BGR image helpers shared by the scene and weather renderers."""
from __future__ import annotations

import cv2
import numpy as np


def mul3(img: np.ndarray, m: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``img * m[..., None]`` for (H, W, 3) float32 ``img`` and (H, W) ``m``.

    Writes into ``out`` (``img`` itself for in place) or a new array; returns the result.
    """
    m = m.astype(np.float32, copy=False)
    return cv2.multiply(img, cv2.merge([m, m, m]), dst=out)


def lut3(label: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) float32 via a (256, 3) float32 table."""
    return cv2.LUT(cv2.merge([label, label, label]), lut.reshape(256, 1, 3))


def frac(x: np.ndarray) -> np.ndarray:
    """Fractional part (faster than ``np.mod`` for floats)."""
    return x - np.floor(x)
