"""Where each benchmarked method's options come from: the shipped stream configs.

A method's constructor arguments (``test_cfg.method``), a method + STAG's hook and the
stream pipeline that makes the method's batch (CoTTA's test-time-augmented views) are read
from the stream config a user would run, ``<model>_cs2acdc_<name>.py``: the sibling of the
benchmarked config (its ``_tent.py`` ending replaced), else the shipped SegFormer-B5 one (the
method section of a stream config does not depend on the model), or a config given for the
name. The model, optimizer and classifier are the benchmarked config's.
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Mapping
from dataclasses import dataclass

from mmengine.config import Config

from stag_seg.benchmark.paths import REPO, resolve_config

#: the benchmarked configs end with this (the TENT stream config of a model)
TENT_SUFFIX = '_tent.py'
#: the shipped stream config of each method name (the fallback)
SHIPPED = osp.join('configs', 'segformer', 'segformer_mit-b5_cs2acdc_{}.py')
#: the suffix of a method + STAG config's name
STAG_SUFFIX = '-stag'


@dataclass
class MethodSpec:
    """One stream config's method: ``test_cfg.method``, the STAGHook entries of its
    ``custom_hooks``, the file they came from (whose pipeline makes the batch), its model's
    ``test_cfg`` where it slides (CoTTA's protocol; None: the benchmarked model's) and whether
    its pipeline makes views from the loaded image (``MultiScaleFlipViews``)."""

    method: dict
    stag_hooks: list[dict]
    config: str
    model_test_cfg: dict | None = None
    views_from_original: bool = False


def candidates(config: str, name: str) -> list[str]:
    """The stream configs tried for ``name`` (e.g. 'eata', 'cotta-stag'), in order: the
    sibling of ``config`` if it ends with ``_tent.py``, then the shipped SegFormer-B5 one."""
    out = []
    if config.endswith(TENT_SUFFIX):
        out.append(config[:-len(TENT_SUFFIX)] + f'_{name}.py')
    out.append(osp.join(REPO, SHIPPED.format(name)))
    return out


def find_stream_config(config: str, name: str,
                       overrides: Mapping[str, str] | None = None) -> str | None:
    """``overrides[name]`` if given, else the first existing of :func:`candidates`; None
    if there is none."""
    if overrides and name in overrides:
        return resolve_config(overrides[name])
    for path in candidates(resolve_config(config), name):
        if osp.isfile(path):
            return path
    return None


def read_spec(path: str, method: str) -> MethodSpec:
    """The method and STAG hooks of the stream config ``path``, which must run ``method``."""
    cfg = Config.fromfile(path)
    spec = (cfg.get('test_cfg') or {}).get('method')
    if not isinstance(spec, dict) or spec.get('type') != method:
        raise ValueError(f'{path}: test_cfg.method must be a dict with type={method!r} to '
                         f'benchmark {method!r}, got {spec!r}')
    hooks = [dict(h) for h in cfg.get('custom_hooks') or [] if h.get('type') == 'STAGHook']
    test_cfg = (cfg.get('model') or {}).get('test_cfg') or {}
    slide = dict(test_cfg) if test_cfg.get('mode') == 'slide' else None
    pipeline = cfg.test_dataloader.dataset.pipeline
    from_original = any(t['type'] == 'MultiScaleFlipViews' for t in pipeline)
    return MethodSpec(dict(spec), hooks, path, slide, from_original)


def method_spec(config: str, method: str,
                overrides: Mapping[str, str] | None = None) -> MethodSpec:
    """The stream config of ``method`` for the benchmarked ``config``; no config is an error
    naming the files tried."""
    path = find_stream_config(config, method, overrides)
    if path is None:
        tried = ', '.join(candidates(resolve_config(config), method))
        raise ValueError(f'--methods: no stream config for {method!r} (tried {tried}); add one '
                         f'or give it with --method-configs {method}=CONFIG')
    return read_spec(path, method)


def stag_spec(config: str, method: str,
              overrides: Mapping[str, str] | None = None) -> MethodSpec | None:
    """The ``<method>-stag`` stream config's method and STAG hooks; None if none is shipped
    (or given). A config without a STAGHook entry is an error naming it."""
    path = find_stream_config(config, method + STAG_SUFFIX, overrides)
    if path is None:
        return None
    spec = read_spec(path, method)
    if not spec.stag_hooks:
        raise ValueError(f'{path}: a {method + STAG_SUFFIX} config needs a STAGHook in '
                         'custom_hooks')
    return spec
