"""Wall-clock timers for the benchmarks: device synchronisation, and phase timers that wrap the
engine's methods from the outside (only while benchmarking; the engine has no timing code)."""
from __future__ import annotations

import contextlib
import functools
import inspect
import time
from collections.abc import Iterator

import torch


def sync(device: torch.device) -> None:
    """Waits for the device's queued work (CUDA); nothing on CPU."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """``time.perf_counter()`` after the device's queued work is done."""
    sync(device)
    return time.perf_counter()


class PhaseTimers:
    """Cumulative seconds spent in named phases, each a method of an engine class.

    :meth:`wrap` replaces a class attribute (a method or a staticmethod) by a wrapper that
    times each call, synchronising the device before and after it so that its kernels are
    charged to it; the original is put back when the block ends. Nested phases (the
    post-processing inside the step) count in both. ``totals`` only grows: take differences
    between two moments (e.g. two loop iterations).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = {}

    @contextlib.contextmanager
    def wrap(self, owner: type, name: str, phase: str) -> Iterator[None]:
        original = inspect.getattr_static(owner, name)
        is_static = isinstance(original, staticmethod)
        func = original.__func__ if is_static else original
        self.totals.setdefault(phase, 0.0)

        @functools.wraps(func)
        def timed(*args, **kwargs):
            start = now(self.device)
            try:
                return func(*args, **kwargs)
            finally:
                self.totals[phase] += now(self.device) - start

        setattr(owner, name, staticmethod(timed) if is_static else timed)
        try:
            yield
        finally:
            setattr(owner, name, original)

    def snapshot(self) -> dict[str, float]:
        return dict(self.totals)
