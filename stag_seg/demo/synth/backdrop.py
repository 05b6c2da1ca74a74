"""The backdrop of a scene: sky, ground (road, sidewalk, terrain, markings), far skyline."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.classes import BUILDING, ROAD, SIDEWALK, TERRAIN
from stag_seg.demo.synth.imaging import frac, lut3, mul3
from stag_seg.demo.synth.layout import SKY_DEPTH, Layout


def draw_sky(lay: Layout, img: np.ndarray, rng: np.random.Generator) -> None:
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
    img[:hs] = mul3(sky, 1 - clouds) + cv2.merge([235 * clouds] * 3)
    img[hs:] = lay.sky_bottom



def _coverage(dist: np.ndarray, half_width: float, px_per_m: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a painted line of ``half_width`` metres at distance ``dist``."""
    return np.clip((half_width - np.abs(dist)) * px_per_m + 0.5, 0, 1)


def draw_ground(lay: Layout, img: np.ndarray, label: np.ndarray, depth: np.ndarray) -> None:
    """Road, sidewalks and grass below the horizon, with paving, lane lines and crossings."""
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
    joints = (np.abs(frac(d / 0.6) - 0.5) > 0.45) | (np.abs(frac(z / 0.6) - 0.5) > 0.43)
    shade = 1 - 0.25 * joints * fade
    shade[(a >= lay.road_half) & (a < lay.road_half + 0.25)] = 1.15
    shade[lab != SIDEWALK] = 1.0
    col = mul3(lut3(lab, lut), shade)
    # lane lines (folded distance to the nearest one), edge lines, maybe a zebra crossing
    lane_w = 2 * lay.road_half / lay.n_lanes
    r = frac((d + lay.road_half) / lane_w) * lane_w
    solid = lay.n_lanes == 2
    dash = 1.0 if solid else (frac(z / 9.0) < 1 / 3)
    paint = _coverage(np.minimum(r, lane_w - r), 0.08, px_per_m) * dash
    paint *= a < lay.road_half - 0.6
    paint = np.maximum(paint, _coverage(a - (lay.road_half - 0.3), 0.07, px_per_m))
    if lay.crosswalk is not None:
        zc = lay.crosswalk
        paint = np.maximum(paint, (frac(d) < 0.5) & (z > zc) & (z < zc + 4))
    paint *= lab == ROAD
    col = mul3(col, 1 - paint) + cv2.merge([225 * paint] * 3)
    img[y0:] = col
    label[y0:] = lab
    depth[y0:] = np.minimum(z, SKY_DEPTH * 0.9)


def draw_skyline(lay: Layout, img: np.ndarray, label: np.ndarray, depth: np.ndarray) -> None:
    """A far row of buildings at the end of the street (if the layout has one)."""
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
