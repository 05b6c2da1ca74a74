"""render_scene: one procedural Cityscapes-like street scene (image, labels, depth) per rng."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from stag_seg.demo.synth.backdrop import draw_ground, draw_sky, draw_skyline
from stag_seg.demo.synth.classes import IGNORE, SKY
from stag_seg.demo.synth.facades import draw_facades
from stag_seg.demo.synth.imaging import mul3
from stag_seg.demo.synth.layout import SKY_DEPTH, sample_layout
from stag_seg.demo.synth.materials import CAR_COLORS, pick
from stag_seg.demo.synth.objects import draw_objects, draw_shadows, place_objects
from stag_seg.demo.synth.painter import Painter
from stag_seg.demo.synth.texture import apply_texture


@dataclass
class Scene:
    """One rendered scene."""

    image: np.ndarray  # (H, W, 3) uint8 BGR
    label: np.ndarray  # (H, W) uint8 train ids, 255 = ignore (ego vehicle)
    depth: np.ndarray  # (H, W) float32 metres along the optical axis; sky = SKY_DEPTH


def _ego_vehicle(img: np.ndarray, label: np.ndarray, depth: np.ndarray,
                 rng: np.random.Generator) -> None:
    """Bonnet of the recording car at the bottom: ignore label, as in Cityscapes."""
    h, w = label.shape
    hh = rng.uniform(0.04, 0.08) * h
    xs = np.linspace(-1, 1, w, dtype=np.float32)
    edge = h - hh * (1 - 0.5 * xs ** 2)
    mask = np.arange(h, dtype=np.float32)[:, None] >= edge[None]
    img[mask] = pick(rng, CAR_COLORS, 8) * 0.6
    label[mask] = IGNORE
    depth[mask] = 1.0


@functools.lru_cache(maxsize=4)
def _vignette(h: int, w: int) -> np.ndarray:
    """(H, W) float32 gain falling off by 6% towards the corners."""
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
    draw_sky(lay, img, rng)
    draw_ground(lay, img, label, depth)
    draw_skyline(lay, img, label, depth)
    draw_facades(lay, img, label, depth, rng)
    objs = place_objects(lay, rng)
    draw_shadows(lay, objs, img, label)
    draw_objects(Painter(lay.cam, img, label, depth), rng, objs)
    if rng.random() < 0.4:
        _ego_vehicle(img, label, depth, rng)
    apply_texture(img, label, rng)
    gain = rng.uniform(0.8, 1.15)
    temp = rng.uniform(-0.08, 0.08)
    mul3(img, _vignette(h, w) * np.float32(gain), out=img)
    img = cv2.multiply(img, (1 - temp, 1.0, 1 + temp, 0.0))
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    return Scene(np.clip(img + 0.5, 0, 255).astype(np.uint8), label, depth)
