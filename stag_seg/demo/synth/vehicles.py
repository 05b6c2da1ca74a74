"""Cars, trucks, buses and trams, cyclists and motorcyclists, parked bicycles."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.classes import (
    BICYCLE,
    BUS,
    CAR,
    MOTORCYCLE,
    RIDER,
    TRAIN,
    TRUCK,
)
from stag_seg.demo.synth.materials import CAR_COLORS, CLOTH_COLORS, pick
from stag_seg.demo.synth.painter import Painter
from stag_seg.demo.synth.people import draw_person


def draw_vehicle(p: Painter, rng: np.random.Generator, x: float, z: float, cls: int,
                 facing: bool) -> None:
    """Car/truck/bus seen from behind (or front if ``facing``), with its visible side face."""
    dims = {CAR: (rng.uniform(1.7, 1.95), rng.uniform(3.9, 4.8), 1.45),
            TRUCK: (2.45, rng.uniform(6.5, 9), rng.uniform(3.2, 3.8)),
            BUS: (2.55, 12.0, 3.1), TRAIN: (2.4, 20.0, 3.4)}[cls]
    wd, ln, ht = dims
    if cls == CAR:
        color = pick(rng, CAR_COLORS, 10)
    elif cls == TRUCK:
        color = pick(rng, np.array([[230, 230, 230], [180, 180, 180], [60, 60, 150],
                                    [150, 90, 40]], np.float32), 8)
    elif cls == BUS:
        color = pick(rng, np.array([[40, 200, 230], [40, 40, 190], [220, 220, 220],
                                    [150, 100, 40]], np.float32), 8)
    else:  # tram
        color = pick(rng, np.array([[60, 60, 200], [230, 230, 230], [60, 170, 60]],
                                   np.float32), 8)
    dark = np.array([28, 28, 30], np.float32)
    glass = np.array([70, 60, 55], np.float32) + rng.uniform(-10, 10)
    body_top = 0.95 if cls == CAR else ht
    side_x = x - wd / 2 if x - wd / 2 > 0 else (x + wd / 2 if x + wd / 2 < 0 else None)
    if side_x is not None:  # visible side face
        sc = color * 0.78
        p.poly(np.array([[side_x, 0.25, z], [side_x, 0.25, z + ln],
                         [side_x, body_top, z + ln], [side_x, body_top, z]]), sc, cls, z)
        if cls == CAR:
            p.poly(np.array([[side_x, 0.95, z + 0.7], [side_x, 0.95, z + ln - 0.8],
                             [side_x * 0.97 + x * 0.03, 1.42, z + ln - 1.5],
                             [side_x * 0.97 + x * 0.03, 1.42, z + 1.2]]), glass * 0.9, cls, z)
        else:
            p.poly(np.array([[side_x, ht * 0.55, z + 0.5], [side_x, ht * 0.55, z + ln - 0.5],
                             [side_x, ht * 0.85, z + ln - 0.5], [side_x, ht * 0.85, z + 0.5]]),
                   glass if cls in (BUS, TRAIN) else sc * 0.9, cls, z)
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        r = 0.33 if cls == CAR else 0.5
        for zw in (z + 0.8, z + ln - 0.9):
            p.poly(np.stack([np.full(12, side_x), r + r * np.sin(t), zw + r * np.cos(t)], 1),
                   dark, cls, z)
    if cls == CAR:
        p.rect(x, z, -wd / 2, wd / 2, 0.25, 0.95, color, cls)
        p.rect(x, z, -wd / 2, wd / 2, 0.22, 0.42, color * 0.55, cls)  # bumper
        p.poly(np.array([[x - wd * 0.46, 0.95, z], [x + wd * 0.46, 0.95, z],
                         [x + wd * 0.35, 1.45, z + 0.3], [x - wd * 0.35, 1.45, z + 0.3]]),
               color * 0.95, cls, z)
        p.poly(np.array([[x - wd * 0.4, 0.99, z], [x + wd * 0.4, 0.99, z],
                         [x + wd * 0.31, 1.38, z + 0.3], [x - wd * 0.31, 1.38, z + 0.3]]),
               glass, cls, z)
        for s in (-1, 1):
            p.rect(x, z, s * wd / 2 - 0.28 * (s > 0), s * wd / 2 + 0.28 * (s < 0), 0.0, 0.35,
                   dark, cls)
    else:
        p.rect(x, z, -wd / 2, wd / 2, 0.5, ht, color, cls)
        p.rect(x, z, -wd / 2, wd / 2, 0.3, 0.55, dark * 1.5, cls)
        if cls in (BUS, TRAIN) or facing:
            p.rect(x, z, -wd * 0.42, wd * 0.42, ht * 0.5, ht * 0.88, glass, cls)
        else:
            p.rect(x, z, -0.02, 0.02, 0.6, ht - 0.1, color * 0.7, cls)
        for s in (-1, 1):
            p.rect(x, z, s * wd / 2 - 0.4 * (s > 0), s * wd / 2 + 0.4 * (s < 0), 0.0, 0.55,
                   dark, cls)
    light = np.array([200, 230, 240], np.float32) if facing else np.array([40, 40, 200],
                                                                          np.float32)
    ly = 0.72 if cls == CAR else 0.8
    for s in (-1, 1):
        p.rect(x, z, s * (wd / 2 - 0.05) - 0.18 * (s > 0), s * (wd / 2 - 0.05) + 0.18 * (s < 0),
               ly, ly + 0.14, light, cls)
    p.rect(x, z, -0.26, 0.26, 0.42, 0.54, np.array([225, 225, 225], np.float32), cls)



def draw_cyclist(p: Painter, rng: np.random.Generator, x: float, z: float) -> None:
    """Rider on a bicycle or motorcycle, seen from behind."""
    moto = rng.random() < 0.4
    dark = np.array([30, 30, 32], np.float32)
    if moto:
        body = pick(rng, CAR_COLORS, 10)
        p.ellipse(x, z, 0, 0.32, 0.08, 0.32, dark, MOTORCYCLE, 12)
        p.rect(x, z, -0.3, 0.3, 0.45, 0.85, body, MOTORCYCLE)
        p.rect(x, z, -0.08, 0.08, 0.62, 0.72, np.array([40, 40, 200], np.float32), MOTORCYCLE)
        draw_person(p, rng, x, z, RIDER, legs=False, base=-0.1)
        for sd in (-1, 1):
            p.rect(x, z, sd * 0.32 - 0.1 * (sd > 0), sd * 0.32 + 0.1 * (sd < 0), 0.45, 1.0,
                   pick(rng, CLOTH_COLORS[:5]), RIDER)
        p.rect(x, z, -0.4, 0.4, 1.02, 1.06, dark, MOTORCYCLE)
        p.ellipse(x, z, 0, 1.58, 0.14, 0.15, pick(rng, CAR_COLORS, 10), RIDER, 12)  # helmet
    else:
        p.ellipse(x, z, 0, 0.34, 0.035, 0.34, dark, BICYCLE, 10)
        p.rect(x, z, -0.3, 0.3, 1.0, 1.04, dark, BICYCLE)
        p.rect(x, z, -0.02, 0.02, 0.34, 1.0, dark * 2, BICYCLE)
        draw_person(p, rng, x, z, RIDER, legs=False, base=-0.05)
        for sd in (-1, 1):
            p.rect(x, z, sd * 0.06, sd * 0.18, 0.3, 0.85, pick(rng, CLOTH_COLORS[:5]), RIDER)


def draw_parked_bicycle(p: Painter, rng: np.random.Generator, x: float, z: float) -> None:
    """A bicycle standing side-on at (x, z), drawn as wheels and frame lines."""
    col = pick(rng, CLOTH_COLORS, 10)
    for cx in (-0.5, 0.5):
        p.ring(x, z, cx, 0.34, 0.32, 0.035, np.array([25, 25, 25], np.float32), BICYCLE)
    pts = np.array([[-0.5, 0.34], [-0.05, 0.34], [0.35, 0.8], [-0.15, 0.8], [-0.05, 0.34],
                    [-0.22, 0.92], [0.5, 0.34], [0.38, 0.95]])
    for a, b in ((0, 1), (1, 2), (2, 3), (3, 1), (3, 5), (2, 6), (2, 7)):
        seg = np.array([[x + pts[a, 0], pts[a, 1], z], [x + pts[b, 0], pts[b, 1], z]])
        q = np.round(p.cam.project(seg) * 16).astype(np.int32)
        th = max(1, int(round(p.cam.f * 0.04 / z)))
        cv2.polylines(p.img, [q], False, tuple(float(v) for v in col), th, cv2.LINE_8, 4)
        cv2.polylines(p.label, [q], False, BICYCLE, th, cv2.LINE_8, 4)
        cv2.polylines(p.depth, [q], False, float(z), th, cv2.LINE_8, 4)
