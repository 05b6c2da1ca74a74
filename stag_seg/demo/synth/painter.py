"""Painter: fills world-space polygons into an image, its label map and its depth map."""
from __future__ import annotations

import cv2
import numpy as np

from stag_seg.demo.synth.layout import Camera


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
        """Ellipse (``n``-gon) centred ``(cx, cy)`` from ``(x, 0, z)``, radii ``rx``, ``ry``."""
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        self.poly(np.stack([x + cx + rx * np.cos(t), cy + ry * np.sin(t), np.full(n, z)], 1),
                  color, cls, z)

    def ring(self, x: float, z: float, cx: float, cy: float, r: float, thick: float,
             color: np.ndarray, cls: int) -> None:
        """Circle outline of radius ``r`` and line width ``thick`` (metres), e.g. a wheel."""
        t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
        pts = np.stack([x + cx + r * np.cos(t), cy + r * np.sin(t), np.full(16, z)], 1)
        p = np.round(self.cam.project(pts) * 16).astype(np.int32)
        th = max(1, int(round(self.cam.f * thick / z)))
        cv2.polylines(self.img, [p], True, tuple(float(v) for v in color), th, cv2.LINE_8, 4)
        cv2.polylines(self.label, [p], True, int(cls), th, cv2.LINE_8, 4)
        cv2.polylines(self.depth, [p], True, float(z), th, cv2.LINE_8, 4)
