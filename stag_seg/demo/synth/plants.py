"""Trees and bushes (vegetation) as clusters of ellipses."""
from __future__ import annotations

import numpy as np

from stag_seg.demo.synth.classes import VEGETATION
from stag_seg.demo.synth.materials import jitter
from stag_seg.demo.synth.painter import Painter


def draw_tree(p: Painter, rng: np.random.Generator, x: float, z: float) -> None:
    """A trunk and a crown of overlapping ellipses at (x, z)."""
    trunk = rng.uniform(1.8, 3.2)
    p.rect(x, z, -0.13, 0.13, 0, trunk + 0.5, jitter(rng, np.array([45, 65, 85], np.float32),
                                                      8), VEGETATION)
    r = rng.uniform(1.2, 2.6)
    base = jitter(rng, np.array([45, 110, 55], np.float32), 12)
    for _ in range(rng.integers(5, 9)):
        cx, cy = rng.uniform(-r, r) * 0.8, trunk + r + rng.uniform(-r, r) * 0.7
        rr = r * rng.uniform(0.45, 0.8)
        p.ellipse(x, z, cx, cy, rr, rr, base * rng.uniform(0.75, 1.15), VEGETATION, 14)


def draw_bush(p: Painter, rng: np.random.Generator, x: float, z: float) -> None:
    """A low cluster of ellipses at (x, z)."""
    base = jitter(rng, np.array([50, 115, 60], np.float32), 12)
    for _ in range(rng.integers(3, 6)):
        rr = rng.uniform(0.4, 0.9)
        p.ellipse(x, z, rng.uniform(-0.8, 0.8), rr * 0.8, rr, rr * 0.8,
                  base * rng.uniform(0.8, 1.15), VEGETATION, 12)
