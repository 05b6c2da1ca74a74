"""Rain: desaturated haze, a wet mirroring road and motion-blurred streaks."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.classes import (
    ROAD,
    SIDEWALK,
)
from stag_seg.demo.synth.imaging import mul3
from stag_seg.demo.synth.weather.common import (
    horizon_row,
    saturation,
    smooth_noise,
    to_float,
    to_uint8,
)


def _streaks(rng: np.random.Generator, h: int, w: int, count: int, length: float, angle: float,
             thickness: int) -> np.ndarray:
    """(H, W) float32 layer of motion-blurred rain streaks in [0, 1]."""
    layer = np.zeros((h, w), np.float32)
    x0 = rng.uniform(-0.1 * w, 1.1 * w, count)
    y0 = rng.uniform(-0.1 * h, h, count)
    lens = length * rng.uniform(0.6, 1.3, count)
    dx, dy = np.sin(angle) * lens, np.cos(angle) * lens
    pts = np.stack([np.stack([x0, y0], 1), np.stack([x0 + dx, y0 + dy], 1)], 1)
    pts = np.round(pts * 4).astype(np.int32)
    for lvl in (0.5, 0.75, 1.0):
        sel = pts[rng.random(count) < 1 / 3]
        cv2.polylines(layer, list(sel), False, lvl, thickness, cv2.LINE_AA, 2)
    k = max(int(length / 3), 3)
    kernel = np.zeros((k, k), np.float32)
    c = (k - 1) / 2
    cv2.line(kernel, (int(round(c - np.sin(angle) * c)), 0),
             (int(round(c + np.sin(angle) * c)), k - 1), 1.0, 1)
    return cv2.filter2D(layer, -1, kernel / kernel.sum())


def rain(image: np.ndarray, label: np.ndarray, depth: np.ndarray, rng: np.random.Generator,
         severity: float = 1.0) -> np.ndarray:
    """Dark, desaturated, slightly blurred frame with rain streaks and a wet, reflective road.

    image (H, W, 3) uint8 BGR, label (H, W) uint8, depth (H, W) float32 metres -> uint8 BGR.
    """
    h, w = label.shape
    scale = h / 256
    img = to_float(image)
    img = saturation(img, rng.uniform(0.45, 0.65))
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.8) * scale)
    # thin rain haze, grey sky
    t = np.exp(-rng.uniform(0.006, 0.012) * severity * np.minimum(depth, 300)).astype(np.float32)
    grey = np.full_like(img, rng.uniform(0.38, 0.48))
    img = mul3(img, t) + mul3(grey, 1 - t)
    img *= rng.uniform(0.62, 0.75)
    # wet road: darker asphalt mirroring the scene above the horizon
    hz = horizon_row(label)
    src = np.clip(2 * hz - np.arange(h), 0, h - 1)
    mirror = cv2.blur(img[src], (3, 15))
    wet = np.where(label == ROAD, rng.uniform(0.25, 0.4),
                   np.where(label == SIDEWALK, 0.18, 0.0)).astype(np.float32)
    wet *= 0.6 + 0.4 * smooth_noise(rng, (h, w), max(int(16 * scale), 2))
    img = mul3(img, 1 - 0.35 * wet / 0.45) + mul3(mirror, wet)
    # streaks: many thin far ones, fewer thick near ones
    angle = np.deg2rad(rng.uniform(-18, 18))
    area = h * w / (512 * 256)
    layer = _streaks(rng, h, w, int(rng.uniform(500, 900) * area * severity), 18 * scale,
                     angle, 1)
    layer += 0.8 * _streaks(rng, h, w, int(rng.uniform(100, 200) * area * severity), 40 * scale,
                            angle, max(int(2 * scale), 1))
    alpha = np.clip(layer * rng.uniform(0.7, 0.9), 0, 0.9)
    white = np.full_like(img, 0.85)
    img = mul3(img, 1 - alpha) + mul3(white, alpha)
    return to_uint8(img)
