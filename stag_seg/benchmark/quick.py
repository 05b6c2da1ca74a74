"""``tools/benchmark.py --quick``: the GPU check that fits in a few minutes.

SegFormer-B5 only (random init, calibrated classifier): every method eager fp32 and in the fast
mode (``test_cfg.fast``: CUDA graph of the whole step, fused attention, bf16 autocast), TENT +
STAG in both and with the graph in fp32 (the bf16 ratio's denominator); the ops a step
dispatches; full-resolution post-processing + scoring; the engine loop at 1080p in the fast
mode against its bare step; 1, 2, 4, 8 concurrent fast TENT streams. Prints a table and the
targets with PASS / FAIL and writes everything as JSON.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from stag_seg.benchmark.concurrency import concurrent_streams, count_step_ops
from stag_seg.benchmark.fixtures import FULL_RESOLUTION
from stag_seg.benchmark.isolation import run_in_fresh_process
from stag_seg.benchmark.loop_timing import loop_with_bare_step
from stag_seg.benchmark.postprocess_timing import time_postprocess_and_scoring
from stag_seg.benchmark.report import FAIL, PASS, format_machine, machine_info
from stag_seg.benchmark.step_timing import build_steps, time_steps
from stag_seg.benchmark.variants import (
    BASELINE,
    Variant,
    build_variants,
    hook_default_variant,
)

QUICK_CONFIG = 'configs/segformer/segformer_mit-b5_cs2acdc_tent.py'
QUICK_SIZE = (540, 960)
FAST = dict(fast=True)
#: the fast mode without bf16: the graph and the fused attention in float32
GRAPH_FP32 = dict(cuda_graph=True, fused_attention=True)
#: the issue's targets (ms, ratios)
STAG_FAST_MS = 25.0
COTTA_FAST_MS = 150.0
BF16_RATIO = 0.5
STAG_OVERHEAD = 1.03
LOOP_RATIO = 1.05
STREAMS_SPEEDUP = 2.5
METHOD_RATIOS = {'eata': 1.1, 'sar': 2.1}


def fast_name(name: str, suffix: str = 'fast') -> str:
    return f'{name} [{suffix}]'


def quick_variants(config: str = QUICK_CONFIG) -> list[Variant]:
    """Every method (its stream config's options) eager and fast; TENT + STAG (the hook's
    default form) eager, fast, and graph-fp32; TENT graph-fp32."""
    methods = [v for v in build_variants(config) if v.base is None and not v.options]
    stag = next(v for v in build_variants(config, [BASELINE])
                if v.name == hook_default_variant())
    out = []
    for v in [*methods, stag]:
        out.append(v)
        out.append(replace(v, name=fast_name(v.name), options=dict(FAST),
                           base=v.base and fast_name(v.base)))
    for v in (methods[[m.name for m in methods].index(BASELINE)], stag):
        out.append(replace(v, name=fast_name(v.name, 'graph fp32'), options=dict(GRAPH_FP32),
                           base=None))
    return out


def _check(target: str, value: float | None, holds: bool | None) -> dict:
    status = 'not measured' if value is None else (PASS if holds else FAIL)
    return {'target': target, 'value': value, 'status': status}


def quick_targets(ms: dict[str, float], loop: dict | None, streams: dict | None) -> list[dict]:
    """The GPU targets of the fast mode, each with its value and PASS / FAIL."""
    stag = hook_default_variant()
    suffix = fast_name('')
    f = {name[:-len(suffix)]: value for name, value in ms.items() if name.endswith(suffix)}
    out = [_check(f'{stag} [fast] <= {STAG_FAST_MS:.0f} ms/step', f.get(stag),
                  f.get(stag) is not None and f[stag] <= STAG_FAST_MS)]
    fp32 = ms.get(fast_name(stag, 'graph fp32'))
    ratio = f[stag] / fp32 if f.get(stag) and fp32 else None
    out.append(_check(f'bf16 / fp32 step time in the fast mode ({stag}) <= {BF16_RATIO}',
                      ratio, ratio is not None and ratio <= BF16_RATIO))
    out.append(_check(f'cotta [fast] <= {COTTA_FAST_MS:.0f} ms/step', f.get('cotta'),
                      f.get('cotta') is not None and f['cotta'] <= COTTA_FAST_MS))
    overhead = f[stag] / f[BASELINE] if f.get(stag) and f.get(BASELINE) else None
    out.append(_check(f'STAG / tent in the fast mode <= {STAG_OVERHEAD}', overhead,
                      overhead is not None and overhead <= STAG_OVERHEAD))
    for method, limit in METHOD_RATIOS.items():
        r = f[method] / f[BASELINE] if f.get(method) and f.get(BASELINE) else None
        out.append(_check(f'{method} / tent in the fast mode <= {limit}', r,
                          r is not None and r <= limit))
    value = loop['ratio'] if loop else None
    out.append(_check(f'engine loop at 1080p / bare step, fast mode <= {LOOP_RATIO}', value,
                      value is not None and value <= LOOP_RATIO))
    four = None
    if streams and 4 in streams['counts']:
        four = streams['speedup'][streams['counts'].index(4)]
    out.append(_check(f'4 concurrent fast TENT streams / one stream (images/s) >= '
                      f'{STREAMS_SPEEDUP}', four, four is not None and four >= STREAMS_SPEEDUP))
    return out


def _format_streams(mode: str, packed: dict) -> str:
    return (f'concurrent {mode} TENT streams on one GPU (separate processes): ' + ', '.join(
        f'{n}: {r:.1f} img/s (x{s:.2f})' for n, r, s in
        zip(packed['counts'], packed['images_per_s'], packed['speedup'], strict=True))
        + f"; peak {packed['peak_mb_per_stream']:.0f} MB per stream")


def run_quick(config: str = QUICK_CONFIG, size: Sequence[int] = QUICK_SIZE,
              steps: int = 10, warmup: int = 3, view_steps: int = 3, loop_images: int = 24,
              streams: Sequence[int] = (1, 2, 4, 8), stream_steps: int = 20,
              stream_size: tuple[int, int] = FULL_RESOLUTION, loop_workers: int | None = None,
              out: str | None = 'work_dirs/benchmark_quick.json',
              print_fn: Callable[[str], None] | None = print) -> dict:
    """Runs the quick GPU benchmark (module docstring); returns what it writes to ``out``."""
    say = print_fn or (lambda _: None)
    if not torch.cuda.is_available():
        raise ValueError('--quick: no CUDA device (the quick benchmark checks the GPU targets; '
                         'run without --quick on CPU)')
    dev = torch.device('cuda')
    size = tuple(size)
    started = time.perf_counter()
    info = machine_info(dev)
    say(format_machine(info))
    variants = quick_variants(config)
    say(f"quick: {osp.basename(config)} at {size[0]}x{size[1]}, {steps} timed steps "
        f"({view_steps} for CoTTA's views) after {warmup} warm-up; variants: "
        f"{', '.join(v.name for v in variants)}")
    step_objs = build_steps(config, size, dev, variants)
    counts = {name: view_steps if s.views > 1 else steps for name, s in step_objs.items()}
    times = time_steps(step_objs, steps, warmup, dev, counts=counts)
    ms = {v.name: statistics.median(times['wall'][v.name]) * 1e3 for v in variants}
    rows = []
    for step_obj in step_objs.values():
        step_obj.close()
    del step_objs
    torch.cuda.empty_cache()
    say(f"\n{'variant':<46} {'ms/step':>9} {'img/s':>7} {'x tent':>7} {'fast x eager':>12}")
    for v in variants:
        eager = v.name[:-len(' [fast]')] if v.name.endswith(' [fast]') else None
        speedup = ms[eager] / ms[v.name] if eager in ms else None
        rows.append({'variant': v.name, 'options': v.options, 'median_ms': ms[v.name],
                     'times_ms': [t * 1e3 for t in times['wall'][v.name]],
                     'updated_steps': sum(times['updated'][v.name]),
                     'vs_tent': ms[v.name] / ms[BASELINE], 'fast_speedup': speedup})
        say(f"{v.name:<46} {ms[v.name]:9.1f} {1e3 / ms[v.name]:7.1f} "
            f"{ms[v.name] / ms[BASELINE]:7.2f} "
            + (f'{speedup:12.2f}' if speedup else f"{'':>12}"))
    ops = [run_in_fresh_process(count_step_ops, config, size, dev, options)
           for options in ({}, FAST)]
    say('\nops per TENT step (torch profiler, B5 on CUDA): '
        + '; '.join(f"{'fast' if o['options'] else 'eager'}: {o['aten_ops']} aten ops, "
                    f"{o['launches']} launches" for o in ops))
    post = run_in_fresh_process(time_postprocess_and_scoring, size, stream_size, 19, reps=5)
    say(f"post-processing + scoring of one {stream_size[0]}x{stream_size[1]} image on 1 CPU "
        f"thread: {post['total_ms']:.1f} ms")
    loop = None
    if loop_images:
        loop = run_in_fresh_process(loop_with_bare_step, config=config, size=size,
                                    num_images=loop_images, device=dev,
                                    stream_size=stream_size, num_workers=loop_workers,
                                    instrument=False, fast=True)
        loop['ratio'] = loop['per_image_s']['wall'] / loop['bare_step_s']['wall']
        say(f"engine loop, fast mode, {loop_images} images at {stream_size[0]}x"
            f"{stream_size[1]}: {loop['per_image_s']['wall'] * 1e3:.1f} ms/image, bare step "
            f"{loop['bare_step_s']['wall'] * 1e3:.1f} ms: ratio {loop['ratio']:.3f}")
    packed = packed_eager = None
    if streams:
        packed = concurrent_streams(config, size, streams, stream_steps, options=FAST)
        say(_format_streams('fast', packed))
        # eager streams are launch-bound: where packing can pay; 1 and 4 keep --quick short
        packed_eager = concurrent_streams(config, size, sorted({min(streams), 4} & set(streams))
                                          or [min(streams)], stream_steps, options={})
        say(_format_streams('eager fp32', packed_eager))
    checks = quick_targets(ms, loop, packed)
    say('')
    for check in checks:
        value = '' if check['value'] is None else f": {check['value']:.3f}"
        say(f"[{check['status']}] {check['target']}{value}")
    report = {'machine': info, 'config': config, 'size': list(size), 'steps': steps,
              'warmup': warmup, 'view_steps': view_steps, 'variants': rows, 'ops': ops,
              'postprocess': post, 'loop': loop, 'streams': packed,
              'streams_eager': packed_eager, 'targets': checks,
              'wall_s': time.perf_counter() - started}
    if out:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with open(f'{out}.tmp', 'w') as f:
            json.dump(report, f, indent=2)
        os.replace(f'{out}.tmp', out)
        say(f"wrote {out} ({report['wall_s']:.0f} s)")
    return report
