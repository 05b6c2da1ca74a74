"""Fog: depth-dependent Koschmieder haze with patchy density."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.imaging import mul3
from stag_seg.demo.synth.weather.common import (
    saturation,
    smooth_noise,
    to_float,
    to_uint8,
)


def fog(image: np.ndarray, label: np.ndarray, depth: np.ndarray, rng: np.random.Generator,
        severity: float = 1.0) -> np.ndarray:
    """Koschmieder haze ``I t + A (1 - t)``, ``t = exp(-beta depth)``, grey-white airlight.

    image (H, W, 3) uint8 BGR, label (H, W) uint8, depth (H, W) float32 metres -> uint8 BGR.
    """
    h, w = label.shape
    img = to_float(image)
    beta = rng.uniform(0.015, 0.035) * severity
    beta_map = beta * (0.75 + 0.5 * smooth_noise(rng, (h, w), 48))  # patchy fog
    t = np.exp(-beta_map * np.minimum(depth, 300)).astype(np.float32)
    a = rng.uniform(0.72, 0.85)
    airlight = np.empty_like(img)
    airlight[:] = (a * 1.02, a, a * 0.98)
    out = mul3(img, t) + mul3(airlight, 1 - t)
    out = saturation(out, 0.75)
    out = cv2.GaussianBlur(out, (0, 0), 0.7)
    return to_uint8(out)
