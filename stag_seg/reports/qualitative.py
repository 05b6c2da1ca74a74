"""A qualitative figure: input | ground truth | each method's prediction, in the dataset palette."""
from __future__ import annotations

import os
import os.path as osp
from collections.abc import Sequence

import cv2
import numpy as np

HEADER = 22        # pixels of title bar above each column


def colorize(label: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) uint8 train ids -> (H, W, 3) uint8 BGR image; ids outside the palette (255) are
    black. ``palette``: RGB per id, e.g. a dataset's ``metainfo['palette']``. The figures and
    the demo data's colour labels both use it."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:len(palette)] = np.asarray(palette, np.uint8)[:, ::-1]     # RGB palette -> BGR
    return lut[label]


def _panel(image: np.ndarray, size: tuple[int, int], title: str) -> np.ndarray:
    w, h = size
    panel = np.full((h + HEADER, w, 3), 255, np.uint8)
    panel[HEADER:] = cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST)
    cv2.putText(panel, title, (4, HEADER - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    return panel


def qualitative_figure(rows: Sequence[dict], palette: Sequence[Sequence[int]], path: str,
                       panel_size: tuple[int, int] = (256, 128)) -> None:
    """Writes a PNG grid, one row per example.

    Args:
        rows: ``dict(title=str, image=path, label=path, preds={method: path})``; every row
            has the same methods in the same order.
        palette: class colours (RGB), e.g. Cityscapes' 19.
        panel_size: (w, h) of each panel.
    """
    grid = []
    for row in rows:
        image = cv2.imread(row['image'], cv2.IMREAD_COLOR)
        label = cv2.imread(row['label'], cv2.IMREAD_UNCHANGED)
        if image is None or label is None:
            raise FileNotFoundError(f"cannot read {row['image']} or {row['label']}")
        panels = [_panel(image, panel_size, row['title']),
                  _panel(colorize(label, palette), panel_size, 'ground truth')]
        for method, pred_path in row['preds'].items():
            pred = cv2.imread(pred_path, cv2.IMREAD_UNCHANGED)
            if pred is None:
                raise FileNotFoundError(f'cannot read prediction {pred_path}')
            panels.append(_panel(colorize(pred, palette), panel_size, method))
        grid.append(np.concatenate(panels, axis=1))
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    if not cv2.imwrite(path, np.concatenate(grid, axis=0)):
        raise OSError(f'could not write {path}')
