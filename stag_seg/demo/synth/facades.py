"""Facade planes along the street (buildings with windows, walls, fences, hedges)."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.classes import BUILDING, FENCE, VEGETATION
from stag_seg.demo.synth.imaging import frac
from stag_seg.demo.synth.layout import Facade, Layout


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
        fu = frac(u / win[:, 0])
        fv = frac(v / win[:, 1])
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
        slats = (frac(u / 0.25) < 0.32) | (np.abs(v - 0.2) < 0.06) | \
            (np.abs(v - fac.heights[s] + 0.1) < 0.06)
        col *= np.where(fence & ~slats, np.float32(0.55), np.float32(1))
    img[yv, xv] = col.T
    label[yv, xv] = kind
    depth[yv, xv] = z


def draw_facades(lay: Layout, img: np.ndarray, label: np.ndarray, depth: np.ndarray,
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
