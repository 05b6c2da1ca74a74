"""Scene geometry: the pinhole camera and one scene's sampled road, facades and colours."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stag_seg.demo.synth.classes import BUILDING, FENCE, VEGETATION, WALL
from stag_seg.demo.synth.materials import BUILDING_COLORS, jitter, pick

SKY_DEPTH = 1000.0  # metres; the sky is the farthest thing in every scene


@dataclass(frozen=True)
class Camera:
    """Pinhole camera at lateral X=0, ``height`` metres above a flat ground, looking along +Z."""

    width: int
    height_px: int
    f: float  # focal length, pixels
    cx: float  # column of the vanishing point
    horizon: float  # row of the vanishing point
    height: float  # metres above ground

    def project(self, pts: np.ndarray) -> np.ndarray:
        """(n, 3) world points (X lateral, Y up, Z forward; metres) -> (n, 2) float pixels."""
        out = np.empty((len(pts), 2))
        z = np.maximum(pts[:, 2], 0.1) / self.f
        out[:, 0] = self.cx + pts[:, 0] / z
        out[:, 1] = self.horizon + (self.height - pts[:, 1]) / z
        return out


@dataclass
class Facade:
    """A vertical plane at lateral ``x`` split along Z into segments of one class each."""

    x: float
    bounds: np.ndarray  # (n+1,) float, Z boundaries of the segments
    kinds: np.ndarray  # (n,) int, class id per segment, -1 = gap
    heights: np.ndarray  # (n,) float, metres
    colors: np.ndarray  # (n, 3) float BGR
    windows: np.ndarray  # (n, 5) float: u period, floor height, width frac, height frac, shop
    glass: np.ndarray  # (n, 3) float BGR window colour
    shade: float  # brightness of this street side


@dataclass
class Layout:
    """Everything sampled for one scene before rendering."""

    cam: Camera
    road_off: float  # lateral X of the road centre
    road_half: float  # half road width, metres
    n_lanes: int
    sidewalk: tuple[float, float]  # sidewalk width (left, right)
    terrain: tuple[float, float]  # grass strip width behind the sidewalk (left, right)
    facades: list[Facade]  # far to near
    skyline: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None  # Z, x-bounds, H, colours
    road_color: np.ndarray
    walk_color: np.ndarray
    grass_color: np.ndarray
    sky_top: np.ndarray
    sky_bottom: np.ndarray
    crosswalk: float | None  # Z of a zebra crossing



def _sample_facade(rng: np.random.Generator, x: float, z0: float, z_max: float, back: bool,
                   green: float) -> Facade:
    """Segments along Z; ``green`` biases towards vegetation (parks)."""
    if back:
        kinds, probs = [BUILDING, VEGETATION, -1], [0.75 - green / 2, 0.15 + green / 2, 0.1]
    else:
        kinds = [BUILDING, VEGETATION, WALL, FENCE, -1]
        probs = [0.58 - green, 0.1 + green, 0.1, 0.1, 0.12]
    bounds, ks = [z0], []
    while bounds[-1] < z_max:
        k = int(rng.choice(kinds, p=probs))
        if ks and ks[-1] == -1 and k == -1:
            k = BUILDING
        length = rng.uniform(4, 12) if k == -1 else rng.uniform(8, 35)
        ks.append(k)
        bounds.append(bounds[-1] + length)
    n = len(ks)
    kinds_a = np.array(ks, np.int64)
    heights = np.select([kinds_a == BUILDING, kinds_a == VEGETATION, kinds_a == WALL],
                        [rng.uniform(8, 28, n) + back * 6, rng.uniform(3, 9, n) + back * 5,
                         rng.uniform(1.2, 3.0, n)], rng.uniform(1.0, 2.2, n)).astype(np.float32)
    colors = np.empty((n, 3), np.float32)
    for i, k in enumerate(ks):
        if k == VEGETATION:
            colors[i] = jitter(rng, np.array([45, 105, 60], np.float32), 12)
        elif k == WALL:
            colors[i] = jitter(rng, np.array([125, 135, 145], np.float32), 20)
        elif k == FENCE:
            base = [[70, 90, 70], [60, 95, 125], [110, 110, 110]][rng.integers(3)]
            colors[i] = jitter(rng, np.array(base, np.float32), 10)
        else:
            colors[i] = pick(rng, BUILDING_COLORS, 15)
    windows = np.stack([rng.uniform(2.2, 4.0, n), rng.uniform(2.9, 3.6, n),
                        rng.uniform(0.3, 0.6, n), rng.uniform(0.4, 0.6, n),
                        (rng.random(n) < 0.5).astype(np.float64)], axis=1).astype(np.float32)
    glass = np.stack([rng.uniform(70, 115, n), rng.uniform(55, 95, n),
                      rng.uniform(40, 80, n)], axis=1).astype(np.float32)
    return Facade(x, np.array(bounds), kinds_a, heights, colors, windows, glass,
                  float(rng.uniform(0.7, 1.1)))


def sample_layout(rng: np.random.Generator, size: tuple[int, int]) -> Layout:
    """Sample camera, road geometry, facades and colours for a (width, height) image."""
    w, h = size
    cam = Camera(w, h, f=w * rng.uniform(0.8, 1.0), cx=w * rng.uniform(0.42, 0.58),
                 horizon=h * rng.uniform(0.36, 0.5), height=rng.uniform(1.3, 1.7))
    road_half = rng.uniform(3.5, 7.5)
    n_lanes = max(2, int(round(2 * road_half / 3.2)))
    road_off = rng.uniform(-0.5, 0.5) * road_half
    sidewalk = (rng.uniform(2.0, 5.0), rng.uniform(2.0, 5.0))
    terrain = tuple(float(rng.uniform(1, 5)) if rng.random() < 0.35 else 0.0 for _ in range(2))
    z_max = rng.uniform(120, 300)
    facades = []
    for back in (True, False):
        for i, s in enumerate((-1, 1)):
            green = 0.3 if terrain[i] > 0 else rng.uniform(0.0, 0.15)
            x_front = road_half + sidewalk[i] + terrain[i]
            x = x_front + (rng.uniform(6, 20) if back else 0.0)
            z0 = rng.uniform(0, 10) if not back else 0.0
            facades.append(_sample_facade(rng, road_off + s * x, z0, z_max, back, green))
    skyline = None
    if rng.random() < 0.7:
        xb = np.cumsum(np.r_[-400, rng.uniform(8, 30, 60)])
        skyline = (z_max, xb, rng.uniform(6, 40, 60),
                   np.stack([pick(rng, BUILDING_COLORS, 15) for _ in range(60)]))
    overcast = rng.random() < 0.3
    sky_top = np.array([200, 150, 100], np.float32) if not overcast else np.full(3, 185, np.float32)
    return Layout(
        cam=cam, road_off=road_off, road_half=road_half, n_lanes=n_lanes, sidewalk=sidewalk,
        terrain=terrain, facades=facades, skyline=skyline,
        road_color=jitter(rng, np.array([95, 92, 90], np.float32), 6),
        walk_color=pick(rng, np.array([[150, 155, 160], [120, 130, 165], [170, 175, 175]],
                                      np.float32), 10),
        grass_color=jitter(rng, np.array([70, 135, 115], np.float32), 12),
        sky_top=jitter(rng, sky_top, 15),
        sky_bottom=jitter(rng, np.array([235, 225, 215], np.float32), 10),
        crosswalk=float(rng.uniform(8, 30)) if rng.random() < 0.3 else None)
