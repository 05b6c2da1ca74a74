"""Cost of one adaptation step (source, TENT, TENT + STAG variants) and of the engine's loop."""
from __future__ import annotations

import contextlib
import copy
import gc
import inspect
import json
import logging
import os
import os.path as osp
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIMIZERS, init_default_scope
from mmengine.runner import Runner
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from stag_seg.engine.continual_loop import ContinualTTALoop
from stag_seg.engine.hooks import STAGHook
from stag_seg.engine.launch import load_tta_config
from stag_seg.engine.tap import ModuleTap, get_submodule
from stag_seg.registry import TTA_METHODS
from stag_seg.stag import stag_loss

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIGS = ('configs/segformer/segformer_mit-b5_cs2acdc_tent.py',
                   'configs/deeplabv3plus/deeplabv3plus_r50-d8_cs2acdc_tent.py')
#: (H, W) per device: the stream's real 540x960 is too slow for a 10-minute CPU run
DEFAULT_SIZE = {'cuda': (540, 960), 'cpu': (256, 512)}
DEFAULT_STEPS = {'cuda': 50, 'cpu': 8}
DEFAULT_WARMUP = {'cuda': 10, 'cpu': 1}
#: torch intra-op threads per device (None: torch's choice). On a small shared CPU, two
#: threads next to one busy process made OpenMP barriers wait on a descheduled thread: steps
#: ran ~10x slower and far noisier; one thread keeps the ratios stable.
DEFAULT_THREADS = {'cuda': None, 'cpu': 1}
DEFAULT_LOOP_IMAGES = {'cuda': 40, 'cpu': 10}
#: targets of the "near-zero overhead" claim (ratios to TENT, one run)
TIME_TARGET, MEMORY_TARGET, LOOP_TARGET = 1.03, 1.02, 1.05
MB = 2**20


@dataclass(frozen=True)
class Variant:
    """One benchmarked step: a TTA method, optionally with the STAG hook (its kwargs)."""

    name: str
    method: str
    stag: dict | None = field(default=None, hash=False)


VARIANTS = (
    Variant('source', 'source'),
    Variant('tent', 'tent'),
    Variant('tent + STAG (feature, kspace)', 'tent', dict(grad_space='feature', impl='kspace')),
    Variant('tent + STAG (classifier)', 'tent', dict(grad_space='classifier')),
    Variant('tent + STAG (feature, naive)', 'tent', dict(grad_space='feature', impl='naive')),
)
BASELINE, STAG_KSPACE, STAG_CLASSIFIER, STAG_NAIVE = (
    'tent', VARIANTS[2].name, VARIANTS[3].name, VARIANTS[4].name)
#: the variants the overhead targets apply to (the naive form is a reference only)
STAG_TARGETED = (STAG_KSPACE, STAG_CLASSIFIER)


def hook_default_variant() -> str:
    """The variant that STAGHook's default ``grad_space`` runs."""
    grad_space = inspect.signature(STAGHook).parameters['grad_space'].default
    return STAG_CLASSIFIER if grad_space == 'classifier' else STAG_KSPACE


def resolve_config(config: str) -> str:
    """``config`` as given, or relative to the repository when it is not found as given."""
    if not osp.isfile(config) and osp.isfile(osp.join(REPO, config)):
        return osp.join(REPO, config)
    return config


class _HookRunner:
    """The part of a Runner that ``ContinualTTALoop.run_iter`` and STAGHook use."""

    def __init__(self, model: torch.nn.Module, hooks: Sequence[Hook]) -> None:
        self.model = model
        self.hooks = list(hooks)
        self.logger = logging.getLogger('stag_seg.benchmark')   # anchors' info line: dropped

    def call_hook(self, fn_name: str, **kwargs) -> None:
        for hook in self.hooks:
            getattr(hook, fn_name)(self, **kwargs)


class AdaptationStep:
    """One variant's own model copy, optimizer and taps; :meth:`step` is one engine iteration.

    The iteration and the update are the engine's own code (``ContinualTTALoop.run_iter`` and
    ``_update``, bound to this object): ``model.test_step`` with gradients, the classifier tap,
    the method's loss, STAGHook's ``after_tta_forward``, one backward, the optimizer step and
    ``zero_grad``. Only the loop's other hooks, scoring and data loading are left out (the loop
    benchmark measures those).
    """

    run_iter = ContinualTTALoop.run_iter
    _update = ContinualTTALoop._update

    def __init__(self, model: torch.nn.Module, variant: Variant, optimizer: dict,
                 classifier: str, data: dict) -> None:
        self.variant = variant
        self.model = model
        self.data = data
        self.method = TTA_METHODS.get(variant.method)()
        self.method.configure_model(model)
        self.params = self.method.collect_params(model)
        self.optim_wrapper = None
        if self.method.updates:
            self.optim_wrapper = OptimWrapper(OPTIMIZERS.build({**optimizer,
                                                                'params': self.params}))
        self.tap = ModuleTap(get_submodule(model, classifier), keep_inputs=False)
        hooks = [STAGHook(classifier=classifier, **variant.stag)] if variant.stag else []
        self.runner = _HookRunner(model, hooks)
        self.runner.call_hook('before_test')

    def step(self) -> None:
        """Predicts ``data`` and (unless source) adapts on it, as the loop does per batch."""
        outputs, _ = self.run_iter(0, self.data, True)
        self.runner.call_hook('after_test_iter', batch_idx=0, data_batch=self.data,
                              outputs=outputs)

    def persistent_bytes(self) -> int:
        """Bytes held between steps: parameters, buffers and optimizer state."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        if self.optim_wrapper is not None:
            for state in self.optim_wrapper.optimizer.state.values():
                tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                    for t in tensors}
        return sum(storages.values())

    def close(self) -> None:
        self.runner.call_hook('after_test')
        self.tap.remove()


def synthetic_batch(size: tuple[int, int], seed: int = 0) -> dict:
    """One image batch as the stream's pipeline packs it (uint8 CHW, metainfo at ``size``)."""
    h, w = size
    gen = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                         scale_factor=(1.0, 1.0), flip=False))
    return dict(inputs=[img], data_samples=[sample])


def build_steps(config: str, size: tuple[int, int], device: torch.device,
                variants: Sequence[Variant] = VARIANTS) -> dict[str, AdaptationStep]:
    """Each variant's step on its own copy of the config's model (random init).

    The optimizer and the classifier path come from the config's ``test_cfg``.
    """
    cfg = Config.fromfile(resolve_config(config))
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    loop_cfg = cfg.get('test_cfg', {})
    optimizer = dict(loop_cfg.get('optimizer') or dict(type='Adam', lr=6e-5 / 8))
    classifier = loop_cfg.get('classifier', 'decode_head.conv_seg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    data = synthetic_batch(size)
    steps = {}
    for variant in variants:
        steps[variant.name] = AdaptationStep(copy.deepcopy(model).to(device), variant,
                                             optimizer, classifier, data)
    return steps


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_steps(steps: dict[str, AdaptationStep], num_steps: int, warmup: int,
               device: torch.device, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per step of every variant, interleaved after warm-up: every round runs each
    variant once, in a seeded random order.

    A fixed order (A B C D E A B C ...) makes a variant always follow the same one; on CPU
    tent, always right after the forward-only source step, measured 1.5 to 5% slower than
    every STAG variant (three runs on SegFormer-B5).
    """
    for _ in range(warmup):
        for step in steps.values():
            step.step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    rng = random.Random(seed)
    order = list(steps)
    for _ in range(num_steps):
        rng.shuffle(order)
        for name in order:
            gc.collect()
            _sync(device)
            start = time.perf_counter()
            steps[name].step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
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


MARK = 'stag_seg.benchmark::backward_start'


class _BackwardMark(Hook):
    """Last ``after_tta_forward`` hook: marks the moment the backward starts (all loss terms
    built, the forward graph complete)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.allocated: int | None = None       # CUDA: bytes allocated at the mark

    def after_tta_forward(self, runner, **kwargs) -> None:
        if self.device.type == 'cuda':
            _sync(self.device)
            self.allocated = torch.cuda.memory_allocated(self.device)
        else:
            with record_function(MARK):
                pass


def step_peak_bytes(fn: Callable[[], None], device: torch.device,
                    mark: _BackwardMark | None = None) -> tuple[int, int | None]:
    """Peak bytes torch allocates during ``fn()`` beyond what was allocated before it, and
    the bytes it holds when ``mark`` fires (None without a mark or if it did not fire).

    CUDA: ``max_memory_allocated`` after ``reset_peak_memory_stats``. CPU has no such
    counter, so every allocation and free of torch's CPU allocator is recorded with the
    profiler (``profile_memory=True``) and the peak of their running sum is taken. This counts
    exactly the tensors a step creates (activations saved for backward, gradients, the STAG
    term's per-pixel tensors) and nothing else: unlike the process's peak RSS it is not
    blurred by malloc's caching and page granularity, it can be taken per variant in one
    process (RSS's high-water mark never goes down), and it is deterministic, so ratios of
    a few percent are meaningful.
    """
    if device.type == 'cuda':
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        _sync(device)
        at_mark = None if mark is None or mark.allocated is None else mark.allocated - base
        return torch.cuda.max_memory_allocated(device) - base, at_mark
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
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


def measure_memory(steps: dict[str, AdaptationStep], device: torch.device) -> dict[str, dict]:
    """Per variant: persistent bytes (weights, buffers, optimizer state) + the step's peak,
    and what the step holds when its backward starts (``None`` for source: no backward)."""
    out = {}
    for name, step in steps.items():
        gc.collect()
        if device.type == 'cuda':
            torch.cuda.empty_cache()
        mark = _BackwardMark(device)
        step.runner.hooks.append(mark)
        try:
            transient, at_backward = step_peak_bytes(step.step, device, mark)
        finally:
            step.runner.hooks.remove(mark)
        persistent = step.persistent_bytes()
        out[name] = {'persistent_mb': persistent / MB, 'step_mb': transient / MB,
                     'peak_mb': (persistent + transient) / MB,
                     'at_backward_mb': (None if at_backward is None
                                        else (persistent + at_backward) / MB)}
    return out


def classifier_probe(steps: dict[str, AdaptationStep], device: torch.device,
                     reps: int = 20) -> tuple[dict, dict[str, float]]:
    """K, C and the classifier pixels P of one forward, and the STAG term alone: median ms of
    its forward + backward on those logits (and features), per STAG variant."""
    any_step = next(s for s in steps.values() if s.runner.hooks)
    hook = any_step.runner.hooks[0]
    classifier = get_submodule(any_step.model, hook.classifier)
    tap = ModuleTap(classifier, keep_inputs=True)
    try:
        with torch.enable_grad():
            any_step.model.test_step(any_step.data)
        logits, feats = tap.logits().detach(), tap.features().detach()
    finally:
        tap.remove()
    shape = {'num_classes': classifier.out_channels, 'channels': classifier.in_channels,
             'pixels': logits.numel() // logits.shape[1], 'logits_shape': list(logits.shape)}
    term_ms = {}
    for name, step in steps.items():
        if not step.runner.hooks:
            continue
        hook = step.runner.hooks[0]
        samples = []
        for _ in range(reps):
            z = logits.clone().requires_grad_(True)
            f = feats.clone().requires_grad_(True)
            _sync(device)
            start = time.perf_counter()
            loss = stag_loss(z, hook.anchors, feats=f, conf_thresh=hook.conf_thresh,
                             impl=hook.impl)
            loss.backward()
            _sync(device)
            samples.append(time.perf_counter() - start)
        term_ms[name] = statistics.median(samples) * 1e3
    return shape, term_ms


def benchmark_config(config: str, size: tuple[int, int], device: torch.device,
                     num_steps: int, warmup: int) -> dict:
    """Times and memory of every variant on one config; ratios to TENT."""
    clock = [time.perf_counter()]
    steps = build_steps(config, size, device)
    try:
        clock.append(time.perf_counter())
        times = time_steps(steps, num_steps, warmup, device)
        clock.append(time.perf_counter())
        memory = measure_memory(steps, device)
        clock.append(time.perf_counter())
        shape, term_ms = classifier_probe(steps, device)
        num_params = sum(p.numel() for p in steps[BASELINE].model.parameters())
        num_adapted = sum(p.numel() for p in steps[BASELINE].params)
    finally:
        for step in steps.values():
            step.close()
        del steps
        gc.collect()
    base_ms = statistics.median(times[BASELINE]) * 1e3
    base_mb = memory[BASELINE]['peak_mb']
    rows = []
    for name, samples in times.items():
        median_ms = statistics.median(samples) * 1e3
        rows.append({'variant': name, 'median_ms': median_ms,
                     'time_ratio': median_ms / base_ms,
                     'times_ms': [t * 1e3 for t in samples], **memory[name],
                     'stag_term_ms': term_ms.get(name),
                     'memory_ratio': memory[name]['peak_mb'] / base_mb})
    by_name = {r['variant']: r for r in rows}
    kspace, naive = by_name[STAG_KSPACE], by_name[STAG_NAIVE]
    pc_mb = shape['pixels'] * shape['channels'] * 4 / MB
    return {
        'config': config, 'size': list(size), 'steps': num_steps, 'warmup': warmup,
        'num_params': num_params, 'num_adapted_params': num_adapted, 'classifier': shape,
        'variants': rows,
        'phase_s': dict(zip(('build', 'timing', 'memory'), np.diff(clock).tolist(),
                            strict=True)),
        'kspace_vs_naive': {
            'kspace_peak_mb': kspace['peak_mb'], 'naive_peak_mb': naive['peak_mb'],
            'saved_mb': naive['peak_mb'] - kspace['peak_mb'],
            'saved_step_fraction': 1 - kspace['step_mb'] / naive['step_mb'],
            'kspace_extra_mb': kspace['peak_mb'] - base_mb,
            'naive_extra_mb': naive['peak_mb'] - base_mb,
            'kspace_at_backward_mb': kspace['at_backward_mb'],
            'naive_at_backward_mb': naive['at_backward_mb'],
            'saved_at_backward_mb': naive['at_backward_mb'] - kspace['at_backward_mb'],
            'kspace_extra_at_backward_mb': (kspace['at_backward_mb']
                                            - by_name[BASELINE]['at_backward_mb']),
            'naive_extra_at_backward_mb': (naive['at_backward_mb']
                                           - by_name[BASELINE]['at_backward_mb']),
            'pc_tensor_mb': pc_mb},
    }


# ------------------------------------------------------------------------- engine loop
def write_acdc_stream(root: str, size: tuple[int, int], num_images: int,
                      condition: str = 'fog', num_classes: int = 19, seed: int = 0) -> str:
    """A one-condition ACDC tree in the real layout (random images and labels) at ``size``."""
    h, w = size
    rng = np.random.default_rng(seed)
    for k in range(num_images):
        stem = f'GOPR0475_frame_{41 + k:06d}'
        for sub, suffix, array in (
                ('rgb_anon', '_rgb_anon.png', rng.integers(0, 256, (h, w, 3), dtype=np.uint8)),
                ('gt', '_gt_labelTrainIds.png',
                 rng.integers(0, num_classes, (h, w), dtype=np.uint8))):
            folder = osp.join(root, sub, condition, 'train', 'GOPR0475')
            os.makedirs(folder, exist_ok=True)
            if not cv2.imwrite(osp.join(folder, stem + suffix), array):
                raise OSError(f'could not write {folder}/{stem}{suffix}')
    return root


class _LoopTimer(Hook):
    """Time at the end of the loop's first iteration (set-up and warm-up end there)."""

    priority = 'LOWEST'

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.first_iter_end: float | None = None
        self.iters = 0

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.iters += 1
        if self.first_iter_end is None:
            _sync(self.device)
            self.first_iter_end = time.perf_counter()


def benchmark_loop(config: str, size: tuple[int, int], num_images: int,
                   bare_step_s: float, device: torch.device, num_workers: int | None = None,
                   ) -> dict:
    """Wall time of ContinualTTALoop (tent, one domain, one round) per image vs the bare step.

    The stream is ``num_images`` random images at ``size`` in a temporary ACDC tree, loaded by
    the config's dataloader (at least one worker), scored by its IoUMetric, with the reports
    written at the stage's end; progress bar and state checkpoint off. The ratio uses the
    steady state: from the end of the first iteration (runner, workers and warm-up done) to
    the end of ``runner.test()``, over ``num_images - 1`` images.
    """
    if num_images < 2:
        raise ValueError('the loop benchmark needs at least 2 images')
    with tempfile.TemporaryDirectory(prefix='stag_bench_') as tmp:
        root = write_acdc_stream(osp.join(tmp, 'acdc'), size, num_images)
        cfg = load_tta_config(resolve_config(config), osp.join(tmp, 'work'), {
            'test_dataloader.dataset.data_root': root,
            'test_cfg.domains': [dict(name='fog', dataset=dict(condition='fog'))],
            'test_cfg.num_rounds': 1,
            'test_cfg.method': dict(type='tent'),
            'test_cfg.progress': False,
            'test_cfg.save_state': False,
            'log_level': 'WARNING',
        })
        cfg.custom_hooks = []                     # plain tent, as the bare step
        loader = cfg.test_dataloader
        loader.num_workers = max(1, num_workers if num_workers is not None
                                 else loader.get('num_workers', 1))
        loader.persistent_workers = loader.get('persistent_workers', True)
        for transform in loader.dataset.pipeline:
            if transform['type'] == 'Resize':
                transform['scale'] = (size[1], size[0])
        start = time.perf_counter()
        runner = Runner.from_cfg(cfg)
        timer = _LoopTimer(device)
        runner.register_hook(timer)
        built = time.perf_counter()
        runner.test()
        _sync(device)
        end = time.perf_counter()
        del runner
    if timer.iters != num_images:
        raise RuntimeError(f'the loop ran {timer.iters} iterations, expected {num_images}')
    steady = (end - timer.first_iter_end) / (num_images - 1)
    return {'config': config, 'images': num_images, 'num_workers': loader.num_workers,
            'runner_build_s': built - start, 'test_s': end - built,
            'first_iter_s': timer.first_iter_end - built,
            'steady_s_per_image': steady, 'bare_step_s': bare_step_s,
            'ratio': steady / bare_step_s,
            'ratio_incl_first_iter': (end - built) / num_images / bare_step_s}


# ---------------------------------------------------------------------------- report
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


def format_table(result: dict) -> str:
    """The per-config table: variant, median ms/step, x tent, peak MB, x tent, and the MB the
    step holds when its backward starts."""
    h, w = result['size']
    lines = [f"{osp.basename(result['config'])}: input {h}x{w}, {result['steps']} steps per "
             f"variant after {result['warmup']} warm-up, interleaved in shuffled rounds",
             f"{'variant':<32}{'median ms/step':>15}{'x tent':>8}{'peak MB':>10}{'x tent':>8}"
             f"{'MB at backward':>16}"]
    for r in result['variants']:
        at_backward = r['at_backward_mb']
        lines.append(f"{r['variant']:<32}{r['median_ms']:>15.1f}{r['time_ratio']:>8.3f}"
                     f"{r['peak_mb']:>10.1f}{r['memory_ratio']:>8.3f}"
                     + (f'{at_backward:>16.1f}' if at_backward is not None else f"{'-':>16}"))
    return '\n'.join(lines)


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


def format_term_line(result: dict) -> str:
    rows = {r['variant']: r for r in result['variants']}
    base = rows[BASELINE]['median_ms']
    parts = [f"{name.replace('tent + STAG ', '')} {r['stag_term_ms']:.1f} ms "
             f"({100 * r['stag_term_ms'] / base:.2f}%)"
             for name, r in rows.items() if r['stag_term_ms'] is not None]
    return ('STAG term alone (forward + backward on one step\'s logits, % of the tent step): '
            + ', '.join(parts))


def format_loop_line(loop: dict) -> str:
    return (f"engine loop (tent, {loop['images']} images, {loop['num_workers']} worker(s), "
            f"{osp.basename(loop['config'])}): {loop['steady_s_per_image'] * 1e3:.1f} ms/image "
            f"vs bare step {loop['bare_step_s'] * 1e3:.1f} ms: x{loop['ratio']:.3f} "
            f"(after the first iteration; x{loop['ratio_incl_first_iter']:.3f} including it, "
            f"runner build {loop['runner_build_s']:.1f} s not counted)")


def targets(results: Sequence[dict], loop: dict | None) -> list[dict]:
    """The overhead targets, checked on every config for both STAG forms (time, memory) and on
    the loop. Names say which form is STAGHook's default."""
    default = hook_default_variant()
    out = []
    for result in results:
        name = osp.basename(result['config'])
        rows = {r['variant']: r for r in result['variants']}
        for variant in STAG_TARGETED:
            row = rows[variant]
            label = variant + (' [hook default]' if variant == default else '')
            out.append({'target': f'{name}: {label} time / tent <= {TIME_TARGET}',
                        'value': row['time_ratio'], 'holds': row['time_ratio'] <= TIME_TARGET})
            out.append({'target': f'{name}: {label} peak memory / tent <= {MEMORY_TARGET}',
                        'value': row['memory_ratio'],
                        'holds': row['memory_ratio'] <= MEMORY_TARGET})
        kn = result['kspace_vs_naive']
        out.append({'target': f'{name}: K-space peak memory < naive C-space (MB saved)',
                    'value': kn['saved_mb'], 'holds': kn['saved_mb'] > 0})
        out.append({'target': f'{name}: K-space memory at backward start < naive C-space '
                    '(MB saved)', 'value': kn['saved_at_backward_mb'],
                    'holds': kn['saved_at_backward_mb'] > 0})
    if loop is not None:
        out.append({'target': f'engine loop / bare step <= {LOOP_TARGET}',
                    'value': loop['ratio'], 'holds': loop['ratio'] <= LOOP_TARGET})
    return out


def run_benchmark(configs: Sequence[str] = DEFAULT_CONFIGS,
                  size: tuple[int, int] | None = None,
                  device: str | None = None,
                  num_steps: int | None = None,
                  warmup: int | None = None,
                  loop: bool = True,
                  loop_images: int | None = None,
                  out: str | None = 'work_dirs/benchmark.json',
                  threads: int | None = None,
                  print_fn: Callable[[str], None] | None = print) -> dict:
    """Runs everything, prints the tables and writes the JSON. Returns the JSON's content.

    ``None`` options take the device's defaults (``DEFAULT_SIZE``, ``DEFAULT_STEPS``,
    ``DEFAULT_THREADS``, ...). The loop is timed on the first config only.
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
            say(f'CPU: default input {size[0]}x{size[1]} instead of the stream\'s 540x960 '
                '(--size H W to change)')
    num_steps = DEFAULT_STEPS[kind] if num_steps is None else num_steps
    warmup = DEFAULT_WARMUP[kind] if warmup is None else warmup
    if num_steps < 1 or warmup < 0:
        raise ValueError('--steps must be >= 1 and --warmup >= 0')
    loop_images = DEFAULT_LOOP_IMAGES[kind] if loop_images is None else loop_images
    info = machine_info(dev)
    say(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} "
        f"({info['torch_threads']} threads), device {info['device_name']}, load average "
        f"{' '.join(f'{x:.2f}' for x in info.get('load_average', []))}")
    hook_defaults = {k: v.default for k, v in inspect.signature(STAGHook).parameters.items()}
    say(f"STAG variants: STAGHook with loss_weight={hook_defaults['loss_weight']}, "
        f"tau={hook_defaults['tau']}; the hook's default form is {hook_default_variant()!r}")
    started = time.perf_counter()
    results = []
    for config in configs:
        result = benchmark_config(config, tuple(size), dev, num_steps, warmup)
        results.append(result)
        say('')
        say(format_table(result))
        say(format_term_line(result))
        say(format_kspace_line(result))
    loop_result = None
    if loop:
        if kind == 'cpu' and torch.cuda.is_available():
            say('engine loop: skipped (the Runner puts the model on the GPU; use --device cuda)')
        else:
            bare = {r['variant']: r for r in results[0]['variants']}[BASELINE]['median_ms'] / 1e3
            loop_result = benchmark_loop(configs[0], tuple(size), loop_images, bare, dev)
            say('')
            say(format_loop_line(loop_result))
    checks = targets(results, loop_result)
    say('')
    for check in checks:
        say(f"[{'ok' if check['holds'] else 'MISSED'}] {check['target']}: {check['value']:.3f}")
    with contextlib.suppress(OSError):
        info['load_average_end'] = list(os.getloadavg())
    report = {'machine': info, 'size': list(size), 'steps': num_steps, 'warmup': warmup,
              'configs': results, 'loop': loop_result, 'targets': checks,
              'wall_s': time.perf_counter() - started}
    if out:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with open(out, 'w') as f:
            json.dump(report, f, indent=2)
        say(f'wrote {out} ({report["wall_s"]:.0f} s)')
    return report
