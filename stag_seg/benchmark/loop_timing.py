"""The engine's loop over a real-resolution stream: time per image and where it goes (data
wait, the model's step, full-resolution post-processing, scoring)."""
from __future__ import annotations

import contextlib
import os.path as osp
import statistics
import tempfile
import time

import torch
from mmengine.hooks import Hook

from stag_seg.benchmark.batches import set_stream_resize
from stag_seg.benchmark.fixtures import FULL_RESOLUTION, synthetic_batch, write_acdc_stream
from stag_seg.benchmark.step_timing import (
    AdapterStep,
    build_steps,
    resolve_config,
    unique_visualizer,
)
from stag_seg.benchmark.timers import CLOCKS, PhaseTimers, elapsed, now, stamp
from stag_seg.benchmark.variants import BASELINE, Variant
from stag_seg.engine.launch import build_runner, load_tta_config
from stag_seg.reports import load_records
from stag_seg.step.timing import timed

#: the split of an iteration, in the order printed
SPLIT = ('data_wait', 'step', 'postprocess', 'scoring', 'other')


class IterationTimer(Hook):
    """Times the loop's iterations on both clocks: the moment each starts (the batch is
    loaded) and ends (scored, hooks done), with the phase totals at both moments.

    With a ``bare`` step, each iteration is followed by one bare step (its own model copy,
    the same method, input size and precision), timed apart: the loop and the step it is
    compared with are then measured in the same minutes, image by image, so that a shared
    machine's changing load (which moves even CPU time, through caches and the host) falls
    on both alike. The next iteration's wait for data counts from the bare step's end.
    """

    priority = 'LOWEST'

    def __init__(self, device: torch.device, phases: PhaseTimers,
                 bare: AdapterStep | None = None) -> None:
        self.device = device
        self.phases = phases
        self.bare = bare
        self.starts: list[tuple[dict, dict]] = []      # (stamp, phase totals)
        self.ends: list[tuple[dict, dict]] = []
        self.resumes: list[dict] = []                   # when the loop went on after an end
        self.bare_times: list[dict[str, float]] = []

    def before_test_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self.starts.append((stamp(self.device), self.phases.snapshot()))

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        end = stamp(self.device)
        self.ends.append((end, self.phases.snapshot()))
        if self.bare is not None:
            self.bare.step()
            resume = stamp(self.device)
            self.bare_times.append(elapsed(end, resume))
            end = resume
        self.resumes.append(end)


def iteration_split(timer: IterationTimer, clock: str) -> list[dict[str, float]]:
    """Seconds of each iteration after the first on ``clock``, split into :data:`SPLIT`:
    waiting for the batch since the loop went on after the previous iteration (always wall
    time: a wait costs no CPU), the step without its post-processing, the post-processing,
    scoring, and the rest (hooks, bookkeeping). The parts sum to the image's time."""
    out = []
    for i in range(1, len(timer.ends)):
        (start, at_start), (end, at_end) = timer.starts[i], timer.ends[i]
        spent = {k: at_end[clock][k] - at_start[clock].get(k, 0.0) for k in at_end[clock]}
        step, post = spent.get('step', 0.0), spent.get('postprocess', 0.0)
        scoring = spent.get('scoring', 0.0)
        out.append({'data_wait': start['wall'] - timer.resumes[i - 1]['wall'],
                    'step': step - post, 'postprocess': post, 'scoring': scoring,
                    'other': (end[clock] - start[clock]) - step - scoring})
    return out


def benchmark_loop(config: str, size: tuple[int, int] | None, num_images: int,
                   device: torch.device, amp: str | None = None,
                   stream_size: tuple[int, int] = FULL_RESOLUTION,
                   num_workers: int | None = None, instrument: bool = True,
                   bare: AdapterStep | None = None, fast: bool = False) -> dict:
    """Runs the engine (Runner + ContinualTTALoop, ``tent``, one domain, one round) over
    ``num_images`` generated PNGs at ``stream_size`` (ACDC's 1920x1080 by default) in an ACDC
    tree; the config's own pipeline resizes them (to ``size`` if given, else the shipped
    scale) and its loader (workers, persistent) loads them; predictions are scored at the
    label's full resolution; the reports are written at the stage's end. Progress bar and
    state checkpoint are off.

    Per image is the steady state, from the end of the first iteration (runner, workers and
    warm-up done) to the end of the last, over ``num_images - 1`` images, on both clocks
    (:mod:`~stag_seg.benchmark.timers`; the wait for a batch is wall time on both). With
    ``instrument``
    the step, the post-processing and scoring are timed through the engine's timing hook
    (:class:`~stag_seg.benchmark.timers.PhaseTimers` on :mod:`stag_seg.step.timing`'s
    phases, each call synchronised on CUDA);
    without it, only the iteration boundaries are. With ``bare``, a bare step follows each
    iteration (:class:`IterationTimer`); its median over the steady iterations is returned.
    ``fast`` runs the loop in the fast mode (``test_cfg.fast``).
    """
    if num_images < 2:
        raise ValueError('the loop benchmark needs at least 2 images')
    with tempfile.TemporaryDirectory(prefix='stag_bench_') as tmp:
        root = write_acdc_stream(osp.join(tmp, 'acdc'), num_images, stream_size)
        work_dir = osp.join(tmp, 'work')
        run = load_tta_config(resolve_config(config), work_dir, {
            'test_dataloader.dataset.data_root': root,
            'test_cfg.domains': [dict(name='fog', dataset=dict(condition='fog'))],
            'test_cfg.num_rounds': 1,
            'test_cfg.method': dict(type='tent'),
            'test_cfg.amp': amp,
            'test_cfg.fast': fast,
            'test_cfg.progress': False,
            'test_cfg.save_state': False,
            'test_cfg.random_init': True,
            'randomness': dict(seed=0),
            'log_level': 'WARNING',
            'custom_hooks': [],                   # plain tent, as the bare step
        })
        cfg = run.cfg
        unique_visualizer(cfg, f'loop_{osp.basename(tmp)}')
        if size is not None:
            set_stream_resize(cfg, size)
        loader = cfg.test_dataloader
        if num_workers is not None:
            loader.num_workers = num_workers
            loader.persistent_workers = num_workers > 0
        cfg.console_log_level = 'ERROR'
        start = time.perf_counter()
        runner = build_runner(run)
        phases = PhaseTimers(device)
        timer = IterationTimer(device, phases, bare)
        runner.register_hook(timer)
        with contextlib.ExitStack() as stack:
            if instrument:
                stack.enter_context(timed(phases))
            built = now(device)
            runner.test()
            end = now(device)
        records = load_records(work_dir)
        input_shape = list(runner.test_loop.dataloader.dataset[0]['inputs'].shape[-2:])
        del runner
    if len(timer.ends) != num_images:
        raise RuntimeError(f'the loop ran {len(timer.ends)} iterations, expected {num_images}')
    splits = {clock: iteration_split(timer, clock) for clock in CLOCKS}
    return {
        'config': config, 'images': num_images, 'stream_size': list(stream_size),
        'input_size': input_shape, 'amp': amp, 'fast': fast,
        'num_workers': loader.num_workers,
        'pin_memory': loader.get('pin_memory', device.type == 'cuda'),
        'instrumented': instrument,
        'runner_build_s': built - start, 'first_iter_s': timer.ends[0][0]['wall'] - built,
        'stage_end_s': end - timer.resumes[-1]['wall'],
        # per steady image: its wait for the batch + its iteration, on each clock
        'per_image_s': {clock: statistics.fmean(sum(s.values()) for s in split)
                        for clock, split in splits.items()},
        'split_s': ({clock: {k: statistics.fmean(s[k] for s in split) for k in SPLIT}
                     for clock, split in splits.items()} if instrument else None),
        'mIoU': records[0]['mIoU'] if records else None,
        'bare_step_s': ({clock: statistics.median(t[clock] for t in timer.bare_times[1:])
                         for clock in CLOCKS} if bare is not None else None),
    }


def loop_with_bare_step(config: str, size: tuple[int, int], num_images: int,
                        device: torch.device, amp: str | None = None,
                        stream_size: tuple[int, int] = FULL_RESOLUTION,
                        num_workers: int | None = None, instrument: bool = True,
                        fast: bool = False) -> dict:
    """:func:`benchmark_loop` with a bare TENT step of the same precision after each image,
    on its own copy of the config's model (random init, as the loop's, not calibrated; what
    :func:`~stag_seg.benchmark.isolation.run_in_fresh_process` runs in a fresh process)."""
    options = {**({'amp': amp} if amp else {}), **({'fast': True} if fast else {})}
    variant = Variant(BASELINE, dict(type=BASELINE), options=options)
    bare = build_steps(config, size, device, [variant], synthetic_batch(size),
                       calibrate=False)[BASELINE]
    try:
        return benchmark_loop(config, size, num_images, device, amp, stream_size, num_workers,
                              instrument, bare, fast)
    finally:
        bare.close()
