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
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from stag_seg.benchmark.concurrency import count_step_ops
from stag_seg.benchmark.fixtures import FULL_RESOLUTION
from stag_seg.benchmark.isolation import run_in_fresh_process
from stag_seg.benchmark.loop_timing import loop_with_bare_step
from stag_seg.benchmark.memory import MB, measure_memory
from stag_seg.benchmark.postprocess_timing import time_postprocess_and_scoring
from stag_seg.benchmark.report import (
    CLOCK_NOTES,
    format_kspace_line,
    format_loop,
    format_machine,
    format_ops,
    format_postprocess,
    format_ratios,
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
from stag_seg.benchmark.step_timing import (
    SOURCE_BATCHES,
    STEP_PHASES,
    build_steps,
    one_off_pending,
    time_steps,
)
from stag_seg.benchmark.timers import CLOCKS, ratio_clock
from stag_seg.benchmark.variants import (
    BASELINE,
    Variant,
    build_variants,
    hook_default_variant,
    stag_name,
    unconfigured_methods,
)
from stag_seg.plugins.stag import STAG_DEFAULTS

DEFAULT_CONFIGS = ('configs/segformer/segformer_mit-b5_cs2acdc_tent.py',
                   'configs/deeplabv3plus/deeplabv3plus_r50-d8_cs2acdc_tent.py')
#: (H, W) input per device: the stream's 540x960 on GPU; on CPU the same 16:9 at 216x384
#: (540x960 is too slow for B5 on 2 cores; 288x512 made the default run ~18 minutes)
DEFAULT_SIZE = {'cuda': (540, 960), 'cpu': (216, 384)}
DEFAULT_STEPS = {'cuda': 50, 'cpu': 8}
DEFAULT_WARMUP = {'cuda': 10, 'cpu': 1}
#: torch intra-op threads per device (None: torch's choice). On a small shared CPU, two
#: threads next to one busy process made OpenMP barriers wait on a descheduled thread: steps
#: ran ~10x slower and far noisier; one thread keeps the ratios stable.
DEFAULT_THREADS = {'cuda': None, 'cpu': 1}
DEFAULT_LOOP_IMAGES = {'cuda': 40, 'cpu': 10}
#: timed steps of the variants with test-time-augmented views (CoTTA: 14 views, about 10
#: TENT steps each) per device (None: --steps); on CPU 8 would take ~15 minutes on B5 alone
DEFAULT_VIEW_STEPS = {'cuda': None, 'cpu': 1}
#: warm-up steps of the variants with test-time-augmented views per device (None: --warmup).
#: On CPU none: their one timed step is their first (CoTTA's on B5 at 216x384, one thread:
#: 19.9 s, then 18.8 and 17.8 s), which saves ~20 s per variant
DEFAULT_VIEW_WARMUP = {'cuda': None, 'cpu': 0}
#: the methods timed + STAG (their ``-stag`` configs) per device (None: every one with such a
#: config); on CPU not CoTTA, whose one ~20 s step per variant cannot show a STAG overhead of
#: a few percent (steps vary by 5%)
DEFAULT_STAG_METHODS = {'cuda': None, 'cpu': ('eata', 'sar')}
#: the methods timed on the configs after the first, per device (None: as on the first);
#: on CPU TENT only (with STAG's forms: the targets), to keep a run within ~10 minutes
DEFAULT_LATER_METHODS = {'cuda': None, 'cpu': ('tent',)}
#: TENT with these speed options is timed on the first config (keys of SPEED_VARIANTS)
DEFAULT_SPEED = {'cuda': ('bf16', 'tf32', 'channels_last'), 'cpu': ('bf16',)}
#: the parts of a step in the split table
SPLIT_PARTS = (*STEP_PHASES, 'loss + other')
#: precisions of the loop runs per device (fp32 first: the loop target's). On CPU fp32 only:
#: a bf16 loop of a random-init model shows no accuracy difference worth ~40 s of the run
DEFAULT_LOOP_PRECISIONS = {'cuda': ('fp32', 'bf16'), 'cpu': ('fp32',)}
#: (H, W) input of the loop and its bare step per device, when --size is not given (None: the
#: step's size). On CPU 288x512, the size at which the loop target was set: the loop adds a
#: fixed ~110 ms of 1080p post-processing and scoring per image, which weighs ~2x more
#: against the 216x384 step (1.2 s) than against 288x512's (2.1 s; the stream's real 540x960
#: step takes ~10 s on CPU); a loop run at 288x512 takes ~20 s longer
DEFAULT_LOOP_SIZE = {'cuda': None, 'cpu': (288, 512)}


def benchmark_config(config: str, size: tuple[int, int], device: torch.device,
                     variants: Sequence[Variant], num_steps: int, warmup: int,
                     view_steps: int | None = None, split_rounds: int = 3,
                     view_warmup: int | None = None) -> dict:
    """Times and memory of every variant on one config; ratios to TENT and, for a method +
    STAG, to the method alone. Variants whose batch has test-time-augmented views (CoTTA)
    get ``view_steps`` timed steps after ``view_warmup`` warm-up steps (None: ``num_steps``,
    ``warmup``)."""
    ratio = ratio_clock(device)
    clock = [time.perf_counter()]
    steps = build_steps(config, size, device, variants)
    base_model = steps[BASELINE].model
    num_params = sum(p.numel() for p in base_model.parameters())
    num_adapted = sum(p.numel() for p in steps[BASELINE].adapter.params)
    counts = {name: (min(num_steps, view_steps) if step.views > 1 and view_steps is not None
                     else num_steps) for name, step in steps.items()}
    warmups = {name: (view_warmup if step.views > 1 and view_warmup is not None else warmup)
               for name, step in steps.items()}
    one_off = {name: pending for name, step in steps.items()
               if (pending := one_off_pending(step.adapter.method)) is not None}
    clock.append(time.perf_counter())
    # on CPU the timed rounds are split too (the timers' device syncs are no-ops there); on
    # CUDA the syncs would stall the step's queue, so extra rounds are split instead
    times = time_steps(steps, num_steps, warmup, device, split=device.type == 'cpu',
                       counts=counts, warmups=warmups)
    if device.type != 'cpu':
        times['split'] = time_steps(steps, split_rounds, 0, device, split=True,
                                    counts=counts)['split']
    clock.append(time.perf_counter())
    memory = measure_memory(steps, device)
    shape = classifier_shape(steps[BASELINE])
    term_ms = {name: plugin_term_ms(step, device, ratio) for name, step in steps.items()}
    clock.append(time.perf_counter())
    views = {name: step.views for name, step in steps.items()}
    updates = {name: step.updates for name, step in steps.items()}
    for step in steps.values():
        step.close()
    medians = {v.name: statistics.median(times[ratio][v.name]) * 1e3 for v in variants}
    rows = []
    for variant in variants:
        name = variant.name
        median_ms, peak_mb = medians[name], memory[name]['peak_mb']
        base = variant.base
        rows.append({'variant': name, 'method': variant.method,
                     'plugins': variant.plugins, 'options': variant.options,
                     'stream_config': variant.stream_config, 'base': base,
                     'views': views[name], 'steps': len(times[ratio][name]),
                     'warmup': warmups[name],
                     'views_from_original': variant.views_from_original and views[name] > 1,
                     'model_test_cfg': variant.model_test_cfg,
                     'updated_steps': sum(times['updated'][name]) if updates[name] else None,
                     'stats': times['stats'][name],
                     'median_ms': median_ms, 'time_ratio': median_ms / medians[BASELINE],
                     'times_ms': [t * 1e3 for t in times[ratio][name]],
                     **{f'{c}_median_ms': statistics.median(times[c][name]) * 1e3
                        for c in CLOCKS},
                     **{f'{c}_times_ms': [t * 1e3 for t in times[c][name]] for c in CLOCKS},
                     **memory[name],
                     'split_ms': {part: statistics.median(p[part] for p in
                                                          times['split'][ratio][name])
                                  * 1e3 for part in SPLIT_PARTS},
                     'split_times_ms': [{k: v * 1e3 for k, v in p.items()}
                                        for p in times['split'][ratio][name]],
                     'stag_term_ms': term_ms[name],
                     'memory_ratio': peak_mb / memory[BASELINE]['peak_mb'],
                     'time_vs_base': None if base is None else median_ms / medians[base],
                     'memory_vs_base': (None if base is None
                                        else peak_mb / memory[base]['peak_mb'])})
    by_name = {r['variant']: r for r in rows}
    kspace, naive = by_name[stag_name('feature, kspace')], by_name[stag_name('feature, naive')]
    base_backward = by_name[BASELINE]['at_backward_mb']
    return {
        'config': config, 'size': list(size), 'steps': num_steps, 'warmup': warmup,
        'view_steps': view_steps, 'view_warmup': view_warmup, 'clock': ratio,
        'num_params': num_params, 'num_adapted_params': num_adapted, 'classifier': shape,
        'calibration': steps.calibration,
        'one_off_in_warmup': one_off, 'source_batches': SOURCE_BATCHES,
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


def device_options(kind: str, **given) -> dict:
    """:func:`run_benchmark`'s counts and choices for a ``kind`` of device ('cpu', 'cuda'):
    each of ``given`` that is None takes the device's default (``DEFAULT_STEPS``,
    ``DEFAULT_WARMUP``, ``DEFAULT_VIEW_STEPS``, ``DEFAULT_VIEW_WARMUP``,
    ``DEFAULT_LOOP_IMAGES``, ``DEFAULT_LOOP_PRECISIONS``, ``DEFAULT_SPEED``,
    ``DEFAULT_LATER_METHODS`` (None there: as ``methods``), ``DEFAULT_STAG_METHODS``);
    ``['all']`` for ``later_methods`` or ``stag_methods`` is None (every one). Bad counts are
    a ValueError naming the flag."""
    defaults = {'num_steps': DEFAULT_STEPS, 'warmup': DEFAULT_WARMUP,
                'view_steps': DEFAULT_VIEW_STEPS, 'view_warmup': DEFAULT_VIEW_WARMUP,
                'loop_images': DEFAULT_LOOP_IMAGES, 'loop_precisions': DEFAULT_LOOP_PRECISIONS,
                'speed': DEFAULT_SPEED, 'stag_methods': DEFAULT_STAG_METHODS}
    out = {key: (table[kind] if given.get(key) is None else given[key])
           for key, table in defaults.items()}
    out['loop_precisions'], out['speed'] = tuple(out['loop_precisions']), tuple(out['speed'])
    if out['num_steps'] < 1 or out['warmup'] < 1 or (out['view_steps'] is not None
                                                     and out['view_steps'] < 1):
        raise ValueError('--steps and --view-steps must be >= 1, and --warmup >= 1 (the first '
                         "step of a variant does one-off work: EATA's Fisher information)")
    if out['view_warmup'] is not None and out['view_warmup'] < 0:
        raise ValueError(f"--view-warmup must be >= 0, got {out['view_warmup']}")
    later = given.get('later_methods')
    if later is None:
        later = given.get('methods') if DEFAULT_LATER_METHODS[kind] is None \
            else DEFAULT_LATER_METHODS[kind]
    out['later_methods'] = None if later is not None and list(later) == ['all'] else later
    if out['stag_methods'] is not None and list(out['stag_methods']) == ['all']:
        out['stag_methods'] = None
    return out


def loop_input_size(kind: str, size: tuple[int, int] | None,
                    loop_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """The loop's (H, W) input on a ``kind`` of device: ``loop_size`` if given, else the
    step's ``size`` if given, else ``DEFAULT_LOOP_SIZE``, else ``DEFAULT_SIZE``."""
    return tuple(loop_size or size or DEFAULT_LOOP_SIZE[kind] or DEFAULT_SIZE[kind])


def run_benchmark(configs: Sequence[str] = DEFAULT_CONFIGS,
                  size: tuple[int, int] | None = None,
                  device: str | None = None,
                  num_steps: int | None = None,
                  warmup: int | None = None,
                  methods: Sequence[str] | None = None,
                  speed: Sequence[str] | None = None,
                  loop: bool = True,
                  loop_images: int | None = None,
                  loop_precisions: Sequence[str] | None = None,
                  loop_size: tuple[int, int] | None = None,
                  stream_size: tuple[int, int] = FULL_RESOLUTION,
                  loop_workers: int | None = None,
                  startup_reps: int = 2,
                  postprocess_reps: int = 5,
                  out: str | None = 'work_dirs/benchmark.json',
                  threads: int | None = None,
                  method_configs: Mapping[str, str] | None = None,
                  later_methods: Sequence[str] | None = None,
                  view_steps: int | None = None,
                  view_warmup: int | None = None,
                  stag_methods: Sequence[str] | None = None,
                  print_fn: Callable[[str], None] | None = print) -> dict:
    """Runs everything, prints the tables and the targets and writes the JSON; returns the
    JSON's content.

    ``None`` options take the device's defaults (``DEFAULT_SIZE``, ``DEFAULT_STEPS``, ...).
    ``methods`` default to every registered TTA method, each with its stream config's options
    (``method_configs`` maps a name such as 'cotta' or 'eata-stag' to another config), and
    ``stag_methods`` of them + STAG (``DEFAULT_STAG_METHODS``; ``['all']``: every one with a
    ``-stag`` config); the configs after the first time ``later_methods``
    (``DEFAULT_LATER_METHODS``; ``['all']``: every registered one); the variants with
    test-time-augmented views get ``view_steps`` timed steps after ``view_warmup`` warm-up
    steps (``DEFAULT_VIEW_STEPS``, ``DEFAULT_VIEW_WARMUP``); the loop runs once per
    ``loop_precisions`` (``DEFAULT_LOOP_PRECISIONS``), at ``loop_size``
    (:func:`loop_input_size`). The ``speed`` variants, the start-up
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
    loop_size = loop_input_size(kind, size, loop_size)
    if size is None:
        size = DEFAULT_SIZE[kind]
        if kind == 'cpu':
            say(f"CPU: input {size[0]}x{size[1]} (the stream's 16:9) instead of the stream's "
                '540x960 (--size H W to change)')
    size = tuple(size)
    chosen = device_options(kind, num_steps=num_steps, warmup=warmup, view_steps=view_steps,
                            view_warmup=view_warmup, loop_images=loop_images,
                            loop_precisions=loop_precisions, speed=speed, methods=methods,
                            later_methods=later_methods, stag_methods=stag_methods)
    num_steps, warmup, view_steps, view_warmup = (
        chosen[k] for k in ('num_steps', 'warmup', 'view_steps', 'view_warmup'))
    loop_images, loop_precisions, speed = (
        chosen[k] for k in ('loop_images', 'loop_precisions', 'speed'))
    later_methods, stag_methods = chosen['later_methods'], chosen['stag_methods']
    variant_lists = [build_variants(config, methods if i == 0 else later_methods,
                                    speed if i == 0 else (), method_configs, stag_methods)
                     for i, config in enumerate(configs)]
    info = machine_info(dev)
    say(format_machine(info))
    say(CLOCK_NOTES[ratio_clock(dev)])
    for config, variants in zip(configs, variant_lists, strict=True):
        say(f"variants on {osp.basename(config)}: {', '.join(v.name for v in variants)}")
        skipped = unconfigured_methods(config, method_configs)
        if skipped:
            say(f"  not timed (no stream config; --method-configs NAME=CFG): {', '.join(skipped)}")
    say(f"STAGHook with loss_weight={STAG_DEFAULTS['loss_weight']}, tau={STAG_DEFAULTS['tau']}; "
        f"the hook's default form is {hook_default_variant()!r}; speed options on the first "
        'config only')
    started = time.perf_counter()
    results = []
    for i, config in enumerate(configs):
        result = benchmark_config(config, size, dev, variant_lists[i], num_steps, warmup,
                                  view_steps, view_warmup=view_warmup)
        results.append(result)
        say('')
        say(format_table(result))
        say(format_split_table(result, SPLIT_PARTS))
        say(format_ratios(result))
        say(format_term_line(result))
        say(format_kspace_line(result))
    ops = [count_step_ops(configs[0], size, dev, options) for options in ({}, {'fast': True})]
    say('')
    say(format_ops(ops))
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
            loops = run_loops(configs[0], loop_size, loop_images, dev, loop_precisions,
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
              'view_steps': view_steps, 'view_warmup': view_warmup,
              'configs': results, 'ops': ops, 'startup': startup, 'postprocess': postprocess,
              'loop': loops, 'targets': checks, 'wall_s': time.perf_counter() - started,
              'stag_defaults': dict(STAG_DEFAULTS),
              'hook_default_variant': hook_default_variant(),
              'options': {'configs': list(configs), 'methods': methods,
                          'later_methods': (None if later_methods is None
                                            else list(later_methods)),
                          'stag_methods': (None if stag_methods is None
                                           else list(stag_methods)),
                          'method_configs': dict(method_configs or {}), 'speed': list(speed),
                          'loop': loop, 'loop_images': loop_images,
                          'loop_precisions': list(loop_precisions),
                          'loop_size': list(loop_size),
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
