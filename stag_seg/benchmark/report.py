"""The benchmark's printout and targets: the machine, the per-config table, the loop's split,
and each target with its measured ratio and PASS / FAIL / not measured."""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import platform
from collections.abc import Sequence

import torch

from stag_seg.benchmark.loop_timing import SPLIT
from stag_seg.benchmark.variants import (
    BASELINE,
    STAG_TARGETED,
    hook_default_variant,
    speed_name,
    stag_name,
)

#: targets (ratios measured in one run)
TIME_TARGET, MEMORY_TARGET = 1.03, 1.02
LOOP_TARGET = {'cpu': 1.10, 'cuda': 1.05}
POSTPROCESS_TARGET_MS = 200.0
BF16_TARGET = 0.5
PASS, FAIL, NO_GPU = 'PASS', 'FAIL', 'not measured (no GPU)'
CLOCK_NOTES = {
    'cpu': 'times: CPU time of this process (one torch thread: the work done, unmoved by '
           "other processes' load), wall time beside it; waits for data are wall time",
    'wall': 'times: wall clock (synchronised with the device)',
}
SPLIT_NAMES = {'data_wait': 'data wait', 'step': 'step', 'postprocess': 'post-processing',
               'scoring': 'scoring', 'other': 'other'}


def machine_info(device: torch.device) -> dict:
    """CPU model, cores, torch version and the device, for the record."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    info = {'cpu': cpu, 'cores': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
            'torch': torch.__version__, 'python': platform.python_version(),
            'platform': platform.platform(), 'device': str(device),
            'device_name': (torch.cuda.get_device_name(device) if device.type == 'cuda'
                            else cpu)}
    with contextlib.suppress(OSError):
        info['load_average'] = list(os.getloadavg())
    return info


def format_machine(info: dict) -> str:
    load = ' '.join(f'{x:.2f}' for x in info.get('load_average', []))
    return (f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
            f"({info['torch_threads']} threads), device {info['device_name']}, load average "
            f'{load}')


def _names(rows: Sequence[dict]) -> str:
    return ', '.join(r['variant'] for r in rows)


def format_notes(result: dict) -> list[str]:
    """The table's notes: the classifier's calibration, the variants with test-time-augmented
    views and their timed steps, and the one-off work done in the warm-up."""
    notes = []
    cal = result.get('calibration')
    if cal is not None:
        notes.append(f"  classifier scaled x{cal['scale']:.3g} (random init gives near-uniform "
                     f"logits): median pixel entropy {cal['target_nats']:.2f} nats = E0/2; "
                     f"pixels below EATA's / SAR's E0 = {cal['margin_nats']:.2f}: "
                     f"{100 * cal['reliable_before']:.0f}% -> "
                     f"{100 * cal['reliable_after']:.0f}%")
    viewed = [r for r in result['variants'] if r['views'] > 1]
    if viewed:
        counts = sorted({r['steps'] for r in viewed})
        warmups = sorted({r.get('warmup', result.get('warmup')) for r in viewed} - {None})
        first = (' (the first: no warm-up)' if warmups == [0] else
                 f" after {'/'.join(map(str, warmups))} warm-up" if warmups else '')
        notes.append(f"  {_names(viewed)}: {viewed[0]['views']} test-time-augmented views per "
                     f"step (the config's pipeline), {'/'.join(map(str, counts))} timed "
                     f"step(s){first} spread over the rounds")
        original = [r for r in viewed if r.get('views_from_original')]
        if original:
            notes.append(f"  {_names(original)}: views made from an original image twice the "
                         "input size (as CoTTA's from ACDC's 1920x1080), predictions averaged "
                         "at its resolution")
        slid = [r for r in viewed if r.get('model_test_cfg')]
        if slid:
            cfg = slid[0]['model_test_cfg']
            notes.append(f"  {_names(slid)}: teacher and anchor in slide mode (crop "
                         f"{tuple(cfg['crop_size'])}, stride {tuple(cfg['stride'])}: views "
                         "larger than the crop run as several windows)")
    if result.get('one_off_in_warmup'):
        names = ', '.join(result['one_off_in_warmup'])
        what = ', '.join(sorted(set(result['one_off_in_warmup'].values())))
        notes.append(f"  {names}: timed after {what}, computed in the warm-up from "
                     f"{result['source_batches']} copies of the batch (not part of a step)")
    return notes


def format_table(result: dict) -> str:
    """The per-config table: variant, median ms/step (on the ratio clock), x tent, peak MB,
    x tent, the MB the step holds when its backward starts, the median wall ms/step, and
    how many timed steps updated the model (of those timed)."""
    h, w = result['size']
    lines = [f"{osp.basename(result['config'])}: input {h}x{w}, {result['steps']} steps per "
             f"variant after {result['warmup']} warm-up, interleaved in shuffled rounds",
             *format_notes(result),
             f"{'variant':<32}{'median ms/step':>15}{'x tent':>8}{'peak MB':>10}{'x tent':>8}"
             f"{'MB at backward':>16}{'wall ms':>10}{'updates':>9}"]
    for r in result['variants']:
        at_backward = r['at_backward_mb']
        updates = '-' if r['updated_steps'] is None else f"{r['updated_steps']}/{r['steps']}"
        lines.append(f"{r['variant']:<32}{r['median_ms']:>15.1f}{r['time_ratio']:>8.3f}"
                     f"{r['peak_mb']:>10.1f}{r['memory_ratio']:>8.3f}"
                     + (f'{at_backward:>16.1f}' if at_backward is not None else f"{'-':>16}")
                     + f"{r['wall_median_ms']:>10.1f}{updates:>9}")
    return '\n'.join(lines)


def format_ratios(result: dict) -> str:
    """The informational ratios (not targets): each method's median time and peak memory over
    TENT's, and each method + STAG's over its method's (STAG's overhead on every base)."""
    rows = result['variants']
    methods = [r for r in rows if r['base'] is None and not r['options']
               and r['variant'] != BASELINE]
    lines = ['ratios (informational, not targets): median time, peak memory']
    lines += [f"  {r['variant']} / {BASELINE}: x{r['time_ratio']:.3f}, "
              f"x{r['memory_ratio']:.3f}" for r in methods]
    lines += [f"  {r['variant']} / {r['base']}: x{r['time_vs_base']:.3f}, "
              f"x{r['memory_vs_base']:.3f}" for r in rows if r['base'] is not None]
    return '\n'.join(lines)


def format_split_table(result: dict, parts: Sequence[str]) -> str:
    """Where each variant's step goes: median ms per part, and the part's difference to
    tent (ms), so that an overhead is located, not just seen."""
    rows = {r['variant']: r for r in result['variants']}
    base = rows[BASELINE]['split_ms']
    lines = ['step split (median ms; in brackets: minus tent)',
             f"{'variant':<32}" + ''.join(f'{p:>17}' for p in parts)]
    for name, row in rows.items():
        cells = []
        for part in parts:
            cell = f"{row['split_ms'][part]:.1f}"
            if name != BASELINE:
                cell += f" ({row['split_ms'][part] - base[part]:+.1f})"
            cells.append(f'{cell:>17}')
        lines.append(f'{name:<32}' + ''.join(cells))
    return '\n'.join(lines)


def format_term_line(result: dict) -> str:
    rows = {r['variant']: r for r in result['variants']}
    parts = [f"{name} {r['stag_term_ms']:.1f} ms "
             f"({100 * r['stag_term_ms'] / rows[r['base']]['median_ms']:.2f}%)"
             for name, r in rows.items() if r['stag_term_ms'] is not None]
    return ("STAG term alone (forward + backward on one step's logits, % of its base "
            "method's step): " + ', '.join(parts))


def format_kspace_line(result: dict) -> str:
    kn, cls = result['kspace_vs_naive'], result['classifier']
    return (f"K-space vs naive C-space peak memory: {kn['kspace_peak_mb']:.1f} MB vs "
            f"{kn['naive_peak_mb']:.1f} MB (K-space saves {kn['saved_mb']:.1f} MB, "
            f"{100 * kn['saved_mb'] / kn['naive_peak_mb']:.1f}%); at backward start "
            f"{kn['kspace_at_backward_mb']:.1f} MB vs {kn['naive_at_backward_mb']:.1f} MB "
            f"(saves {kn['saved_at_backward_mb']:.1f} MB; over tent: K-space "
            f"{kn['kspace_extra_at_backward_mb']:+.1f} MB, naive "
            f"{kn['naive_extra_at_backward_mb']:+.1f} MB); one (P, C) float tensor: "
            f"P={cls['pixels']} x C={cls['channels']} = {kn['pc_tensor_mb']:.1f} MB")


def format_startup(startup: dict) -> str:
    cpu, wall = startup['cpu'], startup['wall']
    return (f"start-up (Runner build, {osp.basename(startup['config'])}, fastest of "
            f"{startup['reps']}, CPU time): {cpu['with_yapf_s']:.2f} s with the config "
            f"formatted by yapf, {cpu['without_yapf_s']:.2f} s without ({cpu['saved_s']:.2f} s "
            f"saved; wall {wall['with_yapf_s']:.2f} s -> {wall['without_yapf_s']:.2f} s)")


def format_postprocess(pp: dict) -> str:
    (h, w), (oh, ow) = pp['input_size'], pp['out_size']
    return (f"full-resolution post-processing + scoring of one {oh}x{ow} image "
            f"({pp['num_classes']} classes, logits at {h}x{w}, {pp['threads']} CPU thread(s), "
            f"median of {pp['reps']}, {pp['clock']} time): {pp['postprocess_ms']:.1f} ms "
            f"(resize + argmax) + {pp['scoring_ms']:.1f} ms (label check + areas) = "
            f"{pp['total_ms']:.1f} ms (wall {pp['wall_total_ms']:.1f} ms)")


def format_loop(loops: Sequence[dict]) -> str:
    first = loops[0]
    (sh, sw), (ih, iw) = first['stream_size'], first['input_size']
    lines = [f"engine loop (tent, {first['images']} PNGs at {sw}x{sh}, resized to {iw}x{ih} "
             f"by the config's pipeline, scored at {sw}x{sh}; {first['num_workers']} loader "
             f"worker(s), pin_memory={first['pin_memory']}; {osp.basename(first['config'])})"]
    for loop in loops:
        clock, precision = loop['clock'], loop['amp'] or 'fp32'
        line = (f"  {precision}{'' if loop['instrumented'] else ' (not instrumented)'}: "
                f"{loop['per_image_s'][clock] * 1e3:.1f} ms/image")
        if clock != 'wall':
            line += f" (wall {loop['per_image_s']['wall'] * 1e3:.1f})"
        line += (f" vs bare step {loop['bare_step_s'][clock] * 1e3:.1f} ms (interleaved): "
                 f"x{loop['ratio']:.3f}")
        if loop['split_s'] is not None:
            line += '; per image: ' + ', '.join(
                f"{SPLIT_NAMES[k]} {loop['split_s'][clock][k] * 1e3:.1f}" for k in SPLIT) + ' ms'
        if loop['mIoU'] is not None:
            line += f"; mIoU {loop['mIoU']:.2f}"
            if loop.get('mIoU_minus_fp32') is not None:
                line += f" ({precision} - fp32: {loop['mIoU_minus_fp32']:+.2f})"
        lines.append(line)
    lines.append(f"  one-off (fp32): runner build {first['runner_build_s']:.1f} s, first "
                 f"iteration {first['first_iter_s']:.1f} s, stage end (records, reports) "
                 f"{first['stage_end_s']:.1f} s")
    return '\n'.join(lines)


def _check(target: str, value: float | None, holds: bool | None,
           measured: bool = True) -> dict:
    status = NO_GPU if not measured else (PASS if holds else FAIL)
    return {'target': target, 'value': value if measured else None, 'status': status}


def targets(results: Sequence[dict], loop: dict | None, postprocess: dict | None,
            device: torch.device) -> list[dict]:
    """Every target with its measured value and status. GPU-only targets on a CPU run are
    'not measured (no GPU)'."""
    default = hook_default_variant()
    on_gpu = device.type == 'cuda'
    out = []
    for result in results:
        name = osp.basename(result['config'])
        rows = {r['variant']: r for r in result['variants']}
        for form in STAG_TARGETED:
            variant = stag_name(form)
            row = rows[variant]
            label = variant + (' [hook default]' if variant == default else '')
            out.append(_check(f'{name}: {label} time / tent <= {TIME_TARGET}',
                              row['time_ratio'], row['time_ratio'] <= TIME_TARGET))
            out.append(_check(f'{name}: {label} peak memory / tent <= {MEMORY_TARGET}',
                              row['memory_ratio'], row['memory_ratio'] <= MEMORY_TARGET))
        kn = result['kspace_vs_naive']
        out.append(_check(f'{name}: K-space peak memory < naive C-space (MB saved)',
                          kn['saved_mb'], kn['saved_mb'] > 0))
        out.append(_check(f'{name}: K-space memory at backward start < naive C-space '
                          '(MB saved)', kn['saved_at_backward_mb'],
                          kn['saved_at_backward_mb'] > 0))
    for kind in ('cpu', 'cuda'):
        here = device.type == kind and loop is not None
        where = 'CPU' if kind == 'cpu' else 'GPU'
        value = loop['ratio'] if here else None
        out.append({'target': f'engine loop over the real-resolution stream / bare step on '
                              f'{where} <= {LOOP_TARGET[kind]}',
                    'value': value,
                    'status': (PASS if value <= LOOP_TARGET[kind] else FAIL) if here
                    else (NO_GPU if kind == 'cuda' and not on_gpu else 'not measured')})
    if postprocess is not None:
        (oh, ow) = postprocess['out_size']
        out.append(_check(f"post-processing + scoring of one {oh}x{ow} image "
                          f"({postprocess['num_classes']} classes, 1 CPU thread) <= "
                          f'{POSTPROCESS_TARGET_MS:.0f} ms', postprocess['total_ms'],
                          postprocess['total_ms'] <= POSTPROCESS_TARGET_MS))
    bf16 = {r['variant']: r for r in results[0]['variants']}.get(speed_name('bf16')) \
        if results else None
    check = _check(f'bf16 / fp32 step time on GPU <= {BF16_TARGET} '
                   f"({osp.basename(results[0]['config']) if results else '-'}, tent)",
                   bf16['time_ratio'] if bf16 else None,
                   bf16 is not None and bf16['time_ratio'] <= BF16_TARGET,
                   measured=on_gpu and bf16 is not None)
    if on_gpu and bf16 is None:
        check['status'] = 'not measured (--speed without bf16)'
    out.append(check)
    return out


def format_ops(ops: Sequence[dict]) -> str:
    """One line: what the host dispatches per TENT step, eager vs the fast mode."""
    parts = [f"{'fast mode' if o['options'] else 'eager'}: {o['aten_ops']} aten ops"
             + (f", {o['launches']} kernel launches" if o['device'] == 'cuda' else '')
             for o in ops]
    return (f"ops dispatched per TENT step ({ops[0]['device']}, torch profiler): "
            + '; '.join(parts))


def format_target(check: dict) -> str:
    value = '' if check['value'] is None else f": {check['value']:.3f}"
    return f"[{check['status']}] {check['target']}{value}"
