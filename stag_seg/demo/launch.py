"""Runs one method's config over the demo stream through the engine (load_tta_config, run_tta)."""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

from mmengine.config import Config

from stag_seg.datasets.acdc import ACDC_CONDITIONS
from stag_seg.demo.synth import acdc_subset, cached_params
from stag_seg.engine.launch import load_tta_config, run_tta
from stag_seg.reports import load_records
from stag_seg.resources import CLONE_DIR, cache_dir, in_clone, shipped_path

#: every demo method (name -> config); '+stag' adds the STAG plug-in to the method
DEMO_CONFIGS = {name: f"configs/demo/segformer_mini_demo-acdc_{name.replace('+', '-')}.py"
                for name in ('source', 'bn-adapt', 'tent', 'tent+stag', 'tent-pl', 'eata',
                             'eata+stag', 'sar', 'sar+stag', 'cotta', 'cotta+stag')}
#: what the demo runs unless --methods says otherwise
DEFAULT_METHODS = ('source', 'tent', 'tent+stag')
#: the demo's horizon (rounds over the stream) unless --rounds says otherwise
DEMO_ROUNDS = 10
#: cfg options with this prefix configure the STAG plug-in: applied to '+stag' methods only
PLUGIN_OPTIONS = 'custom_hooks.'


def repo_path(path: str) -> str:
    """``path`` itself if absolute, else relative to the clone's root (outside a clone: to
    the current directory)."""
    if osp.isabs(path):
        return path
    return osp.join(CLONE_DIR, path) if in_clone() else osp.abspath(path)


def shipped_file(path: str) -> str:
    """A shipped file named clone-relative (a demo config, the demo checkpoint): the clone's,
    or the installed package's copy; an absolute path as it is."""
    return path if osp.isabs(path) else shipped_path(path)


def default_data_root() -> str:
    """Where the demo's data is rendered and cached: data/demo in a clone, else the user
    cache (``<cache>/demo``, see :func:`stag_seg.resources.cache_dir`)."""
    return repo_path('data/demo') if in_clone() else osp.join(cache_dir(), 'demo')


def method_dir(work_dir: str, name: str) -> str:
    """Where method ``name``'s run writes its reports (``tent+stag`` -> ``tent_stag``)."""
    return osp.join(work_dir, name.replace('+', '_'))


def predictions_dir(work_dir: str, name: str) -> str:
    """The engine's ``out_dir`` for method ``name``: ``round_<r>/<domain>/...`` below it."""
    return osp.join(method_dir(work_dir, name), 'predictions')


def stream_subset(data_root: str, images_per_condition: int | None) -> dict[str, list[int]]:
    """``{condition: dataset indices}`` that keep the first ``images_per_condition`` rendered
    images of each condition; empty when that is every cached image (or None is asked)."""
    if images_per_condition is None:
        return {}
    params = cached_params(data_root)
    if params is None:
        raise FileNotFoundError(f'{osp.join(data_root, "MANIFEST.json")}: no demo data there '
                                '(run stag-make-demo-data or stag-demo first)')
    cached = int(params['num_per_condition'])
    if not 1 <= images_per_condition <= cached:
        raise ValueError(f'images_per_condition={images_per_condition}: {data_root} holds '
                         f'{cached} images per condition; expected 1..{cached} (render more '
                         'with stag-make-demo-data --num-per-condition)')
    if images_per_condition == cached:
        return {}
    return {c: acdc_subset(c, cached, images_per_condition) for c in ACDC_CONDITIONS}


#: config keys the demo sets from its own flags (an override would silently win over them)
DEMO_FLAG_KEYS = {'test_cfg.num_rounds': '--rounds', 'test_cfg.domains': '--images',
                  'test_dataloader.dataset.data_root': '--data-root',
                  'test_cfg.forgetting.dataset.data_root': '--data-root',
                  'test_cfg.method.fisher_dataset.data_root': '--data-root'}


def check_demo_options(methods: Sequence[str], cfg_options: dict | None) -> None:
    """Raise ValueError naming ``--cfg-options`` if an override would stop a method's run (the
    engine's config check, before any data is rendered), sets what one of the demo's flags
    sets (:data:`DEMO_FLAG_KEYS`) or a top-level key that none of the methods' configs has (a
    typo)."""
    for key in cfg_options or {}:
        for prefix, flag in DEMO_FLAG_KEYS.items():
            if key == prefix or key.startswith(prefix + '.'):
                raise ValueError(f'--cfg-options: {key} is set by the demo from {flag}; use '
                                 f'{flag}')
    tops: set[str] = set()
    for name in methods:
        tops |= set(Config.fromfile(shipped_file(DEMO_CONFIGS[name])).keys())
        options = {k: v for k, v in (cfg_options or {}).items()
                   if not k.startswith(PLUGIN_OPTIONS) or name.endswith('+stag')}
        try:
            load_tta_config(shipped_file(DEMO_CONFIGS[name]), 'work_dirs/demo', options)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f'--cfg-options: {e}') from None
    for key in cfg_options or {}:
        top = key.split('.', 1)[0]
        if top not in tops:
            raise ValueError(f'--cfg-options: {key}: no config has a key {top!r}')


def run_method(name: str, data_root: str, work_dir: str, checkpoint: str, rounds: int,
               cfg_options: dict | None = None,
               images_per_condition: int | None = None) -> list[dict]:
    """Runs method ``name`` (a key of :data:`DEMO_CONFIGS`) over the demo stream; returns its
    records. ``images_per_condition`` takes the first N rendered images of each condition
    (None: all on disk); ``cfg_options`` override the config last (``custom_hooks.*`` ones
    only for methods with the plug-in, whose configs have the hook)."""
    if name not in DEMO_CONFIGS:
        raise ValueError(f'unknown demo method {name!r}; expected one of {list(DEMO_CONFIGS)}')
    data_root = repo_path(data_root)
    options = {
        'test_dataloader.dataset.data_root': osp.join(data_root, 'acdc'),
        'test_cfg.forgetting.dataset.data_root': osp.join(data_root, 'cityscapes'),
        'test_cfg.num_rounds': rounds,
        'log_level': 'WARNING',
    }
    if name.startswith('eata'):            # its Fisher information reads mini-Cityscapes train
        options['test_cfg.method.fisher_dataset.data_root'] = osp.join(data_root, 'cityscapes')
    # the demo configs' domains are ACDC_CONDITIONS in order (configs/_base_/datasets)
    subset = stream_subset(data_root, images_per_condition)
    for i, condition in enumerate(ACDC_CONDITIONS):
        if condition in subset:
            options[f'test_cfg.domains.{i}.dataset.indices'] = subset[condition]
    options.update({k: v for k, v in (cfg_options or {}).items()
                    if not k.startswith(PLUGIN_OPTIONS) or name.endswith('+stag')})
    run_dir = method_dir(work_dir, name)
    run = load_tta_config(shipped_file(DEMO_CONFIGS[name]), run_dir, options,
                          out_dir=predictions_dir(work_dir, name))
    run_tta(run, shipped_file(checkpoint), verbose=False)
    return load_records(run_dir)
