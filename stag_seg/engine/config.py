"""The stream's config: loop defaults, checks of the whole config before anything runs, and
the fingerprint that ties a resume state to the config that wrote it."""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import torch
from mmengine.config import Config
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS
from mmseg.registry import HOOKS, METRICS

from stag_seg.engine.speed import check_speed_options
from stag_seg.engine.stream import ORDERS, Domain
from stag_seg.methods.base import TTAMethod
from stag_seg.options import check_choice, check_int, check_number
from stag_seg.plugins.base import TTAPlugin, check_plugins_join
from stag_seg.registry import TTA_METHODS
from stag_seg.step.optim import AMP_DTYPES, DEFAULT_OPTIMIZER

RESETS = ('never', 'domain', 'round')
#: test_cfg.optimizer_reset: one optimizer for the stream, or a fresh one per domain visit
OPTIMIZER_RESETS = ('never', 'domain')
#: every test_cfg option of ContinualTTALoop besides dataloader/evaluator/domains
LOOP_DEFAULTS = dict(
    num_rounds=10,
    order='sequential',                 # 'mixed' | 'dirichlet' (label shift in each domain)
    dirichlet=dict(gamma=0.1, num_slots=None),  # order='dirichlet': concentration, slots
    subset=None,                        # N: a seeded subset of N images per adapted domain
    shuffle=False,                      # seeded order of each domain's images, per round
    method=dict(type='tent'),           # a TTA_METHODS config
    optimizer=DEFAULT_OPTIMIZER,
    optim_wrapper=None,                 # mmengine wrapper options: type, clip_grad, ...
    amp=None,                           # None | 'bf16' | 'fp16'
    tf32=False,                         # TF32 matmuls on CUDA (engine/speed.py)
    channels_last=False,                # 4-D weights channels-last
    compile=False,                      # torch.compile the backbone (True or its kwargs)
    fused_attention=False,              # MiT attention as one SDPA kernel (same weights)
    cuda_graph=False,                   # capture the whole step as a CUDA graph (CUDA only)
    fast=False,                         # the fast mode: the three above + bf16 on CUDA
    classifier='decode_head.conv_seg',  # the module whose logits the method and plug-ins use
    forgetting=None,                    # dict(name=, dataset=, every=1): scored, never adapted
    reset='never',                      # 'domain' | 'round': restore the initial state
    optimizer_reset='never',            # 'domain': a fresh optimizer at each domain visit
    checkpoint=None,                    # the source model (tools/test_tta.py CHECKPOINT)
    random_init=False,                  # run without a checkpoint, on purpose
    method_name=None,                   # name in the reports (default: method+plug-ins)
    out_dir=None,                       # save scored predictions here
    show_dir=None,                      # save colourised predictions beside the inputs here
    show_interval=1,                    # show_dir: every k-th scored image of each stage
    resume=False,
    save_state=True,
    progress=True,
)
#: options that change how a run is watched or where extras go, not its results
RUNTIME_OPTIONS = ('resume', 'out_dir', 'show_dir', 'show_interval', 'progress',
                   'save_state')
LOADER_RUNTIME = ('num_workers', 'persistent_workers', 'pin_memory', 'prefetch_factor')


def check_loop_options(domains: list, require_checkpoint: bool = True, **options) -> dict:
    """``options`` completed with :data:`LOOP_DEFAULTS` and checked; returns them.

    Unknown options, bad values, duplicate domain names (the forgetting set's included) and,
    if ``require_checkpoint``, a missing checkpoint without ``random_init`` are errors
    naming the option.
    """
    unknown = sorted(set(options) - set(LOOP_DEFAULTS) - {'type'})
    if unknown:
        hint = (' (the seed of the stream and of every RNG is randomness.seed)'
                if 'seed' in unknown else '')
        raise ValueError(f'test_cfg: unknown option(s) {unknown}{hint}; valid options: '
                         f'{sorted(LOOP_DEFAULTS)}')
    opt = {**copy.deepcopy(LOOP_DEFAULTS), **{k: v for k, v in options.items() if k != 'type'}}
    check_int('test_cfg', 'num_rounds', opt['num_rounds'], low=1)
    check_int('test_cfg', 'show_interval', opt['show_interval'], low=1)
    if opt['show_interval'] != 1 and not opt['show_dir']:
        raise ValueError(f"test_cfg.show_interval={opt['show_interval']} (--show-interval) "
                         'thins the images saved under test_cfg.show_dir (--show-dir), which '
                         'is not set')
    check_choice('test_cfg', 'order', opt['order'], ORDERS)
    check_choice('test_cfg', 'reset', opt['reset'], RESETS)
    check_choice('test_cfg', 'optimizer_reset', opt['optimizer_reset'], OPTIMIZER_RESETS)
    check_choice('test_cfg', 'amp', opt['amp'], (None, *AMP_DTYPES))
    check_choice('test_cfg', 'shuffle', opt['shuffle'], (True, False))
    if opt['subset'] is not None:
        check_int('test_cfg', 'subset', opt['subset'], low=1)
    unknown = sorted(set(opt['dirichlet']) - {'gamma', 'num_slots'})
    if unknown:
        raise ValueError(f'test_cfg.dirichlet: unknown option(s) {unknown}')
    check_number('test_cfg.dirichlet', 'gamma', opt['dirichlet'].get('gamma', 0.1), low=0,
                 low_open=True)
    if opt['dirichlet'].get('num_slots') is not None:
        check_int('test_cfg.dirichlet', 'num_slots', opt['dirichlet']['num_slots'], low=2)
    if opt['forgetting'] is not None:
        unknown = sorted(set(opt['forgetting']) - {'name', 'dataset', 'every'})
        if unknown:
            raise ValueError(f'test_cfg.forgetting: unknown option(s) {unknown} (name, '
                             'dataset, every)')
        check_int('test_cfg.forgetting', 'every', opt['forgetting'].get('every', 1), low=1)
    check_speed_options(opt)
    if not domains:
        raise ValueError('test_cfg.domains is empty: the stream needs at least one domain')
    names = [d.get('name') for d in domains]
    if opt['forgetting'] is not None:
        names.append(opt['forgetting'].get('name'))
    if None in names:
        raise ValueError('test_cfg: every domain (and the forgetting set) needs a name')
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f'test_cfg: duplicate domain name(s) {duplicates} (the forgetting set '
                         'needs a name of its own)')
    opt['method'] = dict(opt['method'])
    if (opt['optim_wrapper'] or {}).get('accumulative_counts', 1) != 1:
        raise ValueError('test_cfg.optim_wrapper.accumulative_counts: the online protocol '
                         'updates on every image (predict, then adapt); use a larger batch '
                         'instead of gradient accumulation')
    if opt['order'] == 'mixed' and opt['reset'] == 'domain':
        raise ValueError("test_cfg.reset='domain' with order='mixed': a mixed round has no "
                         "domain boundaries; use reset='round'")
    if opt['order'] == 'mixed' and opt['optimizer_reset'] == 'domain':
        raise ValueError("test_cfg.optimizer_reset='domain' with order='mixed': a mixed round "
                         "has no domain boundaries; use optimizer_reset='never'")
    if opt['order'] == 'dirichlet' and opt['shuffle']:
        raise ValueError("test_cfg.shuffle=True with order='dirichlet': the Dirichlet draw "
                         'already orders each domain; drop one of the two')
    if require_checkpoint:
        check_source(opt)
    return opt


def check_source(opt: dict) -> None:
    """The source model is a checkpoint, or random initialisation on purpose: one of the two."""
    if opt['checkpoint'] is None and not opt['random_init']:
        raise ValueError('no checkpoint: pass CHECKPOINT to tools/test_tta.py (or set '
                         'test_cfg.checkpoint); to run from random initialisation on purpose, '
                         'pass --random-init (test_cfg.random_init=True)')
    if opt['checkpoint'] is not None and opt['random_init']:
        raise ValueError(f"test_cfg.checkpoint={opt['checkpoint']} and test_cfg.random_init"
                         '=True (--random-init) exclude each other: the source model is the '
                         'checkpoint or random initialisation; drop one of the two')


def plugin_hook_cfgs(cfg: Config) -> list[tuple[int, dict, type]]:
    """(index, config, class) of every custom hook that is a TTAPlugin."""
    out = []
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        hook_type = hook.get('type') if isinstance(hook, dict) else None
        cls = HOOKS.get(hook_type) if isinstance(hook_type, str) else hook_type
        if cls is None:
            raise ValueError(f'custom_hooks.{i}: unknown hook type {hook_type!r}')
        if inspect.isclass(cls) and issubclass(cls, TTAPlugin):
            out.append((i, dict(hook), cls))
    return out


def _build(owner: str, cls: type, kwargs: dict):
    """``cls(**kwargs)``; an unknown keyword names the owner, the key and the valid ones."""
    valid = [p for p in inspect.signature(cls).parameters if p not in ('self', 'args',
                                                                        'kwargs')]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown and not any(p.kind == p.VAR_KEYWORD
                           for p in inspect.signature(cls).parameters.values()):
        hint = (' (the classifier is set once for the method and every plug-in: '
                'test_cfg.classifier)' if 'classifier' in unknown else '')
        raise ValueError(f'{owner}: unknown option(s) {unknown}{hint}; valid options: {valid}')
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        message = str(e).removeprefix(f'{cls.__name__}: ')
        raise ValueError(f'{owner}: {message}') from e


@dataclass
class TTASetup:
    """What :func:`validate_tta_config` hands on: the loop's options completed with
    :data:`LOOP_DEFAULTS` and checked, the method and the plug-ins (in ``custom_hooks``
    order), each built once; ``domains``: the stream's domains once the front door's start
    check has built them (the loop builds them otherwise)."""

    options: dict
    method: TTAMethod
    plugins: list[TTAPlugin]
    domains: list[Domain] | None = None


def validate_tta_config(cfg: Config, require_checkpoint: bool = True) -> TTASetup:
    """Checks the whole stream config before the Runner touches the work dir, and builds the
    method and the plug-ins: the loop's options (and, if ``require_checkpoint``, that there
    is a checkpoint or ``random_init``), the method, the optimizer and its wrapper, the
    evaluator, every plug-in's options, and that plug-ins have a gradient step to join.
    Every error is one line naming the option."""
    loop = dict(cfg.test_cfg)
    loop.pop('type', None)
    domains = loop.pop('domains', None) or []
    opt = check_loop_options(domains=list(domains), require_checkpoint=require_checkpoint,
                             **loop)
    method_cfg = dict(opt['method'])
    method_type = method_cfg.pop('type', None)
    method_cls = TTA_METHODS.get(method_type) if isinstance(method_type, str) else None
    if method_cls is None:
        raise ValueError(f'test_cfg.method: unknown method {method_type!r}; registered: '
                         f'{sorted(TTA_METHODS.module_dict)}')
    method = _build(f'test_cfg.method ({method_type})', method_cls, method_cfg)
    optimizer = dict(opt['optimizer'])
    if OPTIMIZERS.get(optimizer.get('type')) is None:
        raise ValueError(f'test_cfg.optimizer: unknown optimizer {optimizer.get("type")!r}')
    try:
        OPTIMIZERS.build({**optimizer, 'params': [torch.nn.Parameter(torch.zeros(1))]})
    except Exception as e:
        raise ValueError(f'test_cfg.optimizer: {e}') from e
    wrapper_type = (opt['optim_wrapper'] or {}).get('type', 'OptimWrapper')
    if OPTIM_WRAPPERS.get(wrapper_type) is None:
        raise ValueError(f'test_cfg.optim_wrapper: unknown type {wrapper_type!r}')
    evaluators = cfg.get('test_evaluator')
    for metric in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
        if not isinstance(metric, dict) or METRICS.get(metric.get('type')) is None:
            raise ValueError(f'test_evaluator: unknown metric {metric!r}')
    plugins = [_build(f'custom_hooks.{i} ({cls.__name__})', cls,
                      {k: v for k, v in hook.items() if k not in ('type', 'priority')})
               for i, hook, cls in plugin_hook_cfgs(cfg)]
    check_plugins_join(plugins, repr(method_type), method.updates, owner='custom_hooks: ')
    return TTASetup(opt, method, plugins)


def flatten(cfg, prefix: str = '') -> dict[str, str]:
    """Nested dicts/lists as ``{'a.b.0.c': repr(value)}`` (the fingerprint's form)."""
    if isinstance(cfg, dict):
        items = [(f'{prefix}{k}.', v) for k, v in cfg.items()]
    elif isinstance(cfg, (list, tuple)):
        items = [(f'{prefix}{i}.', v) for i, v in enumerate(cfg)]
    else:
        return {prefix[:-1]: repr(cfg)}
    out: dict[str, str] = {}
    for key, value in items:
        out.update(flatten(value, key))
    return out


def run_fingerprint(cfg: Config, seed: int) -> dict[str, str]:
    """What defines a run's results, flattened: model, stream, method, optimizer, plug-ins,
    evaluator, seed and checkpoint (not how it is watched: progress, out_dir, workers)."""
    loop = {k: v for k, v in dict(cfg.test_cfg).items() if k not in RUNTIME_OPTIONS}
    loader = {k: v for k, v in dict(cfg.test_dataloader).items() if k not in LOADER_RUNTIME}
    plugins = [hook for _, hook, _ in plugin_hook_cfgs(cfg)]
    return flatten({'model': cfg.model.to_dict() if hasattr(cfg.model, 'to_dict')
                    else cfg.model, 'test_cfg': loop, 'test_dataloader': loader,
                    'test_evaluator': cfg.get('test_evaluator'), 'plugins': plugins,
                    'seed': seed})
