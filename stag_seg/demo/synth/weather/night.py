"""Night: dark, noisy frames lit by street lamps, vehicle lights and windows."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.classes import (
    BUILDING,
    BUS,
    CAR,
    POLE,
    SKY,
    TRAFFIC_LIGHT,
    TRAIN,
    TRUCK,
)
from stag_seg.demo.synth.imaging import mul3
from stag_seg.demo.synth.weather.common import (
    components,
    horizon_row,
    smooth_noise,
    to_float,
    to_uint8,
)


def _glow(h: int, w: int, lights: list[tuple[float, float, float, tuple]], scale: float
          ) -> np.ndarray:
    """(H, W, 3) float32 additive glow of point lights (x, y, radius px, BGR in [0, 1])."""
    core = np.zeros((h, w, 3), np.float32)
    for x, y, r, color in lights:
        cv2.circle(core, (int(round(x * 4)), int(round(y * 4))), max(int(round(r * 4)), 4),
                   color, -1, cv2.LINE_AA, 2)
    halo = cv2.GaussianBlur(core, (0, 0), 6 * scale)
    wide = cv2.GaussianBlur(core, (0, 0), 18 * scale)
    return core + halo * 1.5 + wide * 1.2


def night(image: np.ndarray, label: np.ndarray, depth: np.ndarray, rng: np.random.Generator,
          severity: float = 1.0) -> np.ndarray:
    """Dark, blue-tinted, noisy frame with street lamps, vehicle lights and lit windows.

    image (H, W, 3) uint8 BGR, label (H, W) uint8, depth (H, W) float32 metres -> uint8 BGR.
    """
    h, w = label.shape
    scale = h / 256
    img = to_float(cv2.GaussianBlur(image, (0, 0), 0.8))
    gamma = rng.uniform(1.3, 1.6) * (0.5 + 0.5 * severity)
    ambient = rng.uniform(0.3, 0.45) / severity
    base = cv2.multiply(np.power(img, gamma), (1.25, 1.0, 0.75, 0.0))
    sky = label == SKY
    # light pollution near the horizon on an otherwise black sky
    rows = np.arange(h, dtype=np.float32)[:, None]
    hz = horizon_row(label)
    pollution = np.exp(-np.maximum(hz - rows, 0) / (0.25 * h)) * rng.uniform(0.12, 0.25)
    illum = np.full((h, w), ambient, np.float32)
    lights = []
    lamp = (rng.uniform(0.45, 0.75), rng.uniform(0.8, 0.95), 1.0)  # sodium/LED, BGR
    for x, y, cw, ch, _ in components(label == POLE, int(12 * scale)):
        if ch < 10 * scale:
            continue
        r = float(np.clip(cw * 0.8, 1.2 * scale, 3 * scale))
        lights.append((x + cw / 2, y + r * 0.5, r, lamp))
        # pool of light on the ground below the lamp
        base_y, base_x = y + ch, x + cw / 2
        cv2.ellipse(illum, (int(base_x), int(base_y)), (int(ch * 0.9), max(int(ch * 0.18), 1)),
                    0, 0, 360, float(rng.uniform(0.6, 1.0)), -1)
    for x, y, cw, ch, _ in components(np.isin(label, (CAR, TRUCK, BUS, TRAIN)), int(20 * scale)):
        oncoming = x + cw / 2 < w * 0.45
        color = (0.9, 0.97, 1.0) if oncoming else (0.15, 0.15, 1.0)
        r = float(np.clip(cw * 0.05, 0.8 * scale, 2.5 * scale))
        for fx in (0.1, 0.9):
            lights.append((x + fx * cw, y + 0.5 * ch, r, color))
    for x, y, cw, ch, _ in components(label == TRAFFIC_LIGHT, 3):
        patch = image[y:y + ch, x:x + cw].reshape(-1, 3)
        brightest = patch[patch.sum(1).argmax()] / 255
        lights.append((x + cw / 2, y + ch / 3, max(cw * 0.4, 1.0), tuple(brightest.tolist())))
    illum = cv2.GaussianBlur(illum, (0, 0), 4 * scale)
    out = mul3(base, illum)
    out[sky] = 0
    out += mul3(np.ones_like(out) * np.float32([0.35, 0.3, 0.35]), pollution.repeat(w, 1) * sky)
    # lit windows: building pixels darker than their surroundings (the glass)
    lum = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    bld = (label == BUILDING).astype(np.float32)
    local = cv2.blur(lum * bld, (9, 9)) / np.maximum(cv2.blur(bld, (9, 9)), 1e-3)
    glass = (bld > 0) & (lum < local * 0.85)  # mean over building pixels only
    lit = glass & (smooth_noise(rng, (h, w), max(int(6 * scale), 2)) > rng.uniform(0.45, 0.6))
    warm = np.empty_like(out)
    warm[:] = (0.35, 0.75, 0.95)
    out = out + mul3(warm, lit * rng.uniform(0.5, 0.8))
    out += _glow(h, w, lights, scale) * rng.uniform(0.5, 0.8)
    # sensor noise, stronger relative to the dark signal
    sigma = 0.012 + 0.03 * np.sqrt(np.clip(out, 0, 1))
    noise = rng.standard_normal(out.shape, dtype=np.float32) * sigma * severity
    noise += rng.standard_normal((h, w, 1), dtype=np.float32) * 0.012 * severity
    return to_uint8(out + noise)
