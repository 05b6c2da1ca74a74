"""The demo trees under a root, rendered once and reused while MANIFEST.json matches."""
from __future__ import annotations

import inspect
import json
import os
import os.path as osp
import shutil
from dataclasses import dataclass

from stag_seg.demo.synth.writer import plan_jobs, run_jobs

GENERATOR_VERSION = 2  # bump whenever rendering changes: cached trees regenerate
MANIFEST = 'MANIFEST.json'
_GENERATOR = {'generator': 'stag_seg.demo', 'version': GENERATOR_VERSION}  # in the manifest
MARKER = '.stag_seg_demo'  # marks a root whose cityscapes/ and acdc/ this module may replace
DEFAULT_PER_CONDITION = 50  # ACDC train images rendered per condition unless more are asked


@dataclass(frozen=True)
class DemoDataPaths:
    """Where the generated data lives."""

    root: str
    cityscapes: str  # data_root for mmseg's CityscapesDataset
    acdc: str  # data_root for stag_seg's ACDCDataset
    manifest: str


def demo_data_paths(root: str) -> DemoDataPaths:
    """The paths of the trees under ``root`` (made absolute), whether or not they exist."""
    root = osp.abspath(root)
    return DemoDataPaths(root, osp.join(root, 'cityscapes'), osp.join(root, 'acdc'),
                         osp.join(root, MANIFEST))


_PARAM_NAMES = ('num_train', 'num_val', 'num_per_condition', 'num_val_per_condition', 'size',
                'seed', 'write_color')


def _manifest_params(num_train: int, num_val: int, num_per_condition: int,
                     num_val_per_condition: int, size: tuple[int, int], seed: int,
                     write_color: bool) -> dict:
    """The rendering parameters as the manifest records them (JSON types)."""
    return dict(num_train=num_train, num_val=num_val, num_per_condition=num_per_condition,
                num_val_per_condition=num_val_per_condition, size=list(size), seed=seed,
                write_color=write_color)


def cached_params(root: str) -> dict | None:
    """The parameters of the trees cached under ``root`` by this generator version, or None
    (no trees, no or unreadable manifest, another version)."""
    paths = demo_data_paths(root)
    if not (osp.isdir(paths.cityscapes) and osp.isdir(paths.acdc)):
        return None
    try:
        with open(paths.manifest) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in _GENERATOR.items()):
        return None
    params = manifest.get('params')
    return params if isinstance(params, dict) else None


def generate_demo_data(root: str = 'data/demo', num_train: int = 300, num_val: int = 50,
                       num_per_condition: int = DEFAULT_PER_CONDITION,
                       size: tuple[int, int] = (512, 256), seed: int = 0,
                       num_workers: int | None = None, num_val_per_condition: int = 0,
                       write_color: bool = True, force: bool = False) -> DemoDataPaths:
    """Render the demo trees under ``root`` unless ``root/MANIFEST.json`` already matches.

    Writes ``root/cityscapes`` (leftImg8bit + gtFine ``_labelTrainIds``, splits train/val,
    cities aachen/bochum and frankfurt) and ``root/acdc`` (rgb_anon + gt ``_labelTrainIds``,
    conditions fog/night/rain/snow, split train, plus val if ``num_val_per_condition``).
    ``size`` is (width, height). Files are byte-identical for the same seed and parameters.
    The trees are built in a staging folder, swapped in, and the manifest is written last.
    """
    paths = demo_data_paths(root)
    root = paths.root
    params = _manifest_params(num_train, num_val, num_per_condition, num_val_per_condition,
                              size, seed, write_color)
    if not force and cached_params(root) == params:
        return paths
    owned = osp.exists(paths.manifest) or osp.exists(osp.join(root, MARKER))
    if not owned and (osp.exists(paths.cityscapes) or osp.exists(paths.acdc)):
        raise FileExistsError(f'{root} holds cityscapes/ or acdc/ not written by the demo '
                              'generator; refusing to overwrite them')
    os.makedirs(root, exist_ok=True)
    open(osp.join(root, MARKER), 'w').close()
    if osp.exists(paths.manifest):
        os.remove(paths.manifest)
    staging = osp.join(root, f'.staging-{os.getpid()}')
    shutil.rmtree(staging, ignore_errors=True)
    jobs = plan_jobs(staging, num_train, num_val, num_per_condition, num_val_per_condition,
                     write_color)
    if num_workers is None:
        num_workers = min(2, os.cpu_count() or 1)
    try:
        run_jobs(jobs, tuple(size), seed, num_workers)
        for sub in ('cityscapes', 'acdc'):
            dst = osp.join(root, sub)
            shutil.rmtree(dst, ignore_errors=True)
            src = osp.join(staging, sub)
            os.makedirs(src, exist_ok=True)
            os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    tmp = paths.manifest + '.tmp'
    with open(tmp, 'w') as f:
        json.dump({**_GENERATOR, 'params': params, 'num_images': len(jobs)}, f, indent=2,
                  sort_keys=True)
    os.replace(tmp, paths.manifest)
    return paths


def ensure_demo_data(root: str = 'data/demo', min_per_condition: int = DEFAULT_PER_CONDITION,
                     **kwargs) -> tuple[DemoDataPaths, int]:
    """The demo trees with at least ``min_per_condition`` ACDC images per condition.

    ``kwargs`` are :func:`generate_demo_data`'s. Reuses the cache when every other parameter
    matches and it holds at least ``min_per_condition`` images per condition; otherwise
    renders ``max(min_per_condition, num_per_condition, what is cached)`` per condition
    (images are keyed by index, so those already cached come out the same). Returns the
    paths and the number cached per condition; take fewer with
    :func:`~stag_seg.demo.synth.naming.acdc_subset`.
    """
    if min_per_condition < 1:
        raise ValueError(f'min_per_condition must be at least 1, got {min_per_condition}')
    bound = inspect.signature(generate_demo_data).bind(root, **kwargs)
    bound.apply_defaults()
    args = bound.arguments
    wanted = _manifest_params(**{k: args[k] for k in _PARAM_NAMES})
    cached = cached_params(root)
    num = max(min_per_condition, args['num_per_condition'])
    if cached is not None and not args['force'] and _but_count(cached) == _but_count(wanted):
        have = int(cached['num_per_condition'])
        if have >= min_per_condition:
            return demo_data_paths(root), have
        num = max(num, have)
    args['num_per_condition'] = num
    return generate_demo_data(*bound.args, **bound.kwargs), num


def _but_count(params: dict) -> dict:
    return {k: v for k, v in params.items() if k != 'num_per_condition'}
