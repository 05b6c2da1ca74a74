"""Writing procedural mini-Cityscapes/mini-ACDC trees in the real layouts, cached by manifest."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import os.path as osp
import shutil
import zlib
from dataclasses import dataclass

import cv2
import numpy as np

from stag_seg.demo.conditions import CONDITIONS
from stag_seg.demo.scenes import colorize, render_scene

GENERATOR_VERSION = 2  # bump whenever rendering changes: cached trees regenerate
MANIFEST = 'MANIFEST.json'
MARKER = '.stag_seg_demo'  # marks a root whose cityscapes/ and acdc/ this module may replace
CITIES = {'train': ('aachen', 'bochum'), 'val': ('frankfurt',)}
ACDC_SEQUENCES = {'fog': ('GOPR0475', 'GOPR0477'), 'night': ('GOPR0351', 'GOPR0356'),
                  'rain': ('GOPR0400', 'GOPR0402'), 'snow': ('GOPR0122', 'GOPR0176')}


@dataclass(frozen=True)
class DemoDataPaths:
    """Where the generated data lives."""

    root: str
    cityscapes: str  # data_root for mmseg's CityscapesDataset
    acdc: str  # data_root for stag_seg's ACDCDataset
    manifest: str


@dataclass(frozen=True)
class _Job:
    """One image to render: rng key parts, optional condition, output paths."""

    key: tuple
    condition: str | None
    image_path: str
    label_path: str
    color_path: str | None


def _rng(seed: int, *parts: str | int) -> np.random.Generator:
    """Generator seeded from (seed, parts...); strings hashed with crc32 (stable across runs)."""
    ints = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence([seed, *ints]))


def cityscapes_stem(split: str, index: int) -> tuple[str, str]:
    """(city, '<city>_<seq:06d>_000019') of the ``index``-th image of a Cityscapes split."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f'{city}_{index // len(cities):06d}_000019'


def acdc_stem(condition: str, index: int) -> tuple[str, str]:
    """(sequence, '<sequence>_frame_<n:06d>') of the ``index``-th image of an ACDC condition."""
    seqs = ACDC_SEQUENCES[condition]
    seq = seqs[index % len(seqs)]
    return seq, f'{seq}_frame_{100 + 37 * (index // len(seqs)):06d}'


def _jobs(out: str, num_train: int, num_val: int, num_per_condition: int,
          num_val_per_condition: int, write_color: bool) -> list[_Job]:
    jobs = []
    for split, n in (('train', num_train), ('val', num_val)):
        for i in range(n):
            city, stem = cityscapes_stem(split, i)
            gt = osp.join(out, 'cityscapes', 'gtFine', split, city, f'{stem}_gtFine_')
            jobs.append(_Job(('cityscapes', split, i), None,
                             osp.join(out, 'cityscapes', 'leftImg8bit', split, city,
                                      f'{stem}_leftImg8bit.png'),
                             gt + 'labelTrainIds.png', gt + 'color.png' if write_color else None))
    for cond in CONDITIONS:
        for split, n in (('train', num_per_condition), ('val', num_val_per_condition)):
            for i in range(n):
                seq, stem = acdc_stem(cond, i)
                gt = osp.join(out, 'acdc', 'gt', cond, split, seq, f'{stem}_gt_')
                jobs.append(_Job(('acdc', cond, split, i), cond,
                                 osp.join(out, 'acdc', 'rgb_anon', cond, split, seq,
                                          f'{stem}_rgb_anon.png'),
                                 gt + 'labelTrainIds.png',
                                 gt + 'labelColor.png' if write_color else None))
    return jobs


def _write_png(path: str, array: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, array):
        raise OSError(f'could not write {path}')


def _run_job(job: _Job, size: tuple[int, int], seed: int) -> None:
    scene = render_scene(_rng(seed, 'scene', *job.key), size)
    image = scene.image
    if job.condition is not None:
        image = CONDITIONS[job.condition](image, scene.label, scene.depth,
                                          _rng(seed, 'condition', *job.key))
    _write_png(job.image_path, image)
    _write_png(job.label_path, scene.label)
    if job.color_path:
        _write_png(job.color_path, colorize(scene.label))


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _run_all(jobs: list[_Job], size: tuple[int, int], seed: int, num_workers: int) -> None:
    if num_workers <= 1 or len(jobs) < 16:
        for job in jobs:
            _run_job(job, size, seed)
        return
    # fork avoids re-importing the (heavy) stag_seg package in every worker
    methods = mp.get_all_start_methods()
    ctx = mp.get_context('fork' if 'fork' in methods else 'spawn')
    args = [(job, size, seed) for job in jobs]
    with ctx.Pool(num_workers, initializer=_worker_init) as pool:
        pool.starmap(_run_job, args, chunksize=max(1, len(jobs) // (num_workers * 8)))


def _read_manifest(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def generate_demo_data(root: str = 'data/demo', num_train: int = 300, num_val: int = 50,
                       num_per_condition: int = 50, size: tuple[int, int] = (512, 256),
                       seed: int = 0, num_workers: int | None = None,
                       num_val_per_condition: int = 0, write_color: bool = True,
                       force: bool = False) -> DemoDataPaths:
    """Render the demo trees under ``root`` unless ``root/MANIFEST.json`` already matches.

    Writes ``root/cityscapes`` (leftImg8bit + gtFine ``_labelTrainIds``, splits train/val,
    cities aachen/bochum and frankfurt) and ``root/acdc`` (rgb_anon + gt ``_labelTrainIds``,
    conditions fog/night/rain/snow, split train, plus val if ``num_val_per_condition``).
    ``size`` is (width, height). Files are byte-identical for the same seed and parameters.
    The trees are built in a staging folder, swapped in, and the manifest is written last.
    """
    root = osp.abspath(root)
    paths = DemoDataPaths(root, osp.join(root, 'cityscapes'), osp.join(root, 'acdc'),
                          osp.join(root, MANIFEST))
    params = dict(num_train=num_train, num_val=num_val, num_per_condition=num_per_condition,
                  num_val_per_condition=num_val_per_condition, size=list(size), seed=seed,
                  write_color=write_color)
    wanted = {'generator': 'stag_seg.demo', 'version': GENERATOR_VERSION, 'params': params}
    have_trees = osp.isdir(paths.cityscapes) and osp.isdir(paths.acdc)
    manifest = _read_manifest(paths.manifest)
    if (not force and have_trees and isinstance(manifest, dict)
            and {k: manifest.get(k) for k in wanted} == wanted):
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
    jobs = _jobs(staging, num_train, num_val, num_per_condition, num_val_per_condition,
                 write_color)
    if num_workers is None:
        num_workers = min(2, os.cpu_count() or 1)
    try:
        _run_all(jobs, tuple(size), seed, num_workers)
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
        json.dump({**wanted, 'num_images': len(jobs)}, f, indent=2, sort_keys=True)
    os.replace(tmp, paths.manifest)
    return paths
