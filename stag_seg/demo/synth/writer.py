"""Renders and writes every image of the demo trees: per-image rngs, PNGs, a process pool."""
from __future__ import annotations

import multiprocessing as mp
import os
import os.path as osp
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
from mmseg.datasets import CityscapesDataset

from stag_seg.demo.synth.naming import acdc_paths, cityscapes_paths
from stag_seg.demo.synth.scene import render_scene
from stag_seg.demo.synth.weather import CONDITIONS
from stag_seg.reports.qualitative import colorize

PALETTE = CityscapesDataset.METAINFO['palette']  # RGB per train id, for the colour labels


@dataclass(frozen=True)
class Job:
    """One image to render: rng key parts, optional condition, output paths."""

    key: tuple
    condition: str | None
    image_path: str
    label_path: str
    color_path: str | None


def image_rng(seed: int, *parts: str | int) -> np.random.Generator:
    """Generator seeded from (seed, parts...); strings hashed with crc32 (stable across runs)."""
    ints = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence([seed, *ints]))


def plan_jobs(out: str, num_train: int, num_val: int, num_per_condition: int,
              num_val_per_condition: int, write_color: bool) -> list[Job]:
    """Every image of the Cityscapes tree, then of each ACDC condition, under ``out``.

    Each job's rng key is (dataset, [condition,] split, index): an image does not depend on
    how many others are rendered.
    """
    jobs = []
    for split, n in (('train', num_train), ('val', num_val)):
        for i in range(n):
            image, label, color = cityscapes_paths(osp.join(out, 'cityscapes'), split, i)
            jobs.append(Job(('cityscapes', split, i), None, image, label,
                            color if write_color else None))
    for cond in CONDITIONS:
        for split, n in (('train', num_per_condition), ('val', num_val_per_condition)):
            for i in range(n):
                image, label, color = acdc_paths(osp.join(out, 'acdc'), cond, split, i)
                jobs.append(Job(('acdc', cond, split, i), cond, image, label,
                                color if write_color else None))
    return jobs


def _write_png(path: str, array: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, array):
        raise OSError(f'could not write {path}')


def run_job(job: Job, size: tuple[int, int], seed: int) -> None:
    """Renders one scene (and its condition) and writes image, labels and colour labels."""
    scene = render_scene(image_rng(seed, 'scene', *job.key), size)
    image = scene.image
    if job.condition is not None:
        image = CONDITIONS[job.condition](image, scene.label, scene.depth,
                                          image_rng(seed, 'condition', *job.key))
    _write_png(job.image_path, image)
    _write_png(job.label_path, scene.label)
    if job.color_path:
        _write_png(job.color_path, colorize(scene.label, PALETTE))


def _worker_init() -> None:
    cv2.setNumThreads(1)


def pool_context() -> mp.context.BaseContext:
    """The pool's start method: workers that are not forks of this process.

    A fork copies this process's locks as its other threads hold them: a thread blocked
    reading stdin (pytest-xdist's worker has one) holds the lock that every forked child
    takes to close its stdin, and warm thread pools (torch, OpenCV) hang children that use
    them. 'forkserver' forks the workers from a fresh single-threaded server that imports
    this module once; 'spawn' where there is none (each worker imports it)."""
    if 'forkserver' in mp.get_all_start_methods():
        ctx = mp.get_context('forkserver')
        ctx.set_forkserver_preload([__name__])
        return ctx
    return mp.get_context('spawn')


def run_jobs(jobs: list[Job], size: tuple[int, int], seed: int, num_workers: int) -> None:
    """Runs ``jobs`` in this process or in a pool of ``num_workers`` (same files either way;
    see :func:`pool_context`)."""
    if num_workers <= 1 or len(jobs) < 16:
        for job in jobs:
            run_job(job, size, seed)
        return
    args = [(job, size, seed) for job in jobs]
    with pool_context().Pool(num_workers, initializer=_worker_init) as pool:
        pool.starmap(run_job, args, chunksize=max(1, len(jobs) // (num_workers * 8)))
