"""Runs a benchmark function in a fresh Python process, as a user's run starts.

Per-image work at full resolution allocates large tensors (the (19, 1080, 1920) upsampled
logits are 158 MB) whose cost depends on the allocator's state: in a fresh process each one
is new pages that the kernel faults in and zeroes (about 70 ms per 1080p image on one CPU
thread), while after the step benchmarks the heap may hold such blocks already (measured:
135 instead of 210 ms for the same post-processing). The loop and the post-processing are
therefore timed in their own spawned process.
"""
from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable

import torch


def _child(conn, fn: Callable, args: tuple, kwargs: dict, threads: int | None) -> None:
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        conn.send(('ok', fn(*args, **kwargs)))
    except BaseException as e:          # noqa: BLE001  (reported to the parent, with its trace)
        conn.send(('error', ''.join(traceback.format_exception(e))))
    finally:
        conn.close()


def run_in_fresh_process(fn: Callable, *args, threads: int | None = None, **kwargs):
    """``fn(*args, **kwargs)`` in a spawned process with ``threads`` torch threads; returns
    its (picklable) result. An exception there is a RuntimeError here with its traceback.

    ``fn`` must be importable by name (a module-level function); the child imports its
    module, and so stag_seg (compat patches and registration) first.
    """
    ctx = multiprocessing.get_context('spawn')
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(send, fn, args, kwargs, threads),
                          name=f'benchmark:{fn.__name__}')
    process.start()
    send.close()
    try:
        status, value = receive.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f'the benchmark process of {fn.__name__} ended without a result '
                           f'(exit code {process.exitcode})') from None
    finally:
        receive.close()
    process.join()
    if status == 'error':
        raise RuntimeError(f'{fn.__name__} failed in its benchmark process:\n{value}')
    return value
