"""Memory of one step: what a variant holds between steps, the step's peak, and what it holds
when its backward starts."""
from __future__ import annotations

import contextlib
import gc
import os
import sys
from collections.abc import Callable, Iterator

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from stag_seg.benchmark.step_timing import AdapterStep
from stag_seg.benchmark.timers import sync
from stag_seg.step.timing import timed

MB = 2**20
MARK = 'stag_seg.benchmark::backward_start'


class BackwardMark:
    """Marks the moment the step's first backward starts (every loss term built, the forward
    graph complete): a timer for the engine's timing hook (:meth:`on`) that fires at the
    first 'backward' phase."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.allocated: int | None = None       # CUDA: bytes allocated at the mark
        self.fired = False

    def fire(self) -> None:
        if self.fired:
            return
        self.fired = True
        if self.device.type == 'cuda':
            sync(self.device)
            self.allocated = torch.cuda.memory_allocated(self.device)
        else:
            with record_function(MARK):
                pass

    def __call__(self, name: str) -> contextlib.AbstractContextManager:
        if name == 'backward':
            self.fire()
        return contextlib.nullcontext()

    def on(self) -> contextlib.AbstractContextManager:
        """Installs the mark for the block."""
        return timed(self)


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silences C++-level stderr (kineto's start/stop lines) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, 'w') as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def step_peak_bytes(fn: Callable[[], object], device: torch.device,
                    mark: BackwardMark | None = None) -> tuple[int, int | None]:
    """Peak bytes torch allocates during ``fn()`` beyond what was allocated before it, and
    the bytes it holds when ``mark`` fires (None without a mark or if it did not fire).

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``. CPU has no such
    counter, so every allocation and free of torch's CPU allocator is recorded with the
    profiler (``profile_memory=True``) and the peak of their running sum is taken. This counts
    exactly the tensors a step creates (activations saved for backward, gradients, the STAG
    term's per-pixel tensors) and nothing else: unlike the process's peak RSS it is not
    blurred by malloc's caching and page granularity, it can be taken per variant in one
    process, and it is deterministic, so ratios of a few percent are meaningful.
    """
    if device.type == 'cuda':
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        at_mark = None if mark is None or mark.allocated is None else mark.allocated - base
        return torch.cuda.max_memory_allocated(device) - base, at_mark
    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = list(prof.profiler.kineto_results.events())
    memory = sorted((e.start_ns(), e.nbytes()) for e in events
                    if e.name() == '[memory]' and e.device_type() == DeviceType.CPU)
    marks = [e.start_ns() for e in events if mark is not None and e.name() == MARK]
    mark_ns = marks[0] if marks else None
    running = peak = 0
    at_mark = None
    for ns, nbytes in memory:
        if mark_ns is not None and at_mark is None and ns > mark_ns:
            at_mark = running
        running += nbytes
        peak = max(peak, running)
    if mark_ns is not None and at_mark is None:
        at_mark = running
    return peak, at_mark


def _tensors(obj) -> Iterator[torch.Tensor]:
    """Every tensor in ``obj``: a tensor, a module's parameters and buffers, or the tensors
    in a dict's values or a list's or tuple's items (recursively)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, torch.nn.Module):
        yield from obj.parameters()
        yield from obj.buffers()
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def persistent_bytes(step: AdapterStep) -> int:
    """Bytes a variant holds between steps: the model's parameters and buffers, the optimizer
    state, and the method's and plug-ins' own state, each storage once. The method's is its
    ``state_dict`` and every tensor or module among its attributes, so what it keeps outside
    its resume state counts too (CoTTA's frozen anchor model, SAR's source parameters and
    optimizer state for recovery), and the kept resize output of the scored prediction."""
    adapter = step.adapter
    tensors = [*adapter.model.parameters(), *adapter.model.buffers()]
    if adapter.optim_wrapper is not None:
        tensors += list(_tensors(list(adapter.optim_wrapper.optimizer.state.values())))
    tensors += list(_tensors(adapter.method.state_dict()))
    tensors += list(_tensors(vars(adapter.method)))
    tensors += list(_tensors([p.state_dict() for p in adapter.plugins]))
    tensors += list(_tensors(adapter.resize_buffer.out))
    storages = {(t.device, t.untyped_storage().data_ptr()): t.untyped_storage().nbytes()
                for t in tensors}
    return sum(storages.values())


def measure_memory(steps: dict[str, AdapterStep], device: torch.device) -> dict[str, dict]:
    """Per variant, in MB: persistent + the step's peak (``peak_mb``), and what the step holds
    when its backward starts (``at_backward_mb``; None for variants without a backward)."""
    out = {}
    for name, step in steps.items():
        gc.collect()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
        mark = BackwardMark(device)
        with mark.on():
            transient, at_backward = step_peak_bytes(step.step, device, mark)
        persistent = persistent_bytes(step)
        out[name] = {'persistent_mb': persistent / MB, 'step_mb': transient / MB,
                     'peak_mb': (persistent + transient) / MB,
                     'at_backward_mb': (None if at_backward is None
                                        else (persistent + at_backward) / MB)}
    return out
