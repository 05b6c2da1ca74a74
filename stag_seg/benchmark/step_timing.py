"""The bare adaptation step of each variant: TTAAdapter.step on its own model copy, timed
interleaved in shuffled rounds."""
from __future__ import annotations

import contextlib
import copy
import gc
import logging
import random
from collections.abc import Mapping, Sequence

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from mmseg.registry import HOOKS, MODELS

from stag_seg.benchmark.batches import base_view, num_views, stream_batches
from stag_seg.benchmark.calibration import calibrate_classifier
from stag_seg.benchmark.paths import REPO, resolve_config
from stag_seg.benchmark.timers import CLOCKS, PhaseTimers, elapsed, stamp
from stag_seg.benchmark.variants import BASELINE, Variant
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.config import check_loop_options
from stag_seg.engine.speed import apply_speed_options, resolve_fast, set_tf32
from stag_seg.methods.base import TTAMethod
from stag_seg.methods.eata import EATA
from stag_seg.registry import TTA_METHODS
from stag_seg.step.context import StepResult
from stag_seg.step.timing import timed

__all__ = ['REPO', 'AdapterStep', 'BenchmarkSteps', 'SourceBatches', 'build_steps', 'loop_options',
           'one_off_pending', 'resolve_config', 'time_steps', 'unique_visualizer']

LOGGER = logging.getLogger('stag_seg.benchmark')     # set-up lines (STAG's anchors): dropped
#: batches in the source-domain set a method reads before the stream (EATA's Fisher set)
SOURCE_BATCHES = 2


def unique_visualizer(cfg: Config, name: str) -> None:
    """Gives the config's visualizer its own instance name. mmseg's configs name it
    'visualizer', and mmengine hands a later Runner in the same process the instance of that
    name, with the first Runner's (maybe deleted) save directory."""
    if cfg.get('visualizer') is not None:
        cfg.visualizer['name'] = f'stag_benchmark_{name}'


def loop_options(cfg: Config) -> dict:
    """The config's ``test_cfg`` completed with the loop's defaults (as the loop gets it)."""
    loop = dict(cfg.get('test_cfg') or {})
    loop.pop('type', None)
    domains = loop.pop('domains', None) or [dict(name='benchmark')]
    return check_loop_options(domains=list(domains), require_checkpoint=False, **loop)


class SourceBatches(list):
    """The source-domain set a method reads before the stream (EATA's Fisher set), served in
    the benchmark by :data:`SOURCE_BATCHES` copies of the step's (base-view) batch, whatever
    set and size the method's config asks for; ``dataset`` is the list itself (a loader's
    length, which EATA logs). Its one-off cost is not part of a step."""

    @property
    def dataset(self) -> SourceBatches:
        return self


def one_off_pending(method: TTAMethod) -> str | None:
    """The one-off work a method does at its first update and has not done yet (its cost
    belongs to no step), or None: EATA's Fisher information."""
    if isinstance(method, EATA) and method.fisher_alpha > 0 and method.fisher is None:
        return "EATA's Fisher information"
    return None


class AdapterStep:
    """One variant on its own model copy: the adapter the loop would build for it.

    :meth:`step` is ``TTAAdapter.step(batch, adapt=True)``: the method's whole step (CoTTA:
    the anchor's and the teacher's forwards over every view, the full-resolution averaging,
    the student's forward and backward, EMA and restore; SAR: both passes), with the
    classifier tap, the plug-ins' terms, the backward with the finite check, the optimizer
    step and ``zero_grad``. The batch's label is at the input size, so the prediction is
    made without upsampling (views made from the original image: at the original's size, as
    CoTTA averages them); data loading, full-resolution post-processing and scoring are the
    loop benchmark's.

    Methods that read a source-domain set before the stream (``adapter.build_loader``) get
    :class:`SourceBatches` of the base view.
    """

    def __init__(self, model: torch.nn.Module, variant: Variant, loop_opt: dict,
                 batch: dict) -> None:
        self.variant = variant
        self.batch = batch
        self.base_batch = base_view(batch)
        self.views = num_views(batch)
        opt = check_loop_options(domains=[dict(name='benchmark')], require_checkpoint=False,
                                 **{**loop_opt, **variant.options})
        opt = resolve_fast(opt, next(model.parameters()).device, LOGGER)
        self.tf32 = opt['tf32']
        apply_speed_options(model, opt, LOGGER)
        plugins = [HOOKS.build(dict(cfg)) for cfg in variant.plugins]
        self.adapter = TTAAdapter(model, TTA_METHODS.build(copy.deepcopy(variant.method)),
                                  opt['classifier'], plugins, opt['optimizer'],
                                  opt['optim_wrapper'], opt['amp'], LOGGER,
                                  build_loader=self.source_batches,
                                  cuda_graph=opt['cuda_graph'])

    def source_batches(self, dataset_cfg: dict, size: int | None = None) -> SourceBatches:
        """The adapter's ``build_loader(dataset_cfg, size=None)``: see :class:`SourceBatches`."""
        return SourceBatches([self.base_batch] * SOURCE_BATCHES)

    @property
    def model(self) -> torch.nn.Module:
        return self.adapter.model

    @property
    def updates(self) -> bool:
        return self.adapter.method.updates

    def step(self) -> StepResult:
        set_tf32(self.tf32)               # a process-wide flag: set for each interleaved step
        return self.adapter.step(self.batch, adapt=True)

    def close(self) -> None:
        self.adapter.close()


class BenchmarkSteps(dict):
    """Variant name -> :class:`AdapterStep`, and the classifier's calibration (None: none)."""

    def __init__(self, calibration: dict | None = None) -> None:
        super().__init__()
        self.calibration = calibration


def build_steps(config: str, size: tuple[int, int], device: torch.device,
                variants: Sequence[Variant], batch: dict | None = None,
                calibrate: bool = True) -> BenchmarkSteps:
    """Each variant's step on its own copy of the config's model (random init, seed 0); the
    optimizer, its wrapper and the classifier path come from the config's ``test_cfg``.

    Each variant's batch is ``batch`` if given, else its stream config's
    (:func:`~stag_seg.benchmark.batches.stream_batches`: one synthetic image at ``size``); a
    variant's ``model_test_cfg`` (CoTTA's slide inference) is set on its model copy.
    With ``calibrate`` the model's classifier is first scaled so that the median pixel
    entropy of TENT's model (BatchNorm on batch statistics) on TENT's batch is E0 / 2
    (:mod:`~stag_seg.benchmark.calibration`; its numbers are the result's ``calibration``).
    """
    cfg = Config.fromfile(resolve_config(config))
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    opt = loop_options(cfg)
    loop_opt = {k: opt[k] for k in ('classifier', 'optimizer', 'optim_wrapper', 'amp', 'tf32',
                                    'channels_last', 'compile', 'fused_attention',
                                    'cuda_graph', 'fast')}
    if batch is None:
        sources = {v.name: v.stream_config or config for v in variants}
        made = stream_batches(sources.values(), size)
        batches = {name: made[source] for name, source in sources.items()}
    else:
        batches = {v.name: batch for v in variants}
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    calibration = None
    if calibrate:
        reference = batches.get(BASELINE, next(iter(batches.values())))
        calibration = calibrate_classifier(model, base_view(reference), opt['classifier'],
                                           TTA_METHODS.build(dict(type=BASELINE)))
    steps = BenchmarkSteps(calibration=calibration)
    for variant in variants:
        copied = copy.deepcopy(model).to(device)
        if variant.model_test_cfg is not None:              # CoTTA's slide inference
            copied.test_cfg = ConfigDict(variant.model_test_cfg)
        steps[variant.name] = AdapterStep(copied, variant, loop_opt, batches[variant.name])
    set_tf32(False)
    return steps


#: the parts of a step timed by :func:`time_steps` with ``split=True``: adapter methods
#: (``infer`` is every model forward, also those outside ``forward``: CoTTA's teacher and
#: anchor; nested in ``forward`` it is counted once)
STEP_PHASES = ('forward', 'plugin terms', 'backward', 'update')


def timed_rounds(num_steps: int, count: int) -> set[int]:
    """The ``count`` of ``num_steps`` rounds a variant with fewer timed steps runs in, spread
    evenly from the first (e.g. 2 of 8: rounds 0 and 4)."""
    return {i * num_steps // count for i in range(count)}


def time_steps(steps: Mapping[str, AdapterStep], num_steps: int, warmup: int,
               device: torch.device, seed: int = 0, split: bool = False,
               counts: Mapping[str, int] | None = None,
               warmups: Mapping[str, int] | None = None) -> dict:
    """Seconds per step of every variant on both clocks, interleaved after warm-up: every
    round runs each variant once, in a seeded random order. A variant with fewer timed steps
    in ``counts`` (at most ``num_steps``; e.g. CoTTA, whose step runs 14 views) runs in that
    many rounds spread over them (:func:`timed_rounds`); one in ``warmups`` takes that many
    warm-up steps instead of ``warmup``.

    Returns ``{'wall': {name: [s, ...]}, 'cpu': {...}, 'updated': {name: [bool, ...]},
    'stats': {name: {stat: sum}}}`` (whether each timed step updated, and the method's stats
    summed over them), and with ``split`` also ``'split': {clock: {name: [{part: s},
    ...]}}``: each step's time in the adapter's ``forward`` (all forwards, predictions
    included), the plug-ins' terms, ``backward`` and the optimizer update
    (:data:`STEP_PHASES`, through the engine's timing hook, synchronised on CUDA), and
    ``'loss + other'``, the rest (the method's loss, its own bookkeeping: CoTTA's
    per-view post-processing and averaging, EMA and restore).

    One-off work a method does at its first update (:func:`one_off_pending`: EATA's Fisher
    information) must be done by the warm-up: a step still owing it after the warm-up is a
    RuntimeError naming the variant.

    A fixed order (A B C D E A B C ...) makes a variant always follow the same one; on CPU
    tent, always right after the forward-only source step, measured 1.5 to 5% slower than
    every STAG variant (three runs on SegFormer-B5).
    """
    counts = {name: min(num_steps, (counts or {}).get(name, num_steps)) for name in steps}
    warmups = {name: (warmups or {}).get(name, warmup) for name in steps}
    for index in range(max(warmups.values(), default=0)):
        for name, step in steps.items():
            if index < warmups[name]:
                step.step()
    for name, step in steps.items():
        pending = one_off_pending(step.adapter.method)
        if pending is not None:
            raise RuntimeError(f'{name}: {pending} is not computed before the timed steps '
                               f'(warm-up {warmups[name]}); time it after at least one '
                               'warm-up step')
    rounds = {name: timed_rounds(num_steps, count) for name, count in counts.items()}
    times: dict = {c: {name: [] for name in steps} for c in CLOCKS}
    times['updated'] = {name: [] for name in steps}
    times['stats'] = {name: {} for name in steps}
    if split:
        times['split'] = {c: {name: [] for name in steps} for c in CLOCKS}
    phases = PhaseTimers(device)
    rng = random.Random(seed)
    order = list(steps)
    with contextlib.ExitStack() as stack:
        if split:
            stack.enter_context(timed(phases))
        for index in range(num_steps):
            rng.shuffle(order)
            for name in order:
                if index not in rounds[name]:
                    continue
                gc.collect()
                before = phases.snapshot()
                start = stamp(device)
                result = steps[name].step()
                total = elapsed(start, stamp(device))
                after = phases.snapshot()
                times['updated'][name].append(bool(result.updated))
                stats = times['stats'][name]
                for key, value in result.stats.items():
                    value = value.item() if isinstance(value, torch.Tensor) else value
                    stats[key] = stats.get(key, 0) + value
                for clock in CLOCKS:
                    times[clock][name].append(total[clock])
                    if split:
                        parts = {part: after[clock][part] - before[clock][part]
                                 for part in STEP_PHASES}
                        parts['loss + other'] = total[clock] - sum(parts.values())
                        times['split'][clock][name].append(parts)
    set_tf32(False)
    return times
