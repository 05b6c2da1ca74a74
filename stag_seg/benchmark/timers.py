"""The benchmark's clocks, and phase timers for the engine's timing hook
(:mod:`stag_seg.step.timing`: the engine marks its phases, a timer installed for a block
measures them).

Every timing is read on two clocks: ``wall`` (``time.perf_counter`` after the device's queued
work is done) and ``cpu`` (``time.process_time``: the CPU time of this process's threads).
On CPU with one torch thread, the CPU clock is the work a step did: it does not advance while
the process waits for a core, so it does not move with the load of a shared machine (a B5
step measured 2.55 s of CPU time both alone and next to two busy processes, while its wall
time went from 2.6 to 9.1 s). :func:`ratio_clock` says which clock the ratios use.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

from stag_seg.step.timing import PHASES

CLOCKS = ('wall', 'cpu')


def sync(device: torch.device) -> None:
    """Waits for the device's queued work (CUDA); nothing on CPU."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """``time.perf_counter()`` after the device's queued work is done."""
    sync(device)
    return time.perf_counter()


def stamp(device: torch.device) -> dict[str, float]:
    """Both clocks now (after the device's queued work is done)."""
    sync(device)
    return {'wall': time.perf_counter(), 'cpu': time.process_time()}


def elapsed(start: dict[str, float], end: dict[str, float]) -> dict[str, float]:
    return {clock: end[clock] - start[clock] for clock in CLOCKS}


def ratio_clock(device: torch.device) -> str:
    """'cpu' on CPU with one torch thread (the process's CPU time is then the step's work;
    with more threads it would count spinning OpenMP threads), else 'wall'."""
    return 'cpu' if device.type == 'cpu' and torch.get_num_threads() == 1 else 'wall'


class PhaseTimers:
    """Cumulative seconds on both clocks spent in the engine's named phases.

    An instance is a timer for :func:`stag_seg.step.timing.timed`: ``timers(phase)`` times
    one call of a phase, synchronising the device before and after it so that its kernels
    are charged to it. Nested phases (the post-processing inside the step) count in both; a
    phase nested in itself (``infer`` inside ``forward``, both 'forward') counts once, in the
    outer. ``totals`` only grows: take differences
    between two moments (e.g. two loop iterations).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, dict[str, float]] = {clock: dict.fromkeys(PHASES, 0.0)
                                                     for clock in CLOCKS}
        self.active: dict[str, int] = {}          # phase -> calls in progress

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        for clock in CLOCKS:
            self.totals[clock].setdefault(phase, 0.0)
        if self.active.get(phase):
            yield
            return
        self.active[phase] = 1
        start = stamp(self.device)
        try:
            yield
        finally:
            for clock, seconds in elapsed(start, stamp(self.device)).items():
                self.totals[clock][phase] += seconds
            self.active[phase] = 0

    def snapshot(self) -> dict[str, dict[str, float]]:
        return {clock: dict(totals) for clock, totals in self.totals.items()}
