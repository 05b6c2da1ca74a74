"""Seed statistics for sweeps: mean and sample std, Student's t quantile, paired t-intervals."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; None below 2 values) of ``n`` values."""
    n: int
    mean: float | None
    std: float | None


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with a two-sided t-interval [low, high] (None below 2 values)."""
    n: int
    mean: float | None
    low: float | None
    high: float | None


def _t_abs_cdf(theta: float, df: int) -> float:
    """P(|T| <= sqrt(df) tan(theta)) for Student's t with integer ``df``.

    The finite series of Abramowitz & Stegun 26.7.3 (odd df) and 26.7.4 (even df).
    """
    c2 = math.cos(theta) ** 2
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        term = total = math.cos(theta)
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + math.sin(theta) * total)
    term = total = 1.0
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` (integer >= 1) degrees of
    freedom, e.g. ``t_quantile(0.975, 4) == 2.776...``; exact up to float rounding."""
    if not 0 < p < 1:
        raise ValueError(f'quantile level must be in (0, 1), got {p}')
    if int(df) != df or df < 1:
        raise ValueError(f'degrees of freedom must be an integer >= 1, got {df}')
    df = int(df)
    if p < 0.5:
        return -t_quantile(1 - p, df)
    target = 2 * p - 1                     # P(|T| <= t) for the upper quantile t
    lo, hi = 0.0, math.pi / 2              # A(theta) increases from 0 to 1 on [0, pi/2)
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_abs_cdf(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    return math.sqrt(df) * math.tan((lo + hi) / 2)


def mean_std(values: Sequence[float]) -> Stat:
    """Mean and sample standard deviation (ddof=1) of ``values``."""
    n = len(values)
    if n == 0:
        return Stat(0, None, None)
    mean = math.fsum(values) / n
    if n < 2:
        return Stat(n, mean, None)
    return Stat(n, mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)))


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of ``values`` with the two-sided ``level`` t-interval mean ± t * std / sqrt(n)."""
    stat = mean_std(values)
    if stat.std is None:
        return Interval(stat.n, stat.mean, None, None)
    half = t_quantile(0.5 + level / 2, stat.n - 1) * stat.std / math.sqrt(stat.n)
    return Interval(stat.n, stat.mean, stat.mean - half, stat.mean + half)
