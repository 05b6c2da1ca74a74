"""Pedestrians (and the bodies of riders) as flat world-space shapes."""
from __future__ import annotations

import numpy as np

from stag_seg.demo.synth.classes import PERSON
from stag_seg.demo.synth.materials import CLOTH_COLORS, SKIN_COLORS, pick
from stag_seg.demo.synth.painter import Painter


def draw_person(p: Painter, rng: np.random.Generator, x: float, z: float, cls: int = PERSON,
                legs: bool = True, base: float = 0.0) -> None:
    """A standing person at (x, z) (a rider's body when ``legs`` is False, raised by ``base``)."""
    s = rng.uniform(0.9, 1.1)
    top, pants = pick(rng, CLOTH_COLORS, 15), pick(rng, CLOTH_COLORS[:5], 10)
    skin = pick(rng, SKIN_COLORS, 8)
    if legs:
        spread = rng.uniform(0.0, 0.12)
        for sd in (-1, 1):
            p.poly(np.array([[x + sd * 0.03, base + 0.88 * s, z],
                             [x + sd * 0.17, base + 0.88 * s, z],
                             [x + sd * (0.15 + spread), base, z],
                             [x + sd * (0.03 + spread), base, z]]), pants, cls, z)
    p.rect(x, z, -0.2 * s, 0.2 * s, base + 0.82 * s, base + 1.45 * s, top, cls)
    for sd in (-1, 1):
        p.rect(x, z, sd * 0.2 * s - 0.07 * (sd > 0), sd * 0.2 * s + 0.07 * (sd < 0),
               base + 0.85 * s, base + 1.42 * s, top * 0.85, cls)
    p.rect(x, z, -0.05, 0.05, base + 1.43 * s, base + 1.52 * s, skin, cls)
    p.ellipse(x, z, 0, base + 1.63 * s, 0.1 * s, 0.12 * s, skin, cls, 12)
    hair = pick(rng, np.array([[20, 25, 30], [40, 60, 90], [30, 30, 30], [120, 150, 170]],
                              np.float32), 8)
    p.ellipse(x, z, 0, base + 1.68 * s, 0.105 * s, 0.08 * s, hair, cls, 12)
