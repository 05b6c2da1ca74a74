"""Per-class surface texture: fine grain, blotches and patches by train id."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.classes import (
    BUILDING,
    BUS,
    CAR,
    FENCE,
    PERSON,
    POLE,
    RIDER,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    TRUCK,
    VEGETATION,
    WALL,
)
from stag_seg.demo.synth.imaging import mul3

# Per-class texture amplitude (fine grain, mid blotches, low-frequency patches), by label.
TEXTURE = {ROAD: (0.07, 0.04, 0.08), SIDEWALK: (0.05, 0.04, 0.05), BUILDING: (0.04, 0.03, 0.06),
            WALL: (0.06, 0.06, 0.05), FENCE: (0.05, 0.03, 0.03), POLE: (0.03, 0.0, 0.0),
            VEGETATION: (0.2, 0.3, 0.1), TERRAIN: (0.14, 0.12, 0.12), SKY: (0.005, 0.0, 0.0),
            PERSON: (0.05, 0.02, 0.0), RIDER: (0.05, 0.02, 0.0), CAR: (0.02, 0.0, 0.0),
            TRUCK: (0.03, 0.02, 0.0), BUS: (0.02, 0.0, 0.0)}


def apply_texture(img: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> None:
    """Multiplies (H, W, 3) float32 ``img`` in place by per-class noise of (H, W) ``label``."""
    h, w = label.shape
    lut = np.zeros((3, 256), np.float32)
    for cls, amps in TEXTURE.items():
        lut[:, cls] = amps
    fine = rng.standard_normal((h, w), dtype=np.float32)
    mid = cv2.resize(rng.standard_normal((max(h // 4, 2), max(w // 4, 2)), dtype=np.float32),
                     (w, h), interpolation=cv2.INTER_LINEAR)
    low = cv2.resize(rng.standard_normal((max(h // 24, 2), max(w // 24, 2)), dtype=np.float32),
                     (w, h), interpolation=cv2.INTER_CUBIC)
    mod = 1 + lut[0][label] * fine + lut[1][label] * mid + lut[2][label] * low
    mul3(img, mod, out=img)
