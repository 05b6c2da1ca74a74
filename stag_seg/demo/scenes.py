"""Procedural Cityscapes-like street scenes: a BGR image, train-id labels and depth per rng."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TRAFFIC_LIGHT, TRAFFIC_SIGN, VEGETATION, TERRAIN,
 SKY, PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE) = range(19)
IGNORE = 255
SKY_DEPTH = 1000.0  # metres; the sky is the farthest thing in every scene
CLASS_NAMES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
               'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
               'truck', 'bus', 'train', 'motorcycle', 'bicycle')
# Cityscapes palette, RGB, indexed by train id.
PALETTE = np.array([[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156],
                    [190, 153, 153], [153, 153, 153], [250, 170, 30], [220, 220, 0],
                    [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
                    [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100],
                    [0, 0, 230], [119, 11, 32]], dtype=np.uint8)

_BUILDING_COLORS = np.array([[150, 180, 200], [150, 150, 152], [70, 85, 150], [200, 205, 210],
                             [80, 100, 130], [140, 200, 220], [160, 140, 120], [110, 120, 125],
                             [120, 150, 190]], np.float32)  # BGR
_CAR_COLORS = np.array([[40, 40, 40], [200, 200, 200], [150, 150, 155], [40, 40, 170],
                        [140, 70, 30], [230, 230, 235], [60, 90, 60], [20, 20, 25],
                        [90, 140, 190], [110, 100, 90]], np.float32)
_CLOTH_COLORS = np.array([[30, 30, 30], [60, 40, 30], [120, 120, 120], [40, 40, 140],
                          [130, 80, 40], [200, 200, 200], [40, 110, 50], [50, 150, 200],
                          [90, 50, 110], [150, 110, 60]], np.float32)
_SKIN_COLORS = np.array([[150, 175, 220], [110, 140, 190], [70, 95, 140], [50, 65, 100]],
                        np.float32)
# Per-class texture amplitude (fine grain, mid blotches, low-frequency patches), by label.
_TEXTURE = {ROAD: (0.07, 0.04, 0.08), SIDEWALK: (0.05, 0.04, 0.05), BUILDING: (0.04, 0.03, 0.06),
            WALL: (0.06, 0.06, 0.05), FENCE: (0.05, 0.03, 0.03), POLE: (0.03, 0.0, 0.0),
            VEGETATION: (0.2, 0.3, 0.1), TERRAIN: (0.14, 0.12, 0.12), SKY: (0.005, 0.0, 0.0),
            PERSON: (0.05, 0.02, 0.0), RIDER: (0.05, 0.02, 0.0), CAR: (0.02, 0.0, 0.0),
            TRUCK: (0.03, 0.02, 0.0), BUS: (0.02, 0.0, 0.0)}
_GROUND = (ROAD, SIDEWALK, TERRAIN)


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


@dataclass
class Scene:
    """One rendered scene."""

    image: np.ndarray  # (H, W, 3) uint8 BGR
    label: np.ndarray  # (H, W) uint8 train ids, 255 = ignore (ego vehicle)
    depth: np.ndarray  # (H, W) float32 metres along the optical axis; sky = SKY_DEPTH


def _jitter(rng: np.random.Generator, color: np.ndarray, amount: float) -> np.ndarray:
    out = color * rng.uniform(0.85, 1.12) + rng.uniform(-amount, amount, 3)
    return np.clip(out, 0, 255).astype(np.float32)


def _pick(rng: np.random.Generator, palette: np.ndarray, amount: float = 12) -> np.ndarray:
    return _jitter(rng, palette[rng.integers(len(palette))], amount)


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
            colors[i] = _jitter(rng, np.array([45, 105, 60], np.float32), 12)
        elif k == WALL:
            colors[i] = _jitter(rng, np.array([125, 135, 145], np.float32), 20)
        elif k == FENCE:
            base = [[70, 90, 70], [60, 95, 125], [110, 110, 110]][rng.integers(3)]
            colors[i] = _jitter(rng, np.array(base, np.float32), 10)
        else:
            colors[i] = _pick(rng, _BUILDING_COLORS, 15)
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
                   np.stack([_pick(rng, _BUILDING_COLORS, 15) for _ in range(60)]))
    overcast = rng.random() < 0.3
    sky_top = np.array([200, 150, 100], np.float32) if not overcast else np.full(3, 185, np.float32)
    return Layout(
        cam=cam, road_off=road_off, road_half=road_half, n_lanes=n_lanes, sidewalk=sidewalk,
        terrain=terrain, facades=facades, skyline=skyline,
        road_color=_jitter(rng, np.array([95, 92, 90], np.float32), 6),
        walk_color=_pick(rng, np.array([[150, 155, 160], [120, 130, 165], [170, 175, 175]],
                                       np.float32), 10),
        grass_color=_jitter(rng, np.array([70, 135, 115], np.float32), 12),
        sky_top=_jitter(rng, sky_top, 15),
        sky_bottom=_jitter(rng, np.array([235, 225, 215], np.float32), 10),
        crosswalk=float(rng.uniform(8, 30)) if rng.random() < 0.3 else None)


def _sky(lay: Layout, img: np.ndarray, rng: np.random.Generator) -> None:
    """Gradient plus clouds, above the horizon only (the ground covers the rest)."""
    h, w = img.shape[:2]
    hs = min(h, int(lay.cam.horizon) + 2)
    rows = np.arange(hs, dtype=np.float32)[:, None]
    t = np.clip(rows / max(lay.cam.horizon, 1.0), 0, 1) ** 0.7
    grad = lay.sky_top * (1 - t) + lay.sky_bottom * t  # (hs, 3)
    clouds = cv2.resize(rng.random((max(h // 32, 2), max(w // 32, 2))).astype(np.float32),
                        (w, h), interpolation=cv2.INTER_CUBIC)[:hs]
    clouds = np.clip((clouds - rng.uniform(0.45, 0.8)) * 3, 0, 1)
    sky = np.ascontiguousarray(np.broadcast_to(grad[:, None, :], (hs, w, 3)))
    img[:hs] = _mul3(sky, 1 - clouds) + cv2.merge([235 * clouds] * 3)
    img[hs:] = lay.sky_bottom


def _mul3(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``img * m[..., None]`` for (H, W, 3) float32 ``img`` and (H, W) ``m``, in place."""
    m = m.astype(np.float32, copy=False)
    return cv2.multiply(img, cv2.merge([m, m, m]), dst=img)


def _lut3(label: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> (H, W, 3) float32 via a (256, 3) float32 table."""
    return cv2.LUT(cv2.merge([label, label, label]), lut.reshape(256, 1, 3))


def _frac(x: np.ndarray) -> np.ndarray:
    """Fractional part (faster than ``np.mod`` for floats)."""
    return x - np.floor(x)


def _coverage(dist: np.ndarray, half_width: float, px_per_m: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a painted line of ``half_width`` metres at distance ``dist``."""
    return np.clip((half_width - np.abs(dist)) * px_per_m + 0.5, 0, 1)


def _ground(lay: Layout, img: np.ndarray, label: np.ndarray, depth: np.ndarray) -> None:
    cam = lay.cam
    h, w = label.shape
    y0 = int(np.floor(cam.horizon)) + 1
    if y0 >= h:
        return
    ys = np.arange(y0, h, dtype=np.float32)
    z = (cam.f * cam.height / (ys - cam.horizon))[:, None]  # (n, 1)
    xw = (np.arange(w, dtype=np.float32)[None] - cam.cx) * z / cam.f  # (n, w)
    d = xw - lay.road_off
    a = np.abs(d)
    right = d > 0
    walk = np.where(right, lay.sidewalk[1], lay.sidewalk[0])
    grass = np.where(right, lay.terrain[1], lay.terrain[0])
    lab = np.full(d.shape, SIDEWALK, np.uint8)
    lab[a < lay.road_half] = ROAD
    lab[(a >= lay.road_half + walk) & (a < lay.road_half + walk + grass)] = TERRAIN
    px_per_m = np.float32(cam.f) / z  # lateral pixels per metre
    lut = np.zeros((256, 3), np.float32)
    lut[ROAD], lut[SIDEWALK], lut[TERRAIN] = lay.road_color, lay.walk_color, lay.grass_color
    # paving joints fade out where they would alias, kerb stones are lighter
    fade = np.clip(np.float32(cam.f * cam.height / 6) / z ** 2, 0, 1)
    joints = (np.abs(_frac(d / 0.6) - 0.5) > 0.45) | (np.abs(_frac(z / 0.6) - 0.5) > 0.43)
    shade = 1 - 0.25 * joints * fade
    shade[(a >= lay.road_half) & (a < lay.road_half + 0.25)] = 1.15
    shade[lab != SIDEWALK] = 1.0
    col = _mul3(_lut3(lab, lut), shade)
    # lane lines (folded distance to the nearest one), edge lines, maybe a zebra crossing
    lane_w = 2 * lay.road_half / lay.n_lanes
    r = _frac((d + lay.road_half) / lane_w) * lane_w
    solid = lay.n_lanes == 2
    dash = 1.0 if solid else (_frac(z / 9.0) < 1 / 3)
    paint = _coverage(np.minimum(r, lane_w - r), 0.08, px_per_m) * dash
    paint *= a < lay.road_half - 0.6
    paint = np.maximum(paint, _coverage(a - (lay.road_half - 0.3), 0.07, px_per_m))
    if lay.crosswalk is not None:
        zc = lay.crosswalk
        paint = np.maximum(paint, (_frac(d) < 0.5) & (z > zc) & (z < zc + 4))
    paint *= lab == ROAD
    col = _mul3(col, 1 - paint) + cv2.merge([225 * paint] * 3)
    img[y0:] = col
    label[y0:] = lab
    depth[y0:] = np.minimum(z, SKY_DEPTH * 0.9)


def _skyline(lay: Layout, img: np.ndarray, label: np.ndarray, depth: np.ndarray) -> None:
    if lay.skyline is None:
        return
    cam = lay.cam
    z, xb, heights, colors = lay.skyline
    xs = (np.arange(cam.width, dtype=np.float32) - cam.cx) * z / cam.f
    idx = np.clip(np.searchsorted(xb, xs) - 1, 0, len(heights) - 1)
    top = cam.horizon - cam.f * (heights[idx] - cam.height) / z
    bottom = cam.horizon + cam.f * cam.height / z
    mask = (np.arange(cam.height_px)[:, None] >= top[None]) & \
           (np.arange(cam.height_px)[:, None] < bottom)
    img[mask] = np.broadcast_to(colors[idx] * 0.9, img.shape)[mask]
    label[mask] = BUILDING
    depth[mask] = z


def _facade_spans(lay: Layout, fac: Facade, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Per column: segment index, depth, top and bottom row (top = bottom where no facade)."""
    cam = lay.cam
    w = cam.width
    dx = np.arange(w, dtype=np.float32) - np.float32(cam.cx)
    with np.errstate(divide='ignore', invalid='ignore'):
        zc = np.float32(cam.f * fac.x) / dx
    valid = np.isfinite(zc) & (zc >= max(fac.bounds[0], 0.5)) & (zc < fac.bounds[-1])
    zc = np.where(valid, zc, np.float32(1.0))
    seg = np.clip(np.searchsorted(fac.bounds, zc, side='right') - 1, 0, len(fac.kinds) - 1)
    valid &= fac.kinds[seg] >= 0
    wobble = cv2.resize(rng.standard_normal((1, max(w // 6, 2)), dtype=np.float32), (w, 1),
                        interpolation=cv2.INTER_CUBIC)[0]
    hgt = fac.heights[seg] + np.where(fac.kinds[seg] == VEGETATION, 0.8 * wobble, 0.0)
    top = cam.horizon - cam.f * (hgt - cam.height) / zc
    bottom = np.where(valid, cam.horizon + cam.f * cam.height / zc, top)
    return seg, zc, top, bottom


def _facade(lay: Layout, fac: Facade, spans: tuple[np.ndarray, ...], occluder_top: np.ndarray,
            img: np.ndarray, label: np.ndarray, depth: np.ndarray) -> None:
    """Fill one facade plane, skipping rows hidden behind ``occluder_top`` (per column)."""
    cam = lay.cam
    seg, zc, top, bottom = spans
    bottom = np.minimum(bottom, occluder_top)
    ys = np.arange(label.shape[0], dtype=np.float32)[:, None]
    yv, xv = np.nonzero((ys >= top[None]) & (ys < bottom[None]))
    if yv.size == 0:
        return
    s, z = seg[xv], zc[xv]
    kind = fac.kinds[s]
    u = z
    v = cam.height + (cam.horizon - yv.astype(np.float32)) * z / np.float32(cam.f)
    col = fac.colors.T[:, s] * (np.float32(fac.shade) * (0.8 + 0.2 * np.clip(v / 3.0, 0, 1)))
    # (3, N): channel-planar is much faster than (N, 3) with broadcasting
    bld = kind == BUILDING
    if bld.any():
        win = fac.windows[s]
        px_per_period = cam.f * abs(fac.x) / z ** 2 * win[:, 0]
        vis = np.clip((px_per_period - 2.5) / 4, 0, 1)
        shop = (win[:, 4] > 0) & (v < 3.2)
        fu = _frac(u / win[:, 0])
        fv = _frac(v / win[:, 1])
        wf = np.where(shop, 0.85, win[:, 2])
        is_win = (np.abs(fu - 0.5) < wf / 2) & np.where(shop, (v > 0.4) & (v < 2.6),
                                                        np.abs(fv - 0.55) < win[:, 3] / 2)
        is_win &= bld & (v < fac.heights[s] - 1.0) & ((v > 3.4) | shop)
        roof = bld & (v > fac.heights[s] - 0.6)
        mix = is_win * vis
        col = col * (1 - mix) + fac.glass.T[:, s] * mix
        col *= np.where(roof, np.float32(0.75), np.float32(1))
    fence = kind == FENCE
    if fence.any():
        slats = (_frac(u / 0.25) < 0.32) | (np.abs(v - 0.2) < 0.06) | \
            (np.abs(v - fac.heights[s] + 0.1) < 0.06)
        col *= np.where(fence & ~slats, np.float32(0.55), np.float32(1))
    img[yv, xv] = col.T
    label[yv, xv] = kind
    depth[yv, xv] = z


def _facades(lay: Layout, img: np.ndarray, label: np.ndarray, depth: np.ndarray,
             rng: np.random.Generator) -> None:
    """Back planes, then front planes; back pixels hidden by a front plane are skipped."""
    spans = [_facade_spans(lay, fac, rng) for fac in lay.facades]
    n = len(lay.facades) // 2
    free = np.full(lay.cam.width, np.inf, np.float32)
    for i, fac in enumerate(lay.facades):
        if i < n:
            front = spans[i + n]
            occ = np.where(front[3] > front[2], front[2], free)
        else:
            occ = free
        _facade(lay, fac, spans[i], occ, img, label, depth)


class Painter:
    """Draws world-space polygons into image, label and depth, far objects first."""

    def __init__(self, cam: Camera, img: np.ndarray, label: np.ndarray, depth: np.ndarray):
        self.cam, self.img, self.label, self.depth = cam, img, label, depth

    def poly(self, pts: np.ndarray, color: np.ndarray, cls: int, z: float) -> None:
        """Fill a world polygon ``pts`` (n, 3) metres with ``color`` (BGR), class and depth."""
        p = np.round(self.cam.project(np.asarray(pts, np.float64)) * 16).astype(np.int32)
        cv2.fillPoly(self.img, [p], color.tolist(), cv2.LINE_8, 4)
        cv2.fillPoly(self.label, [p], int(cls), cv2.LINE_8, 4)
        cv2.fillPoly(self.depth, [p], float(z), cv2.LINE_8, 4)

    def rect(self, x: float, z: float, x0: float, x1: float, y0: float, y1: float,
             color: np.ndarray, cls: int) -> None:
        """Axis-aligned rectangle facing the camera at distance ``z``, offsets from ``x``."""
        self.poly(np.array([[x + x0, y0, z], [x + x1, y0, z], [x + x1, y1, z],
                            [x + x0, y1, z]]), color, cls, z)

    def ellipse(self, x: float, z: float, cx: float, cy: float, rx: float, ry: float,
                color: np.ndarray, cls: int, n: int = 16) -> None:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        self.poly(np.stack([x + cx + rx * np.cos(t), cy + ry * np.sin(t), np.full(n, z)], 1),
                  color, cls, z)

    def ring(self, x: float, z: float, cx: float, cy: float, r: float, thick: float,
             color: np.ndarray, cls: int) -> None:
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        pts = np.stack([x + cx + r * np.cos(t), cy + r * np.sin(t), np.full(16, z)], 1)
        p = np.round(self.cam.project(pts) * 16).astype(np.int32)
        th = max(1, int(round(self.cam.f * thick / z)))
        cv2.polylines(self.img, [p], True, tuple(float(v) for v in color), th, cv2.LINE_8, 4)
        cv2.polylines(self.label, [p], True, int(cls), th, cv2.LINE_8, 4)
        cv2.polylines(self.depth, [p], True, float(z), th, cv2.LINE_8, 4)


def _vehicle(p: Painter, rng: np.random.Generator, x: float, z: float, cls: int,
             facing: bool) -> None:
    """Car/truck/bus seen from behind (or front if ``facing``), with its visible side face."""
    dims = {CAR: (rng.uniform(1.7, 1.95), rng.uniform(3.9, 4.8), 1.45),
            TRUCK: (2.45, rng.uniform(6.5, 9), rng.uniform(3.2, 3.8)),
            BUS: (2.55, 12.0, 3.1), TRAIN: (2.4, 20.0, 3.4)}[cls]
    wd, ln, ht = dims
    if cls == CAR:
        color = _pick(rng, _CAR_COLORS, 10)
    elif cls == TRUCK:
        color = _pick(rng, np.array([[230, 230, 230], [180, 180, 180], [60, 60, 150],
                                     [150, 90, 40]], np.float32), 8)
    elif cls == BUS:
        color = _pick(rng, np.array([[40, 200, 230], [40, 40, 190], [220, 220, 220],
                                     [150, 100, 40]], np.float32), 8)
    else:  # tram
        color = _pick(rng, np.array([[60, 60, 200], [230, 230, 230], [60, 170, 60]],
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


def _person(p: Painter, rng: np.random.Generator, x: float, z: float, cls: int = PERSON,
            legs: bool = True, base: float = 0.0) -> None:
    s = rng.uniform(0.9, 1.1)
    top, pants = _pick(rng, _CLOTH_COLORS, 15), _pick(rng, _CLOTH_COLORS[:5], 10)
    skin = _pick(rng, _SKIN_COLORS, 8)
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
    hair = _pick(rng, np.array([[20, 25, 30], [40, 60, 90], [30, 30, 30], [120, 150, 170]],
                               np.float32), 8)
    p.ellipse(x, z, 0, base + 1.68 * s, 0.105 * s, 0.08 * s, hair, cls, 12)


def _cyclist(p: Painter, rng: np.random.Generator, x: float, z: float) -> None:
    """Rider on a bicycle or motorcycle, seen from behind."""
    moto = rng.random() < 0.4
    dark = np.array([30, 30, 32], np.float32)
    if moto:
        body = _pick(rng, _CAR_COLORS, 10)
        p.ellipse(x, z, 0, 0.32, 0.08, 0.32, dark, MOTORCYCLE, 12)
        p.rect(x, z, -0.3, 0.3, 0.45, 0.85, body, MOTORCYCLE)
        p.rect(x, z, -0.08, 0.08, 0.62, 0.72, np.array([40, 40, 200], np.float32), MOTORCYCLE)
        _person(p, rng, x, z, RIDER, legs=False, base=-0.1)
        for sd in (-1, 1):
            p.rect(x, z, sd * 0.32 - 0.1 * (sd > 0), sd * 0.32 + 0.1 * (sd < 0), 0.45, 1.0,
                   _pick(rng, _CLOTH_COLORS[:5]), RIDER)
        p.rect(x, z, -0.4, 0.4, 1.02, 1.06, dark, MOTORCYCLE)
        p.ellipse(x, z, 0, 1.58, 0.14, 0.15, _pick(rng, _CAR_COLORS, 10), RIDER, 12)  # helmet
    else:
        p.ellipse(x, z, 0, 0.34, 0.035, 0.34, dark, BICYCLE, 10)
        p.rect(x, z, -0.3, 0.3, 1.0, 1.04, dark, BICYCLE)
        p.rect(x, z, -0.02, 0.02, 0.34, 1.0, dark * 2, BICYCLE)
        _person(p, rng, x, z, RIDER, legs=False, base=-0.05)
        for sd in (-1, 1):
            p.rect(x, z, sd * 0.06, sd * 0.18, 0.3, 0.85, _pick(rng, _CLOTH_COLORS[:5]), RIDER)


def _parked_bicycle(p: Painter, rng: np.random.Generator, x: float, z: float) -> None:
    col = _pick(rng, _CLOTH_COLORS, 10)
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


def _pole(p: Painter, rng: np.random.Generator, x: float, z: float, kind: str,
          toward_road: float) -> None:
    grey = _jitter(rng, np.array([120, 125, 125], np.float32), 15)
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


def _tree(p: Painter, rng: np.random.Generator, x: float, z: float) -> None:
    trunk = rng.uniform(1.8, 3.2)
    p.rect(x, z, -0.13, 0.13, 0, trunk + 0.5, _jitter(rng, np.array([45, 65, 85], np.float32),
                                                       8), VEGETATION)
    r = rng.uniform(1.2, 2.6)
    base = _jitter(rng, np.array([45, 110, 55], np.float32), 12)
    for _ in range(rng.integers(5, 9)):
        cx, cy = rng.uniform(-r, r) * 0.8, trunk + r + rng.uniform(-r, r) * 0.7
        rr = r * rng.uniform(0.45, 0.8)
        p.ellipse(x, z, cx, cy, rr, rr, base * rng.uniform(0.75, 1.15), VEGETATION, 14)


def _bush(p: Painter, rng: np.random.Generator, x: float, z: float) -> None:
    base = _jitter(rng, np.array([50, 115, 60], np.float32), 12)
    for _ in range(rng.integers(3, 6)):
        rr = rng.uniform(0.4, 0.9)
        p.ellipse(x, z, rng.uniform(-0.8, 0.8), rr * 0.8, rr, rr * 0.8,
                  base * rng.uniform(0.8, 1.15), VEGETATION, 12)


def _place_objects(lay: Layout, rng: np.random.Generator) -> list[tuple[float, float, str]]:
    """(Z, X, kind) for every object; drawn far to near."""
    objs: list[tuple[float, float, str]] = []
    rh, off = lay.road_half, lay.road_off
    lane_w = 2 * rh / lay.n_lanes
    parking = [rng.random() < 0.5, rng.random() < 0.5]
    for k in range(lay.n_lanes):
        xc = off - rh + (k + 0.5) * lane_w
        side = 0 if k < lay.n_lanes / 2 else 1
        park = parking[side] and k in (0, lay.n_lanes - 1)
        z = rng.uniform(6, 14) + (8 if abs(xc) < 1.5 else 0)
        while z < 90:
            if park:
                kind = 'car'
                gap = rng.uniform(5.5, 9)
            else:
                kind = str(rng.choice(['car', 'truck', 'bus', 'train', 'cyclist'],
                                      p=[0.78, 0.07, 0.05, 0.02, 0.08]))
                if kind in ('truck', 'bus', 'train') and z < 15:
                    kind = 'car'
                gap = rng.uniform(10, 35)
            if rng.random() < (0.8 if park else 0.55):
                jitter = rng.uniform(-0.3, 0.3) if kind != 'cyclist' else \
                    (1 if side else -1) * lane_w * 0.3
                objs.append((z, xc + jitter, kind + ('_front' if side == 0 else '')))
            z += gap + {'truck': 8, 'bus': 12, 'train': 20}.get(kind, 0)
    for i, s in enumerate((-1, 1)):
        kerb, walk = off + s * rh, lay.sidewalk[i]
        z = rng.uniform(4, 20)
        spacing = rng.uniform(12, 30)
        while z < 120:
            kind = str(rng.choice(['lamp', 'sign', 'light'], p=[0.45, 0.35, 0.2]))
            objs.append((z, kerb + s * 0.5, kind + ('_r' if s < 0 else '_l')))
            z += spacing * rng.uniform(0.7, 1.3)
        if rng.random() < 0.5:
            z, x_tree = rng.uniform(5, 15), kerb + s * (walk + lay.terrain[i] / 2
                                                        if lay.terrain[i] else walk * 0.7)
            step = rng.uniform(7, 14)
            while z < 100:
                objs.append((z, x_tree, 'tree'))
                z += step
        if lay.terrain[i] > 1.5:
            for _ in range(rng.integers(0, 4)):
                objs.append((rng.uniform(5, 50), kerb + s * (walk + lay.terrain[i] * 0.5),
                             'bush'))
        for _ in range(rng.integers(0, 6)):
            objs.append((rng.uniform(4, 50), kerb + s * rng.uniform(0.3, walk - 0.2), 'person'))
        for _ in range(rng.integers(0, 3) * (rng.random() < 0.5)):
            objs.append((rng.uniform(5, 30), kerb + s * rng.uniform(0.5, walk), 'bicycle'))
    if lay.crosswalk is not None:
        for _ in range(rng.integers(0, 4)):
            objs.append((lay.crosswalk + rng.uniform(0.5, 3.5),
                         off + rng.uniform(-rh, rh), 'person'))
    objs.sort(key=lambda o: -o[0])
    return objs


def _shadows(lay: Layout, objs: list[tuple[float, float, str]], img: np.ndarray,
             label: np.ndarray) -> None:
    """Dark contact shadows on the ground under vehicles and pedestrians."""
    h, w = label.shape
    sh = np.zeros((h, w), np.float32)
    for z, x, kind in objs:
        base = kind.split('_')[0]
        if base not in ('car', 'truck', 'bus', 'train', 'person', 'cyclist'):
            continue
        hw, ln = {'car': (1.0, 4.4), 'truck': (1.3, 7), 'bus': (1.35, 12),
                  'train': (1.3, 20)}.get(base, (0.3, 0.4))
        pts = np.array([[x - hw, 0, z - 0.15], [x + hw, 0, z - 0.15], [x + hw, 0, z + ln],
                        [x - hw, 0, z + ln]])
        q = np.round(lay.cam.project(pts) * 16).astype(np.int32)
        cv2.fillPoly(sh, [q], 1.0, cv2.LINE_8, 4)
    sh = cv2.GaussianBlur(sh, (0, 0), 1.5)
    ground = np.isin(label, _GROUND)
    _mul3(img, 1 - 0.55 * sh * ground)


def _draw_objects(p: Painter, rng: np.random.Generator,
                  objs: list[tuple[float, float, str]]) -> None:
    for z, x, kind in objs:
        base, _, tag = kind.partition('_')
        if base in ('car', 'truck', 'bus', 'train'):
            cls = {'car': CAR, 'truck': TRUCK, 'bus': BUS, 'train': TRAIN}[base]
            _vehicle(p, rng, x, z, cls, facing=tag == 'front')
        elif base == 'cyclist':
            _cyclist(p, rng, x, z)
        elif base == 'person':
            _person(p, rng, x, z)
        elif base == 'bicycle':
            _parked_bicycle(p, rng, x, z)
        elif base in ('lamp', 'sign', 'light'):
            _pole(p, rng, x, z, base, 1.0 if tag == 'r' else -1.0)
        elif base == 'tree':
            _tree(p, rng, x, z)
        elif base == 'bush':
            _bush(p, rng, x, z)


def _texture(img: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> None:
    h, w = label.shape
    lut = np.zeros((3, 256), np.float32)
    for cls, amps in _TEXTURE.items():
        lut[:, cls] = amps
    fine = rng.standard_normal((h, w), dtype=np.float32)
    mid = cv2.resize(rng.standard_normal((max(h // 4, 2), max(w // 4, 2)), dtype=np.float32),
                     (w, h), interpolation=cv2.INTER_LINEAR)
    low = cv2.resize(rng.standard_normal((max(h // 24, 2), max(w // 24, 2)), dtype=np.float32),
                     (w, h), interpolation=cv2.INTER_CUBIC)
    mod = 1 + lut[0][label] * fine + lut[1][label] * mid + lut[2][label] * low
    _mul3(img, mod)


def _ego_vehicle(img: np.ndarray, label: np.ndarray, depth: np.ndarray,
                 rng: np.random.Generator) -> None:
    """Bonnet of the recording car at the bottom: ignore label, as in Cityscapes."""
    h, w = label.shape
    hh = rng.uniform(0.04, 0.08) * h
    xs = np.linspace(-1, 1, w, dtype=np.float32)
    edge = h - hh * (1 - 0.5 * xs ** 2)
    mask = np.arange(h, dtype=np.float32)[:, None] >= edge[None]
    img[mask] = _pick(rng, _CAR_COLORS, 8) * 0.6
    label[mask] = IGNORE
    depth[mask] = 1.0


@functools.lru_cache(maxsize=4)
def _vignette(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[-1:1:complex(0, h), -1:1:complex(0, w)].astype(np.float32)
    return 1 - 0.06 * (xx ** 2 + yy ** 2)


def render_scene(rng: np.random.Generator, size: tuple[int, int] = (512, 256)) -> Scene:
    """Render one random street scene of ``size`` = (width, height).

    Returns a :class:`Scene`: image (H, W, 3) uint8 BGR, label (H, W) uint8 Cityscapes train
    ids (255 on the ego-vehicle bonnet), depth (H, W) float32 metres (sky = ``SKY_DEPTH``).
    """
    w, h = size
    lay = sample_layout(rng, size)
    img = np.empty((h, w, 3), np.float32)
    label = np.full((h, w), SKY, np.uint8)
    depth = np.full((h, w), SKY_DEPTH, np.float32)
    _sky(lay, img, rng)
    _ground(lay, img, label, depth)
    _skyline(lay, img, label, depth)
    _facades(lay, img, label, depth, rng)
    objs = _place_objects(lay, rng)
    _shadows(lay, objs, img, label)
    _draw_objects(Painter(lay.cam, img, label, depth), rng, objs)
    if rng.random() < 0.4:
        _ego_vehicle(img, label, depth, rng)
    _texture(img, label, rng)
    gain = rng.uniform(0.8, 1.15)
    temp = rng.uniform(-0.08, 0.08)
    _mul3(img, _vignette(h, w) * np.float32(gain))
    img = cv2.multiply(img, (1 - temp, 1.0, 1 + temp, 0.0))
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    return Scene(np.clip(img + 0.5, 0, 255).astype(np.uint8), label, depth)


def colorize(label: np.ndarray) -> np.ndarray:
    """(H, W) uint8 train ids -> (H, W, 3) uint8 BGR Cityscapes colours (ignore = black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:19] = PALETTE[:, ::-1]
    return lut[label]
