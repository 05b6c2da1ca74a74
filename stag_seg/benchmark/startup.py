"""Start-up: the time to build the Runner of a stream config, with the config text formatted
by yapf (mmengine's default) and without (what ``load_tta_config`` asks for)."""
from __future__ import annotations

import copy
import gc
import os.path as osp
import tempfile

import torch
from mmengine.config import Config

from stag_seg.benchmark.step_timing import resolve_config, unique_visualizer
from stag_seg.benchmark.timers import CLOCKS, elapsed, stamp
from stag_seg.engine.config import TTASetup
from stag_seg.engine.launch import load_tta_config
from stag_seg.engine.runner import StreamRunner


def _build_seconds(cfg: Config, setup: TTASetup, name: str) -> dict[str, float]:
    cfg = copy.deepcopy(cfg)
    unique_visualizer(cfg, name)
    cfg.console_log_level = 'ERROR'
    device = torch.device('cpu')
    start = stamp(device)
    runner = StreamRunner.from_setup(cfg, setup)
    seconds = elapsed(start, stamp(device))
    del runner
    gc.collect()
    return seconds


def time_runner_build(config: str, reps: int = 2) -> dict:
    """Fastest of ``reps`` Runner builds of ``config`` (random init, WARNING log level) with
    the config formatted by yapf and without, alternated after one untimed build; on both
    clocks (the CPU clock is the one printed: building a Runner is CPU work, and it does not
    move with the machine's load).

    The Runner formats the config three times while it is built (the log's ``Config:``
    line, evaluated even when INFO is not shown; the work dir's copy; the visualizer's
    backend); the model build and the rest are the same in both.
    """
    with tempfile.TemporaryDirectory(prefix='stag_bench_start_') as tmp:
        run = load_tta_config(resolve_config(config), osp.join(tmp, 'work'),
                              {'test_cfg.random_init': True, 'log_level': 'WARNING'})
        plain, setup = run.cfg, run.setup
        formatted = Config(plain.to_dict(), filename=plain.filename, format_python_code=True)
        _build_seconds(plain, setup, 'warmup')
        times: dict[str, list[dict]] = {'yapf': [], 'plain': []}
        for i in range(reps):
            times['yapf'].append(_build_seconds(formatted, setup, f'yapf_{i}'))
            times['plain'].append(_build_seconds(plain, setup, f'plain_{i}'))
    out = {'config': config, 'reps': reps}
    for clock in CLOCKS:
        with_yapf = min(t[clock] for t in times['yapf'])
        without = min(t[clock] for t in times['plain'])
        out[clock] = {'with_yapf_s': with_yapf, 'without_yapf_s': without,
                      'saved_s': with_yapf - without}
    return out
