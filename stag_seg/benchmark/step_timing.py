"""The bare adaptation step of each variant: TTAAdapter.step on its own model copy, timed
interleaved in shuffled rounds."""
from __future__ import annotations

import contextlib
import copy
import gc
import logging
import os.path as osp
import random
from collections.abc import Sequence

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import HOOKS, MODELS

from stag_seg.benchmark.timers import CLOCKS, PhaseTimers, elapsed, stamp
from stag_seg.benchmark.variants import Variant
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.config import check_loop_options
from stag_seg.engine.speed import apply_speed_options, set_tf32
from stag_seg.methods.base import StepResult
from stag_seg.registry import TTA_METHODS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LOGGER = logging.getLogger('stag_seg.benchmark')     # set-up lines (STAG's anchors): dropped


def resolve_config(config: str) -> str:
    """``config`` as given, or relative to the repository when it is not found as given."""
    if not osp.isfile(config) and osp.isfile(osp.join(REPO, config)):
        return osp.join(REPO, config)
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    return config


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


class AdapterStep:
    """One variant on its own model copy: the adapter the loop would build for it.

    :meth:`step` is ``TTAAdapter.step(batch, adapt=True)``: the method's forward with the
    classifier tap, its loss, the plug-ins' terms, one backward with the finite check, the
    optimizer step and ``zero_grad`` (and whatever else the method's own step does). The batch
    has its metainfo at the input size, so the prediction is made without upsampling; data
    loading, full-resolution post-processing and scoring are the loop benchmark's.

    Methods that read a source-domain set before the stream (``adapter.build_loader``) get
    two copies of the batch.
    """

    def __init__(self, model: torch.nn.Module, variant: Variant, loop_opt: dict,
                 batch: dict) -> None:
        self.variant = variant
        self.batch = batch
        opt = check_loop_options(domains=[dict(name='benchmark')], require_checkpoint=False,
                                 **{**loop_opt, **variant.options})
        self.tf32 = opt['tf32']
        apply_speed_options(model, opt, LOGGER)
        plugins = [HOOKS.build(dict(cfg)) for cfg in variant.plugins]
        self.adapter = TTAAdapter(model, TTA_METHODS.build(dict(variant.method)),
                                  opt['classifier'], plugins, opt['optimizer'],
                                  opt['optim_wrapper'], opt['amp'], LOGGER,
                                  build_loader=lambda _cfg: [batch, batch])

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


def build_steps(config: str, size: tuple[int, int], device: torch.device,
                variants: Sequence[Variant], batch: dict) -> dict[str, AdapterStep]:
    """Each variant's step on its own copy of the config's model (random init, seed 0); the
    optimizer, its wrapper and the classifier path come from the config's ``test_cfg``."""
    cfg = Config.fromfile(resolve_config(config))
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    opt = loop_options(cfg)
    loop_opt = {k: opt[k] for k in ('classifier', 'optimizer', 'optim_wrapper', 'amp', 'tf32',
                                    'channels_last', 'compile')}
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    steps = {}
    for variant in variants:
        steps[variant.name] = AdapterStep(copy.deepcopy(model).to(device), variant, loop_opt,
                                          batch)
    set_tf32(False)
    return steps


#: the parts of a step timed by :func:`time_steps` with ``split=True``: adapter methods
STEP_PHASES = {'forward': 'forward', 'add_plugin_losses': 'plugin terms',
               'backward': 'backward', 'apply_update': 'update'}


def time_steps(steps: dict[str, AdapterStep], num_steps: int, warmup: int,
               device: torch.device, seed: int = 0, split: bool = False) -> dict:
    """Seconds per step of every variant on both clocks, interleaved after warm-up: every
    round runs each variant once, in a seeded random order.

    Returns ``{'wall': {name: [s, ...]}, 'cpu': {...}}``, and with ``split`` also
    ``'split': {clock: {name: [{part: s}, ...]}}``: each step's time in the adapter's
    ``forward`` (all forwards, predictions included), the plug-ins' terms, ``backward`` and
    the optimizer update (:data:`STEP_PHASES`, wrapped from outside, synchronised on CUDA),
    and ``'loss + other'``, the rest (the method's loss, its own bookkeeping).

    A fixed order (A B C D E A B C ...) makes a variant always follow the same one; on CPU
    tent, always right after the forward-only source step, measured 1.5 to 5% slower than
    every STAG variant (three runs on SegFormer-B5).
    """
    for _ in range(warmup):
        for step in steps.values():
            step.step()
    times: dict = {c: {name: [] for name in steps} for c in CLOCKS}
    if split:
        times['split'] = {c: {name: [] for name in steps} for c in CLOCKS}
    phases = PhaseTimers(device)
    rng = random.Random(seed)
    order = list(steps)
    with contextlib.ExitStack() as stack:
        if split:
            for method, part in STEP_PHASES.items():
                stack.enter_context(phases.wrap(TTAAdapter, method, part))
        for _ in range(num_steps):
            rng.shuffle(order)
            for name in order:
                gc.collect()
                before = phases.snapshot()
                start = stamp(device)
                steps[name].step()
                total = elapsed(start, stamp(device))
                after = phases.snapshot()
                for clock in CLOCKS:
                    times[clock][name].append(total[clock])
                    if split:
                        parts = {part: after[clock][part] - before[clock][part]
                                 for part in STEP_PHASES.values()}
                        parts['loss + other'] = total[clock] - sum(parts.values())
                        times['split'][clock][name].append(parts)
    set_tf32(False)
    return times
