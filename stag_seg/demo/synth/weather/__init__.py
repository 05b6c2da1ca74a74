"""Adverse-condition renderers, one module each, in ACDC's condition order."""
from __future__ import annotations

from typing import Callable

import numpy as np

from stag_seg.datasets.acdc import ACDC_CONDITIONS
from stag_seg.demo.synth.weather.fog import fog
from stag_seg.demo.synth.weather.night import night
from stag_seg.demo.synth.weather.rain import rain
from stag_seg.demo.synth.weather.snow import snow

# (image (H, W, 3) uint8 BGR, label (H, W) uint8, depth (H, W) float32, rng, severity) -> image
Condition = Callable[..., np.ndarray]
_RENDERERS: dict[str, Condition] = {f.__name__: f for f in (fog, night, rain, snow)}
if set(_RENDERERS) != set(ACDC_CONDITIONS):
    raise ImportError(f'weather renderers {sorted(_RENDERERS)} do not match ACDC_CONDITIONS '
                      f'{ACDC_CONDITIONS}')
CONDITIONS: dict[str, Condition] = {name: _RENDERERS[name] for name in ACDC_CONDITIONS}


def apply_condition(name: str, image: np.ndarray, label: np.ndarray, depth: np.ndarray,
                    rng: np.random.Generator, severity: float = 1.0) -> np.ndarray:
    """Apply condition ``name`` (one of :data:`CONDITIONS`) to a scene; returns uint8 BGR."""
    if name not in CONDITIONS:
        raise ValueError(f'unknown condition {name!r}; expected one of {sorted(CONDITIONS)}')
    return CONDITIONS[name](image, label, depth, rng, severity=severity)


__all__ = ['CONDITIONS', 'Condition', 'apply_condition', 'fog', 'night', 'rain', 'snow']
