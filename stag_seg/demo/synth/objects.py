"""Where a scene's objects stand, their contact shadows, and drawing them far to near."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.classes import BUS, CAR, ROAD, SIDEWALK, TERRAIN, TRAIN, TRUCK
from stag_seg.demo.synth.imaging import mul3
from stag_seg.demo.synth.layout import Layout
from stag_seg.demo.synth.painter import Painter
from stag_seg.demo.synth.people import draw_person
from stag_seg.demo.synth.plants import draw_bush, draw_tree
from stag_seg.demo.synth.street_furniture import draw_pole
from stag_seg.demo.synth.vehicles import draw_cyclist, draw_parked_bicycle, draw_vehicle

GROUND = (ROAD, SIDEWALK, TERRAIN)


def place_objects(lay: Layout, rng: np.random.Generator) -> list[tuple[float, float, str]]:
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


def draw_shadows(lay: Layout, objs: list[tuple[float, float, str]], img: np.ndarray,
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
    ground = np.isin(label, GROUND)
    mul3(img, 1 - 0.55 * sh * ground, out=img)


def draw_objects(p: Painter, rng: np.random.Generator,
                 objs: list[tuple[float, float, str]]) -> None:
    """Draws every placed object (``(Z, X, kind)`` from :func:`place_objects`) in order."""
    for z, x, kind in objs:
        base, _, tag = kind.partition('_')
        if base in ('car', 'truck', 'bus', 'train'):
            cls = {'car': CAR, 'truck': TRUCK, 'bus': BUS, 'train': TRAIN}[base]
            draw_vehicle(p, rng, x, z, cls, facing=tag == 'front')
        elif base == 'cyclist':
            draw_cyclist(p, rng, x, z)
        elif base == 'person':
            draw_person(p, rng, x, z)
        elif base == 'bicycle':
            draw_parked_bicycle(p, rng, x, z)
        elif base in ('lamp', 'sign', 'light'):
            draw_pole(p, rng, x, z, base, 1.0 if tag == 'r' else -1.0)
        elif base == 'tree':
            draw_tree(p, rng, x, z)
        elif base == 'bush':
            draw_bush(p, rng, x, z)
