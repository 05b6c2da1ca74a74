"""Poles along the kerb: street lamps, traffic signs and traffic lights."""
from __future__ import annotations

import numpy as np

from stag_seg.demo.synth.classes import POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN
from stag_seg.demo.synth.materials import jitter
from stag_seg.demo.synth.painter import Painter


def draw_pole(p: Painter, rng: np.random.Generator, x: float, z: float, kind: str,
              toward_road: float) -> None:
    """A pole at (x, z): ``kind`` 'lamp' (arm towards the road), 'sign' or 'light'."""
    grey = jitter(rng, np.array([120, 125, 125], np.float32), 15)
    if kind == 'lamp':
        hgt = rng.uniform(6, 9)
        p.rect(x, z, -0.09, 0.09, 0, hgt, grey, POLE)
        arm = toward_road * rng.uniform(1.0, 2.0)
        p.rect(x, z, min(0, arm), max(0, arm), hgt - 0.12, hgt, grey, POLE)
        p.rect(x, z, arm - 0.3, arm + 0.3, hgt - 0.3, hgt - 0.05, grey * 0.8, POLE)
    elif kind == 'sign':
        hgt = rng.uniform(2.6, 3.4)
        p.rect(x, z, -0.05, 0.05, 0, hgt, grey, POLE)
        shape = rng.integers(4)
        red = np.array([40, 40, 200], np.float32)
        white = np.array([235, 235, 235], np.float32)
        blue = np.array([170, 90, 20], np.float32)
        yc = hgt - 0.35
        if shape == 0:
            p.ellipse(x, z, 0, yc, 0.33, 0.33, red, TRAFFIC_SIGN)
            p.ellipse(x, z, 0, yc, 0.24, 0.24, white, TRAFFIC_SIGN)
        elif shape == 1:
            tri = np.array([[-0.38, yc - 0.3], [0.38, yc - 0.3], [0, yc + 0.38]])
            p.poly(np.c_[x + tri[:, 0], tri[:, 1], np.full(3, z)], red, TRAFFIC_SIGN, z)
            p.poly(np.c_[x + tri[:, 0] * 0.7, yc - 0.3 + (tri[:, 1] - yc + 0.3) * 0.7 + 0.07,
                         np.full(3, z)], white, TRAFFIC_SIGN, z)
        elif shape == 2:
            p.rect(x, z, -0.3, 0.3, yc - 0.3, yc + 0.3, blue, TRAFFIC_SIGN)
            p.rect(x, z, -0.06, 0.06, yc - 0.2, yc + 0.2, white, TRAFFIC_SIGN)
        else:
            p.rect(x, z, -0.45, 0.45, yc - 0.2, yc + 0.2, np.array([40, 200, 230], np.float32),
                   TRAFFIC_SIGN)
    else:  # traffic light
        hgt = rng.uniform(2.8, 3.6)
        p.rect(x, z, -0.06, 0.06, 0, hgt, grey * 0.6, POLE)
        box = np.array([35, 35, 35], np.float32)
        p.rect(x, z, -0.17, 0.17, hgt, hgt + 0.9, box, TRAFFIC_LIGHT)
        on = rng.integers(3)
        lamps = [np.array(c, np.float32) for c in ([60, 60, 255], [40, 200, 255], [120, 255, 60])]
        for i in range(3):
            col = lamps[i] if i == on else lamps[i] * 0.25
            p.ellipse(x, z, 0, hgt + 0.75 - 0.3 * i, 0.1, 0.1, col, TRAFFIC_LIGHT, 10)
