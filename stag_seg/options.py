"""Checks of user options: each failure is one ValueError naming the owner, option and range."""
from __future__ import annotations

import math
from collections.abc import Sequence


def check_choice(owner: str, option: str, value, choices: Sequence) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f'{owner}: {option} must be one of {tuple(choices)}, got {value!r}')


def check_number(owner: str, option: str, value, low: float | None = None,
                 high: float | None = None, low_open: bool = False,
                 allow_none: bool = False) -> None:
    """``value`` must be a finite real number in [low, high] ((low, high] if ``low_open``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f'{owner}: {option} must be a finite number, got {value!r}')
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{owner}: {option} must be {'>' if low_open else '>='} {low}, "
                         f'got {value!r}')
    if high is not None and value > high:
        raise ValueError(f'{owner}: {option} must be <= {high}, got {value!r}')


def check_int(owner: str, option: str, value, low: int | None = None) -> None:
    """``value`` must be an int (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'{owner}: {option} must be an integer, got {value!r}')
    if low is not None and value < low:
        raise ValueError(f'{owner}: {option} must be >= {low}, got {value!r}')
