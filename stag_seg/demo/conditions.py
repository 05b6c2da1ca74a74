"""Adverse-condition renderers (fog, night, rain, snow) applied to procedural street scenes."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from stag_seg.demo.scenes import (
    BUILDING,
    BUS,
    CAR,
    POLE,
    ROAD,
    SIDEWALK,
    SKY,
    TERRAIN,
    TRAFFIC_LIGHT,
    TRAIN,
    TRUCK,
    VEGETATION,
    WALL,
)

Condition = Callable[..., np.ndarray]


def _to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def _mul3(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``img * m[..., None]`` for (H, W, 3) float32 ``img`` and (H, W) ``m`` (new array)."""
    m = m.astype(np.float32, copy=False)
    return cv2.multiply(img, cv2.merge([m, m, m]))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """(H, W) float32 value noise in [0, 1] with features about ``cell`` pixels wide."""
    h, w = shape
    small = rng.random((max(h // cell, 2), max(w // cell, 2))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _saturation(img: np.ndarray, factor: float) -> np.ndarray:
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.addWeighted(img, factor, cv2.merge([grey] * 3), 1 - factor, 0)


def _components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """(n, 5) int stats (x, y, w, h, area) of the connected components of ``mask``."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    stats = stats[1:n]
    return stats[stats[:, 4] >= min_area]


def _horizon(label: np.ndarray) -> int:
    """Row of the horizon, estimated as the top of the road."""
    rows = np.nonzero((label == ROAD).any(axis=1))[0]
    return int(rows[0]) if rows.size else label.shape[0] // 2


def fog(image: np.ndarray, label: np.ndarray, depth: np.ndarray, rng: np.random.Generator,
        severity: float = 1.0) -> np.ndarray:
    """Koschmieder haze ``I t + A (1 - t)``, ``t = exp(-beta depth)``, grey-white airlight.

    image (H, W, 3) uint8 BGR, label (H, W) uint8, depth (H, W) float32 metres -> uint8 BGR.
    """
    h, w = label.shape
    img = _to_float(image)
    beta = rng.uniform(0.015, 0.035) * severity
    beta_map = beta * (0.75 + 0.5 * _smooth_noise(rng, (h, w), 48))  # patchy fog
    t = np.exp(-beta_map * np.minimum(depth, 300)).astype(np.float32)
    a = rng.uniform(0.72, 0.85)
    airlight = np.empty_like(img)
    airlight[:] = (a * 1.02, a, a * 0.98)
    out = _mul3(img, t) + _mul3(airlight, 1 - t)
    out = _saturation(out, 0.75)
    out = cv2.GaussianBlur(out, (0, 0), 0.7)
    return _to_uint8(out)


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
    img = _to_float(cv2.GaussianBlur(image, (0, 0), 0.8))
    gamma = rng.uniform(1.3, 1.6) * (0.5 + 0.5 * severity)
    ambient = rng.uniform(0.3, 0.45) / severity
    base = cv2.multiply(np.power(img, gamma), (1.25, 1.0, 0.75, 0.0))
    sky = label == SKY
    # light pollution near the horizon on an otherwise black sky
    rows = np.arange(h, dtype=np.float32)[:, None]
    hz = _horizon(label)
    pollution = np.exp(-np.maximum(hz - rows, 0) / (0.25 * h)) * rng.uniform(0.12, 0.25)
    illum = np.full((h, w), ambient, np.float32)
    lights = []
    lamp = (rng.uniform(0.45, 0.75), rng.uniform(0.8, 0.95), 1.0)  # sodium/LED, BGR
    for x, y, cw, ch, _ in _components(label == POLE, int(12 * scale)):
        if ch < 10 * scale:
            continue
        r = float(np.clip(cw * 0.8, 1.2 * scale, 3 * scale))
        lights.append((x + cw / 2, y + r * 0.5, r, lamp))
        # pool of light on the ground below the lamp
        base_y, base_x = y + ch, x + cw / 2
        cv2.ellipse(illum, (int(base_x), int(base_y)), (int(ch * 0.9), max(int(ch * 0.18), 1)),
                    0, 0, 360, float(rng.uniform(0.6, 1.0)), -1)
    for x, y, cw, ch, _ in _components(np.isin(label, (CAR, TRUCK, BUS, TRAIN)), int(20 * scale)):
        oncoming = x + cw / 2 < w * 0.45
        color = (0.9, 0.97, 1.0) if oncoming else (0.15, 0.15, 1.0)
        r = float(np.clip(cw * 0.05, 0.8 * scale, 2.5 * scale))
        for fx in (0.1, 0.9):
            lights.append((x + fx * cw, y + 0.5 * ch, r, color))
    for x, y, cw, ch, _ in _components(label == TRAFFIC_LIGHT, 3):
        patch = image[y:y + ch, x:x + cw].reshape(-1, 3)
        brightest = patch[patch.sum(1).argmax()] / 255
        lights.append((x + cw / 2, y + ch / 3, max(cw * 0.4, 1.0), tuple(brightest.tolist())))
    illum = cv2.GaussianBlur(illum, (0, 0), 4 * scale)
    out = _mul3(base, illum)
    out[sky] = 0
    out += _mul3(np.ones_like(out) * np.float32([0.35, 0.3, 0.35]), pollution.repeat(w, 1) * sky)
    # lit windows: building pixels darker than their surroundings (the glass)
    lum = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    bld = (label == BUILDING).astype(np.float32)
    local = cv2.blur(lum * bld, (9, 9)) / np.maximum(cv2.blur(bld, (9, 9)), 1e-3)
    glass = (bld > 0) & (lum < local * 0.85)  # mean over building pixels only
    lit = glass & (_smooth_noise(rng, (h, w), max(int(6 * scale), 2)) > rng.uniform(0.45, 0.6))
    warm = np.empty_like(out)
    warm[:] = (0.35, 0.75, 0.95)
    out = out + _mul3(warm, lit * rng.uniform(0.5, 0.8))
    out += _glow(h, w, lights, scale) * rng.uniform(0.5, 0.8)
    # sensor noise, stronger relative to the dark signal
    sigma = 0.012 + 0.03 * np.sqrt(np.clip(out, 0, 1))
    noise = rng.standard_normal(out.shape, dtype=np.float32) * sigma * severity
    noise += rng.standard_normal((h, w, 1), dtype=np.float32) * 0.012 * severity
    return _to_uint8(out + noise)


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
    img = _to_float(image)
    img = _saturation(img, rng.uniform(0.45, 0.65))
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 0.8) * scale)
    # thin rain haze, grey sky
    t = np.exp(-rng.uniform(0.006, 0.012) * severity * np.minimum(depth, 300)).astype(np.float32)
    grey = np.full_like(img, rng.uniform(0.38, 0.48))
    img = _mul3(img, t) + _mul3(grey, 1 - t)
    img *= rng.uniform(0.62, 0.75)
    # wet road: darker asphalt mirroring the scene above the horizon
    hz = _horizon(label)
    src = np.clip(2 * hz - np.arange(h), 0, h - 1)
    mirror = cv2.blur(img[src], (3, 15))
    wet = np.where(label == ROAD, rng.uniform(0.25, 0.4),
                   np.where(label == SIDEWALK, 0.18, 0.0)).astype(np.float32)
    wet *= 0.6 + 0.4 * _smooth_noise(rng, (h, w), max(int(16 * scale), 2))
    img = _mul3(img, 1 - 0.35 * wet / 0.45) + _mul3(mirror, wet)
    # streaks: many thin far ones, fewer thick near ones
    angle = np.deg2rad(rng.uniform(-18, 18))
    area = h * w / (512 * 256)
    layer = _streaks(rng, h, w, int(rng.uniform(500, 900) * area * severity), 18 * scale,
                     angle, 1)
    layer += 0.8 * _streaks(rng, h, w, int(rng.uniform(100, 200) * area * severity), 40 * scale,
                            angle, max(int(2 * scale), 1))
    alpha = np.clip(layer * rng.uniform(0.7, 0.9), 0, 0.9)
    white = np.full_like(img, 0.85)
    img = _mul3(img, 1 - alpha) + _mul3(white, alpha)
    return _to_uint8(img)


def snow(image: np.ndarray, label: np.ndarray, depth: np.ndarray, rng: np.random.Generator,
         severity: float = 1.0) -> np.ndarray:
    """Snow cover on upward surfaces, falling flakes, white overcast sky, low contrast.

    image (H, W, 3) uint8 BGR, label (H, W) uint8, depth (H, W) float32 metres -> uint8 BGR.
    """
    h, w = label.shape
    scale = h / 256
    img = _to_float(image)
    img = _saturation(img, 0.6)
    white = np.empty_like(img)
    white[:] = (0.95, 0.93, 0.9)
    noise = _smooth_noise(rng, (h, w), max(int(24 * scale), 2))
    fine = _smooth_noise(rng, (h, w), 2)
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
    img = _mul3(img, 1 - cover) + _mul3(white, cover)
    sky = (label == SKY).astype(np.float32)
    overcast = np.full_like(img, rng.uniform(0.8, 0.9))
    img = _mul3(img, 1 - 0.6 * sky) + _mul3(overcast, 0.6 * sky)
    # low contrast, slight haze
    t = np.exp(-rng.uniform(0.01, 0.02) * severity * np.minimum(depth, 300)).astype(np.float32)
    img = _mul3(img, t) + _mul3(np.full_like(img, 0.85), 1 - t)
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
    img = _mul3(img, 1 - alpha) + _mul3(np.full_like(img, 0.97), alpha)
    return _to_uint8(img)


CONDITIONS: dict[str, Condition] = {'fog': fog, 'night': night, 'rain': rain, 'snow': snow}


def apply_condition(name: str, image: np.ndarray, label: np.ndarray, depth: np.ndarray,
                    rng: np.random.Generator, severity: float = 1.0) -> np.ndarray:
    """Apply condition ``name`` (one of :data:`CONDITIONS`) to a scene; returns uint8 BGR."""
    if name not in CONDITIONS:
        raise ValueError(f'unknown condition {name!r}; expected one of {sorted(CONDITIONS)}')
    return CONDITIONS[name](image, label, depth, rng, severity=severity)
