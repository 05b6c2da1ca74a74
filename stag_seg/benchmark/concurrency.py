"""Several adaptation streams on one GPU: aggregate images per second of 1, 2, 4, 8 concurrent
TENT processes (what a sweep that packs runs on one GPU gets), and the op counts of a step."""
from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Sequence

import torch
from torch.profiler import ProfilerActivity, profile

from stag_seg.benchmark.fixtures import synthetic_batch
from stag_seg.benchmark.memory import quiet_stderr
from stag_seg.benchmark.step_timing import build_steps
from stag_seg.benchmark.variants import BASELINE, Variant

#: seconds a worker may take to build its model and capture its step
START_TIMEOUT_S = 300


def _tent(options: dict) -> Variant:
    return Variant(BASELINE, dict(type=BASELINE), options=dict(options))


def _stream_worker(index: int, counts: Sequence[int], config: str, size: tuple[int, int],
                   steps: int, warmup: int, options: dict, barrier, results) -> None:
    """One stream: builds TENT on ``config``, warms up (captures), then, for each group size
    ``n`` in ``counts``, runs ``steps`` steps if ``index < n``, between two barriers."""
    try:
        device = torch.device('cuda')
        step = build_steps(config, size, device, [_tent(options)], synthetic_batch(size),
                           calibrate=False)[BASELINE]
        for _ in range(warmup):
            step.step()
        torch.cuda.synchronize()
        results.put(('ready', index, None))
        for n in counts:
            barrier.wait()
            if index < n:
                start = time.perf_counter()
                for _ in range(steps):
                    step.step()
                torch.cuda.synchronize()
                results.put(('time', index, (n, time.perf_counter() - start)))
            barrier.wait()
        results.put(('peak', index, torch.cuda.max_memory_allocated() / 2**20))
    except BaseException as e:          # noqa: BLE001  (reported to the parent)
        results.put(('error', index, f'{type(e).__name__}: {e}'))
        barrier.abort()


def concurrent_streams(config: str, size: tuple[int, int], counts: Sequence[int] = (1, 2, 4, 8),
                       steps: int = 20, warmup: int = 3, options: dict | None = None) -> dict:
    """Aggregate images/s of ``n`` concurrent TENT streams on one GPU for each ``n``.

    ``max(counts)`` spawned processes each build the model once (random init, ``options`` as
    ``test_cfg``, e.g. the fast mode) and warm up; for each ``n`` the first ``n`` run
    ``steps`` steps at once (a barrier starts them together). Aggregate = n * steps / the
    slowest one's time. Returns ``{'counts': [...], 'images_per_s': [...], 'speedup':
    [... vs one stream], 'peak_mb_per_stream': ...}``.
    """
    counts = sorted(set(counts))
    workers = max(counts)
    ctx = multiprocessing.get_context('spawn')
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    processes = [ctx.Process(target=_stream_worker, name=f'stream-{i}',
                             args=(i, counts, config, tuple(size), steps, warmup,
                                   dict(options or {}), barrier, results))
                 for i in range(workers)]
    for p in processes:
        p.start()
    times: dict[int, list[float]] = {n: [] for n in counts}
    peaks = []
    try:
        ready = 0
        while ready < workers:
            kind, index, value = results.get(timeout=START_TIMEOUT_S)
            if kind == 'error':
                raise RuntimeError(f'stream {index}: {value}')
            ready += kind == 'ready'
        for n in counts:
            barrier.wait()
            barrier.wait()
            while len(times[n]) < n:
                kind, index, value = results.get(timeout=60)
                if kind == 'error':
                    raise RuntimeError(f'stream {index}: {value}')
                times[n].append(value[1])
        while len(peaks) < workers:
            kind, index, value = results.get(timeout=60)
            if kind == 'peak':
                peaks.append(value)
    except (queue.Empty, RuntimeError, multiprocessing.BrokenBarrierError) as e:
        for p in processes:
            p.kill()
        raise RuntimeError(f'concurrent streams: {e}') from None
    finally:
        for p in processes:
            p.join(timeout=60)
    rates = [n * steps / max(times[n]) for n in counts]
    return {'counts': counts, 'steps': steps, 'options': dict(options or {}),
            'images_per_s': rates, 'speedup': [r / rates[0] for r in rates],
            'peak_mb_per_stream': max(peaks) if peaks else None}


def count_step_ops(config: str, size: tuple[int, int], device: torch.device,
                   options: dict | None = None) -> dict:
    """Operators the host dispatches in one TENT step (after two warm-up steps): ``aten``
    ops and, on CUDA, kernel launches (``cudaLaunchKernel`` and graph launches), from the
    torch profiler. A captured step dispatches its ops once, at capture."""
    step = build_steps(config, size, device, [_tent(options or {})], synthetic_batch(size),
                       calibrate=False)[BASELINE]
    for _ in range(2):
        step.step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda'
                                           else [])
    with quiet_stderr(), profile(activities=activities) as prof:      # no kineto lines
        step.step()
        if device.type == 'cuda':
            torch.cuda.synchronize()
    events = prof.events()
    aten = sum(e.name.startswith('aten::') for e in events)
    launches = sum(e.name in ('cudaLaunchKernel', 'cudaLaunchKernelExC', 'cuLaunchKernel',
                              'cudaGraphLaunch') for e in events)
    step.close()
    return {'options': dict(options or {}), 'aten_ops': aten, 'launches': launches,
            'device': device.type, 'size': list(size)}
