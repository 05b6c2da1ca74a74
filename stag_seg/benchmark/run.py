"""The whole benchmark (what tools/benchmark.py runs): step time and memory of every variant
per config, the STAG term alone, start-up, full-resolution post-processing + scoring, the
engine loop over a real-resolution stream, and the targets; printed and written as JSON."""
from __future__ import annotations

import contextlib
import json
import os
import os.path as osp
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from stag_seg.benchmark.fixtures import FULL_RESOLUTION, synthetic_batch
from stag_seg.benchmark.isolation import run_in_fresh_process
from stag_seg.benchmark.loop_timing import loop_with_bare_step
from stag_seg.benchmark.memory import MB, measure_memory
from stag_seg.benchmark.postprocess_timing import time_postprocess_and_scoring
from stag_seg.benchmark.report import (
    CLOCK_NOTES,
    format_kspace_line,
    format_loop,
    format_machine,
    format_postprocess,
    format_split_table,
    format_startup,
    format_table,
    format_target,
    format_term_line,
    machine_info,
    targets,
)
from stag_seg.benchmark.stag_term import classifier_shape, plugin_term_ms
from stag_seg.benchmark.startup import time_runner_build
from stag_seg.benchmark.step_timing import STEP_PHASES, build_steps, time_steps
from stag_seg.benchmark.timers import CLOCKS, ratio_clock
from stag_seg.benchmark.variants import (
    BASELINE,
    Variant,
    build_variants,
    hook_default_variant,
    stag_name,
)
from stag_seg.plugins.stag import STAG_DEFAULTS

DEFAULT_CONFIGS = ('configs/segformer/segformer_mit-b5_cs2acdc_tent.py',
                   'configs/deeplabv3plus/deeplabv3plus_r50-d8_cs2acdc_tent.py')
#: (H, W) input per device: the stream's 540x960 on GPU; on CPU the same 16:9 at 288x512
#: (540x960 is too slow for B5 on 2 cores)
DEFAULT_SIZE = {'cuda': (540, 960), 'cpu': (288, 512)}
DEFAULT_STEPS = {'cuda': 50, 'cpu': 8}
DEFAULT_WARMUP = {'cuda': 10, 'cpu': 1}
#: torch intra-op threads per device (None: torch's choice). On a small shared CPU, two
#: threads next to one busy process made OpenMP barriers wait on a descheduled thread: steps
#: ran ~10x slower and far noisier; one thread keeps the ratios stable.
DEFAULT_THREADS = {'cuda': None, 'cpu': 1}
DEFAULT_LOOP_IMAGES = {'cuda': 40, 'cpu': 10}
#: TENT with these speed options is timed on the first config (keys of SPEED_VARIANTS)
DEFAULT_SPEED = {'cuda': ('bf16', 'tf32', 'channels_last'), 'cpu': ('bf16',)}
#: the parts of a step in the split table
SPLIT_PARTS = (*STEP_PHASES.values(), 'loss + other')
#: precisions of the loop runs (fp32 first: the loop target's)
DEFAULT_LOOP_PRECISIONS = ('fp32', 'bf16')


def benchmark_config(config: str, size: tuple[int, int], device: torch.device,
                     variants: Sequence[Variant], num_steps: int, warmup: int,
                     split_rounds: int = 3) -> dict:
    """Times and memory of every variant on one config; ratios to TENT."""
    ratio = ratio_clock(device)
    clock = [time.perf_counter()]
    steps = build_steps(config, size, device, variants, synthetic_batch(size))
    base_model = steps[BASELINE].model
    num_params = sum(p.numel() for p in base_model.parameters())
    num_adapted = sum(p.numel() for p in steps[BASELINE].adapter.params)
    clock.append(time.perf_counter())
    # on CPU the timed rounds are split too (the timers' device syncs are no-ops there); on
    # CUDA the syncs would stall the step's queue, so extra rounds are split instead
    times = time_steps(steps, num_steps, warmup, device, split=device.type == 'cpu')
    if device.type != 'cpu':
        times['split'] = time_steps(steps, split_rounds, 0, device, split=True)['split']
    clock.append(time.perf_counter())
    memory = measure_memory(steps, device)
    shape = classifier_shape(steps[BASELINE])
    term_ms = {name: plugin_term_ms(step, device, ratio) for name, step in steps.items()}
    clock.append(time.perf_counter())
    for step in steps.values():
        step.close()
    base_ms = statistics.median(times[ratio][BASELINE]) * 1e3
    base_mb = memory[BASELINE]['peak_mb']
    rows = []
    for variant in variants:
        median_ms = statistics.median(times[ratio][variant.name]) * 1e3
        rows.append({'variant': variant.name, 'method': variant.method,
                     'plugins': variant.plugins, 'options': variant.options,
                     'median_ms': median_ms, 'time_ratio': median_ms / base_ms,
                     'times_ms': [t * 1e3 for t in times[ratio][variant.name]],
                     **{f'{c}_median_ms': statistics.median(times[c][variant.name]) * 1e3
                        for c in CLOCKS},
                     **{f'{c}_times_ms': [t * 1e3 for t in times[c][variant.name]]
                        for c in CLOCKS},
                     **memory[variant.name],
                     'split_ms': {part: statistics.median(p[part] for p in
                                                          times['split'][ratio][variant.name])
                                  * 1e3 for part in SPLIT_PARTS},
                     'split_times_ms': [{k: v * 1e3 for k, v in p.items()}
                                        for p in times['split'][ratio][variant.name]],
                     'stag_term_ms': term_ms[variant.name],
                     'memory_ratio': memory[variant.name]['peak_mb'] / base_mb})
    by_name = {r['variant']: r for r in rows}
    kspace, naive = by_name[stag_name('feature, kspace')], by_name[stag_name('feature, naive')]
    base_backward = by_name[BASELINE]['at_backward_mb']
    return {
        'config': config, 'size': list(size), 'steps': num_steps, 'warmup': warmup,
        'clock': ratio,
        'num_params': num_params, 'num_adapted_params': num_adapted, 'classifier': shape,
        'variants': rows,
        'phase_s': dict(zip(('build', 'timing', 'memory_and_term'), np.diff(clock).tolist(),
                            strict=True)),
        'kspace_vs_naive': {
            'kspace_peak_mb': kspace['peak_mb'], 'naive_peak_mb': naive['peak_mb'],
            'saved_mb': naive['peak_mb'] - kspace['peak_mb'],
            'kspace_at_backward_mb': kspace['at_backward_mb'],
            'naive_at_backward_mb': naive['at_backward_mb'],
            'saved_at_backward_mb': naive['at_backward_mb'] - kspace['at_backward_mb'],
            'kspace_extra_at_backward_mb': kspace['at_backward_mb'] - base_backward,
            'naive_extra_at_backward_mb': naive['at_backward_mb'] - base_backward,
            'pc_tensor_mb': shape['pixels'] * shape['channels'] * 4 / MB},
    }


def run_loops(config: str, size: tuple[int, int], num_images: int, device: torch.device,
              precisions: Sequence[str], stream_size: tuple[int, int],
              num_workers: int | None) -> list[dict]:
    """The loop once per precision, each in a fresh process (:mod:`~stag_seg.benchmark.
    isolation`), each image followed by a bare TENT step of the same precision (the ratio's
    denominator, measured in the same minutes); on CUDA, fp32 also runs without
    instrumentation (that run's time is the one compared with the bare step, free of the
    timers' synchronisations). Adds each run's ratio to its bare step and its mIoU
    difference to fp32."""
    runs = []
    for precision in precisions:
        amp = None if precision == 'fp32' else precision
        kwargs = dict(config=config, size=size, num_images=num_images, device=device, amp=amp,
                      stream_size=stream_size, num_workers=num_workers)
        passes = [False, True] if device.type == 'cuda' and amp is None else [True]
        for instrument in passes:
            runs.append(run_in_fresh_process(loop_with_bare_step, **kwargs,
                                             instrument=instrument,
                                             threads=torch.get_num_threads()))
    fp32 = next((r for r in runs if r['amp'] is None), None)
    clock = ratio_clock(device)
    for run in runs:
        run['clock'] = clock
        run['ratio'] = run['per_image_s'][clock] / run['bare_step_s'][clock]
        run['mIoU_minus_fp32'] = (run['mIoU'] - fp32['mIoU'] if run['amp'] and fp32
                                  and run['mIoU'] is not None and fp32['mIoU'] is not None
                                  else None)
    return runs


def run_benchmark(configs: Sequence[str] = DEFAULT_CONFIGS,
                  size: tuple[int, int] | None = None,
                  device: str | None = None,
                  num_steps: int | None = None,
                  warmup: int | None = None,
                  methods: Sequence[str] | None = None,
                  speed: Sequence[str] | None = None,
                  loop: bool = True,
                  loop_images: int | None = None,
                  loop_precisions: Sequence[str] = DEFAULT_LOOP_PRECISIONS,
                  stream_size: tuple[int, int] = FULL_RESOLUTION,
                  loop_workers: int | None = None,
                  startup_reps: int = 2,
                  postprocess_reps: int = 5,
                  out: str | None = 'work_dirs/benchmark.json',
                  threads: int | None = None,
                  print_fn: Callable[[str], None] | None = print) -> dict:
    """Runs everything, prints the tables and the targets and writes the JSON; returns the
    JSON's content.

    ``None`` options take the device's defaults (``DEFAULT_SIZE``, ``DEFAULT_STEPS``, ...).
    ``methods`` default to every registered TTA method; the ``speed`` variants, the start-up
    and the loop run on the first config only; the post-processing benchmark uses
    ``stream_size`` as the output size and always runs on one CPU thread. The loop and the
    post-processing run in fresh processes (:mod:`~stag_seg.benchmark.isolation`).
    """
    say = print_fn or (lambda _: None)
    dev = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    kind = dev.type
    if threads is None and DEFAULT_THREADS[kind] is not None:
        threads = DEFAULT_THREADS[kind]
        say(f'CPU: {threads} torch thread (stable ratios on a shared machine; --threads N)')
    if threads is not None:
        torch.set_num_threads(threads)
    if size is None:
        size = DEFAULT_SIZE[kind]
        if kind == 'cpu':
            say(f"CPU: input {size[0]}x{size[1]} (the stream's 16:9) instead of the stream's "
                '540x960 (--size H W to change)')
    size = tuple(size)
    num_steps = DEFAULT_STEPS[kind] if num_steps is None else num_steps
    warmup = DEFAULT_WARMUP[kind] if warmup is None else warmup
    if num_steps < 1 or warmup < 0:
        raise ValueError('--steps must be >= 1 and --warmup >= 0')
    loop_images = DEFAULT_LOOP_IMAGES[kind] if loop_images is None else loop_images
    speed = DEFAULT_SPEED[kind] if speed is None else tuple(speed)
    first_variants = build_variants(methods, speed)
    other_variants = build_variants(methods)
    info = machine_info(dev)
    say(format_machine(info))
    say(CLOCK_NOTES[ratio_clock(dev)])
    say(f"variants: {', '.join(v.name for v in first_variants)} (speed options on the first "
        f"config only); STAGHook with loss_weight={STAG_DEFAULTS['loss_weight']}, "
        f"tau={STAG_DEFAULTS['tau']}; the hook's default form is {hook_default_variant()!r}")
    started = time.perf_counter()
    results = []
    for i, config in enumerate(configs):
        result = benchmark_config(config, size, dev, first_variants if i == 0
                                  else other_variants, num_steps, warmup)
        results.append(result)
        say('')
        say(format_table(result))
        say(format_split_table(result, SPLIT_PARTS))
        say(format_term_line(result))
        say(format_kspace_line(result))
    startup = time_runner_build(configs[0], startup_reps) if startup_reps > 0 else None
    if startup is not None:
        say('')
        say(format_startup(startup))
    postprocess = run_in_fresh_process(time_postprocess_and_scoring, size, stream_size,
                                       results[0]['classifier']['num_classes'],
                                       reps=postprocess_reps)
    say(format_postprocess(postprocess))
    loops: list[dict] = []
    if loop:
        if kind == 'cpu' and torch.cuda.is_available():
            say('engine loop: skipped (the Runner puts the model on the GPU; use --device cuda)')
        else:
            loops = run_loops(configs[0], size, loop_images, dev, loop_precisions,
                              stream_size, loop_workers)
            say('')
            say(format_loop(loops))
    headline = next((r for r in loops if r['amp'] is None and
                     (kind != 'cuda' or not r['instrumented'])), None)
    checks = targets(results, headline, postprocess, dev)
    say('')
    for check in checks:
        say(format_target(check))
    with contextlib.suppress(OSError):
        info['load_average_end'] = list(os.getloadavg())
    report = {'machine': info, 'size': list(size), 'steps': num_steps, 'warmup': warmup,
              'configs': results, 'startup': startup, 'postprocess': postprocess,
              'loop': loops, 'targets': checks, 'wall_s': time.perf_counter() - started,
              'stag_defaults': dict(STAG_DEFAULTS),
              'hook_default_variant': hook_default_variant(),
              'options': {'configs': list(configs), 'methods': methods, 'speed': list(speed),
                          'loop': loop, 'loop_images': loop_images,
                          'loop_precisions': list(loop_precisions),
                          'stream_size': list(stream_size), 'loop_workers': loop_workers,
                          'threads': threads}}
    if out:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        tmp = f'{out}.tmp'
        with open(tmp, 'w') as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, out)
        say(f'wrote {out} ({report["wall_s"]:.0f} s)')
    return report
