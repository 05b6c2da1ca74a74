"""Snow: cover on upward surfaces, falling flakes, white overcast sky."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.classes import (
    BUILDING,
    BUS,
    CAR,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    TRUCK,
    VEGETATION,
    WALL,
)
from stag_seg.demo.synth.imaging import mul3
from stag_seg.demo.synth.weather.common import (
    saturation,
    smooth_noise,
    to_float,
    to_uint8,
)


def snow(image: np.ndarray, label: np.ndarray, depth: np.ndarray, rng: np.random.Generator,
         severity: float = 1.0) -> np.ndarray:
    """Snow cover on upward surfaces, falling flakes, white overcast sky, low contrast.

    image (H, W, 3) uint8 BGR, label (H, W) uint8, depth (H, W) float32 metres -> uint8 BGR.
    """
    h, w = label.shape
    scale = h / 256
    img = to_float(image)
    img = saturation(img, 0.6)
    white = np.empty_like(img)
    white[:] = (0.95, 0.93, 0.9)
    noise = smooth_noise(rng, (h, w), max(int(24 * scale), 2))
    fine = smooth_noise(rng, (h, w), 2)
    cover = np.zeros((h, w), np.float32)
    amounts = {ROAD: rng.uniform(0.3, 0.6), SIDEWALK: rng.uniform(0.6, 0.85),
               TERRAIN: rng.uniform(0.7, 0.9), VEGETATION: rng.uniform(0.25, 0.45)}
    for cls, amount in amounts.items():
        cover[label == cls] = amount * severity
    cover *= (0.55 + 0.45 * noise) * (0.85 + 0.15 * fine)
    cover = np.where(label == VEGETATION, cover * (fine > 0.45), cover)
    # tops of walls, cars and buildings hold snow too
    above = np.roll(label, int(round(2 * scale)), axis=0)
    rims = np.isin(label, (CAR, TRUCK, BUS, WALL, BUILDING)) & (above != label)
    cover = np.maximum(cover, rims * 0.9)
    cover = cv2.GaussianBlur(np.clip(cover, 0, 1), (0, 0), 0.8)
    img = mul3(img, 1 - cover) + mul3(white, cover)
    sky = (label == SKY).astype(np.float32)
    overcast = np.full_like(img, rng.uniform(0.8, 0.9))
    img = mul3(img, 1 - 0.6 * sky) + mul3(overcast, 0.6 * sky)
    # low contrast, slight haze
    t = np.exp(-rng.uniform(0.01, 0.02) * severity * np.minimum(depth, 300)).astype(np.float32)
    img = mul3(img, t) + mul3(np.full_like(img, 0.85), 1 - t)
    mean = float(img.mean())
    contrast = rng.uniform(0.7, 0.85)
    img = (img - mean) * contrast + mean + 0.04
    # flakes: small sharp ones and a few large out-of-focus ones
    flakes = np.zeros((h, w), np.float32)
    area = h * w / (512 * 256)
    for count, rmin, rmax, blur in ((900, 0.6, 1.6, 0.5), (80, 1.5, 3.5, 1.2)):
        n = int(count * area * severity * rng.uniform(0.7, 1.3))
        xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
        rs = rng.uniform(rmin, rmax, n) * scale
        vals = rng.uniform(0.6, 1.0, n)
        layer = np.zeros((h, w), np.float32)
        for i in range(n):
            cv2.circle(layer, (int(xs[i] * 4), int(ys[i] * 4)), int(rs[i] * 4), float(vals[i]),
                       -1, cv2.LINE_AA, 2)
        flakes = np.maximum(flakes, cv2.GaussianBlur(layer, (0, 0), blur * scale))
    alpha = np.clip(flakes, 0, 1) * 0.9
    img = mul3(img, 1 - alpha) + mul3(np.full_like(img, 0.97), alpha)
    return to_uint8(img)
