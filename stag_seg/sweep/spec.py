"""Sweep specs: an mmengine config naming methods, regimes, a grid and seeds, expanded into runs.

A spec (see ``configs/sweeps/demo_smoke.py``) has these keys; relative paths are taken from the
current directory, as ``tools/test_tta.py`` would take them::

    methods = dict(                       # required: name -> base config (+ checkpoint,
        tent=dict(config='configs/demo/segformer_mini_demo-acdc_tent.py',   # + options of
                  checkpoint='checkpoints/segformer_mini_minicity.pth'),    # this method)
        stag=dict(config='configs/demo/segformer_mini_demo-acdc_tent-stag.py',
                  checkpoint='checkpoints/segformer_mini_minicity.pth',
                  cfg_options=dict(stag_weight=1.0)))
    baseline = 'tent'                     # optional: every other method is paired with it
                                          # (a method's own baseline='...' overrides it)
    options = dict(lr='test_cfg.optimizer.lr', order='test_cfg.order',
                   rounds='test_cfg.num_rounds')   # optional: short names of cfg keys
    cfg_options = dict(rounds=1)          # optional: for every run
    regimes = dict(seq=dict(), mixed=dict(order='mixed'))  # optional: named option bundles
    grid = dict(lr=[1e-4, 1e-3])          # optional: every combination of these values
    seeds = [0, 1]                        # required: stream seeds (randomness.seed)
    resources = dict(num_cpus=1, num_gpus=0)  # optional: per run (Ray)
    env = dict()                          # optional: environment variables of every run

Top-level names starting with ``_`` are helper variables. Keys of ``cfg_options``, ``regimes``
bundles and ``grid`` are short names from ``options`` or dotted cfg keys; dict values become
dotted keys. One run per (seed, regime, grid point, method), named
``<method>__<regime>__seed<S>`` where the regime label joins the regime name and the grid point
(``mixed_lr=0.001``; ``default`` without either); a method is paired with the baseline run of
the same regime label and seed.
"""
from __future__ import annotations

import itertools
import os.path as osp
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mmengine.config import Config

from stag_seg.resources import find_shipped
from stag_seg.sweep.cli_options import encode_value, flatten

SEED_KEY = 'randomness.seed'
SPEC_KEYS = ('methods', 'baseline', 'options', 'cfg_options', 'regimes', 'grid', 'seeds',
             'resources', 'env')
RESOURCE_KEYS = ('num_cpus', 'num_gpus', 'memory', 'resources')
NAME_PATTERN = re.compile(r'[A-Za-z0-9][A-Za-z0-9._+-]*')
LABEL_PART = re.compile(r'[A-Za-z0-9._+-]+')


class SweepSpecError(ValueError):
    """A sweep spec that cannot be expanded; the message names the spec file and key."""


@dataclass(frozen=True)
class Run:
    """One ``tools/test_tta.py`` run of a sweep.

    ``cfg_options`` maps dotted cfg keys to values (the seed included), in command-line order.
    """
    name: str
    method: str
    regime: str
    seed: int
    config: str
    checkpoint: str | None
    cfg_options: dict[str, Any] = field(hash=False)

    def identity(self) -> dict:
        """What makes a run dir's results this run's: compared before a run dir is reused."""
        return {'method': self.method, 'regime': self.regime, 'seed': self.seed,
                'config': self.config, 'checkpoint': self.checkpoint,
                'cfg_options': [f'{k}={encode_value(v)}' for k, v in self.cfg_options.items()]}


@dataclass(frozen=True)
class SweepSpec:
    """A validated spec: its runs in launch order, pairing and resources."""
    path: str
    runs: list[Run]
    baseline: str | None
    resources: dict[str, Any]
    env: dict[str, str]
    #: each method's baseline (a method's own ``baseline`` key, else the spec's), None for
    #: the baselines themselves and when there is none
    baselines: dict[str, str | None] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return osp.splitext(osp.basename(self.path))[0]

    def baseline_run(self, run: Run) -> Run | None:
        """The baseline's run with ``run``'s regime and seed (None for a baseline itself)."""
        baseline = self.baselines.get(run.method)
        if baseline is None:
            return None
        name = run_name(baseline, run.regime, run.seed)
        return next(r for r in self.runs if r.name == name)


def run_name(method: str, regime: str, seed: int) -> str:
    return f'{method}__{regime}__seed{seed}'


class _Checker:
    """Raises SweepSpecError naming the spec file and key."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> None:
        raise SweepSpecError(f'{self.path}: {key}: {problem}')

    def dict_of(self, value: Any, key: str, allow_empty: bool = True) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f'expected a dict, got {type(value).__name__} {value!r}')
        if not allow_empty and not value:
            self.fail(key, 'expected a non-empty dict')
        return dict(value)

    def name(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value) or '__' in value:
            self.fail(key, f'{value!r} is not a usable name (letters, digits, . _ + -; '
                      'no "__"; it becomes part of run directory names)')
        return value

    def file(self, value: Any, key: str) -> str:
        found = find_shipped(value) if isinstance(value, str) else None
        if found is None:
            self.fail(key, f'file not found: {value!r} (relative paths are taken from the '
                      'current directory, then from the shipped configs/ and checkpoints/)')
        return osp.abspath(found)


def _resolve(check: _Checker, aliases: dict[str, str], options: dict, key: str) -> dict:
    """Short names -> dotted cfg keys; dict values flattened; every value encodable."""
    resolved: dict[str, Any] = {}
    for name, value in check.dict_of(options, key).items():
        if name in aliases:
            cfg_key = aliases[name]
        elif isinstance(name, str) and '.' in name:
            cfg_key = name
        else:
            check.fail(f'{key}.{name}', f'unknown option {name!r}: not in options '
                       f'({sorted(aliases)}) and not a dotted cfg key (a top-level '
                       f'key is declared in options, e.g. options=dict({name}={name!r}))')
        try:
            flat = flatten({cfg_key: value})
            for flat_value in flat.values():
                encode_value(flat_value)
        except ValueError as e:
            check.fail(f'{key}.{name}', str(e))
        for flat_key in flat:
            if flat_key == SEED_KEY or flat_key.startswith('randomness.seed.') \
                    or flat_key == 'randomness':
                check.fail(f'{key}.{name}', f'{SEED_KEY} is set by seeds=, not by options')
        resolved.update(flat)
    return resolved


def _label(check: _Checker, value: Any, key: str) -> str:
    """A grid value as it appears in regime labels and run names: 0.001, mixed, 64x32."""
    if isinstance(value, (list, tuple)):
        text = 'x'.join(_label(check, v, key) for v in value)
    elif isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (bool, int, str)) or value is None:
        text = str(value)
    else:
        check.fail(key, f'grid values must be scalars or lists of scalars, got {value!r} '
                   '(put option bundles in regimes=)')
    if not LABEL_PART.fullmatch(text):
        check.fail(key, f'grid value {value!r} cannot be part of a run directory name')
    return text


def _grid_points(check: _Checker, aliases: dict[str, str], grid: dict
                 ) -> list[tuple[str, dict[str, Any]]]:
    """(label, cfg options) of every grid point, in row-major order of the grid's keys."""
    axes = []
    for name, values in check.dict_of(grid, 'grid').items():
        key = f'grid.{name}'
        if not isinstance(values, (list, tuple)) or not values:
            check.fail(key, f'expected a non-empty list of values, got {values!r}')
        short = name.rsplit('.', 1)[-1]
        axis = []
        for value in values:
            options = _resolve(check, aliases, {name: value}, 'grid')
            axis.append((f'{short}={_label(check, value, key)}', options))
        labels = [label for label, _ in axis]
        if len(set(labels)) != len(labels):
            check.fail(key, f'values repeat: {labels}')
        axes.append(axis)
    points = []
    for combo in itertools.product(*axes):
        options: dict[str, Any] = {}
        for _, opts in combo:
            options.update(opts)
        points.append(('_'.join(label for label, _ in combo), options))
    return points


def _seeds(check: _Checker, seeds: Any) -> list[int]:
    if not isinstance(seeds, (list, tuple)) or not seeds:
        check.fail('seeds', f'expected a non-empty list of ints, got {seeds!r}')
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        check.fail('seeds', f'expected ints, got {list(seeds)!r}')
    if len(set(seeds)) != len(seeds):
        check.fail('seeds', f'seeds repeat: {list(seeds)}')
    return list(seeds)


def _methods(check: _Checker, aliases: dict[str, str], methods: Any
             ) -> dict[str, tuple[str, str | None, dict]]:
    """name -> (config, checkpoint, the method's own cfg options)."""
    out = {}
    for name, base in check.dict_of(methods, 'methods', allow_empty=False).items():
        key = f'methods.{name}'
        check.name(name, key)
        base = check.dict_of(base, key)
        unknown = sorted(set(base) - {'config', 'checkpoint', 'cfg_options', 'baseline'})
        if unknown:
            check.fail(f'{key}.{unknown[0]}',
                       'unknown key (expected config, checkpoint, cfg_options, baseline)')
        if 'config' not in base:
            check.fail(f'{key}.config', 'missing (the method\'s test_tta.py config)')
        config = check.file(base['config'], f'{key}.config')
        ckpt = base.get('checkpoint')
        options = _resolve(check, aliases, base.get('cfg_options', {}), f'{key}.cfg_options')
        out[name] = (config, None if ckpt is None else check.file(ckpt, f'{key}.checkpoint'),
                     options)
    return out


def _resources(check: _Checker, resources: Any) -> dict[str, Any]:
    resources = check.dict_of(resources, 'resources')
    for key, value in resources.items():
        if key not in RESOURCE_KEYS:
            check.fail(f'resources.{key}', f'unknown key (expected one of {RESOURCE_KEYS})')
        if key != 'resources' and (not isinstance(value, (int, float)) or value < 0):
            check.fail(f'resources.{key}', f'expected a number >= 0, got {value!r}')
    return {'num_cpus': 1, 'num_gpus': 0, **resources}


def load_spec(path: str) -> SweepSpec:
    """Read, validate and expand a sweep spec file."""
    path = find_shipped(path) or path      # e.g. stag_seg::sweeps/demo_smoke.py
    if not osp.isfile(path):
        raise SweepSpecError(f'{path}: sweep spec file not found')
    check = _Checker(path)
    try:
        raw = Config.fromfile(path).to_dict()
    except SyntaxError as e:
        raise SweepSpecError(f'{path}:{e.lineno}: not valid Python ({e.msg})') from None
    except Exception as e:             # mmengine's errors of a base file, an import, ...
        raise SweepSpecError(f'{path}: cannot be read as a config ({type(e).__name__}: {e})'
                             ) from None
    raw = {k: v for k, v in raw.items() if not k.startswith('_')}   # helper variables
    for key in raw:
        if key not in SPEC_KEYS:
            check.fail(key, f'unknown key (expected one of {", ".join(SPEC_KEYS)}; helper '
                       'variables start with _)')
    for key in ('methods', 'seeds'):
        if key not in raw:
            check.fail(key, 'missing (required)')
    aliases = check.dict_of(raw.get('options', {}), 'options')
    for name, cfg_key in aliases.items():
        check.name(name, f'options.{name}')
        if not isinstance(cfg_key, str) or not cfg_key:
            check.fail(f'options.{name}', f'expected a cfg key string, got {cfg_key!r}')
    methods = _methods(check, aliases, raw['methods'])
    common = _resolve(check, aliases, raw.get('cfg_options', {}), 'cfg_options')
    regimes = check.dict_of(raw.get('regimes', {}), 'regimes')
    bundles = [(check.name(name, f'regimes.{name}'),
                _resolve(check, aliases, bundle, f'regimes.{name}'))
               for name, bundle in regimes.items()] or [('', {})]
    points = _grid_points(check, aliases, raw.get('grid', {}))
    for name, bundle in bundles:
        for _, options in points:
            both = sorted(set(bundle) & set(options))
            if both:
                check.fail(f'regimes.{name}', f'sets {both[0]}, which the grid also sets')
    seeds = _seeds(check, raw['seeds'])
    baseline = raw.get('baseline')
    if baseline is not None and baseline not in methods:
        check.fail('baseline', f'{baseline!r} is not one of the methods {sorted(methods)}')
    own = {name: base.get('baseline') for name, base in raw['methods'].items()}
    for name, base in own.items():
        if base is not None and (base not in methods or base == name):
            check.fail(f'methods.{name}.baseline', f'{base!r} is not another of the methods '
                       f'{sorted(methods)}')
    targets = {b for b in own.values() if b} | ({baseline} if baseline else set())
    baselines = {name: None if name in targets else (own[name] or baseline)
                 for name in methods}
    env = check.dict_of(raw.get('env', {}), 'env')
    for key, value in env.items():
        if not isinstance(value, str):
            check.fail(f'env.{key}', f'expected a string, got {value!r}')

    runs = []
    for seed in seeds:
        for regime_name, bundle in bundles:
            for point_label, point in points:
                regime = '_'.join(p for p in (regime_name, point_label) if p) or 'default'
                options = {**common, **bundle, **point, SEED_KEY: seed}
                for method, (config, checkpoint, own) in methods.items():
                    runs.append(Run(run_name(method, regime, seed), method, regime, seed,
                                    config, checkpoint, {**own, **options}))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        check.fail('regimes', f'two runs would share the name {dup!r}')
    return SweepSpec(osp.abspath(path), runs, baseline, _resources(check, raw.get(
        'resources', {})), env, baselines)


def methods_and_regimes(runs: Sequence[Run]) -> tuple[list[str], list[str]]:
    """Methods and regime labels in order of first appearance."""
    methods = list(dict.fromkeys(r.method for r in runs))
    regimes = list(dict.fromkeys(r.regime for r in runs))
    return methods, regimes
