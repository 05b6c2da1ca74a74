"""The offline demo end to end: data, Source vs TENT vs TENT+STAG, tables, plot, figure."""
from __future__ import annotations

import os.path as osp
import time
from collections.abc import Sequence

from stag_seg.datasets.acdc import ACDCDataset
from stag_seg.demo.figure import figure_rows
from stag_seg.demo.launch import (
    DEFAULT_METHODS,
    DEMO_ROUNDS,
    default_data_root,
    repo_path,
    run_method,
    stream_subset,
)
from stag_seg.demo.source_model import DEMO_CHECKPOINT
from stag_seg.demo.synth import ensure_demo_data
from stag_seg.demo.synth.cache import DEFAULT_PER_CONDITION
from stag_seg.reports import format_comparison, format_table, plot_miou
from stag_seg.reports.qualitative import qualitative_figure

#: the demo's last line: where its differences are tested over seeds and regimes
STUDY_POINTER = ('one stream, one seed: for STAG over 3 stream seeds x 4 regimes with paired '
                 '95% intervals (and how the defaults were chosen) see docs/study.md')


def run_demo(data_root: str | None = None,
             work_dir: str = 'work_dirs/demo',
             checkpoint: str = DEMO_CHECKPOINT,
             rounds: int = DEMO_ROUNDS,
             images_per_condition: int = DEFAULT_PER_CONDITION,
             methods: Sequence[str] = DEFAULT_METHODS,
             cfg_options: dict | None = None,
             data_kwargs: dict | None = None) -> dict[str, list[dict]]:
    """Renders the data if needed, runs each method, prints and writes the comparison.

    The data is rendered once (50 images per condition, or more if asked) and reused; each
    run takes the first ``images_per_condition`` images of every condition. ``data_kwargs``
    go to :func:`~stag_seg.demo.synth.ensure_demo_data` (e.g. smaller trees in tests).
    ``data_root`` defaults to :func:`~stag_seg.demo.launch.default_data_root`; relative paths
    are the clone's (outside a clone: the current directory's); the source model is the
    clone's checkpoint or the wheel's copy.
    """
    start = time.time()
    data_root = repo_path(data_root) if data_root else default_data_root()
    work_dir = repo_path(work_dir)
    _, cached = ensure_demo_data(data_root, images_per_condition, **(data_kwargs or {}))
    print(f'[demo] data ready in {data_root}: {images_per_condition} of the {cached} images '
          f'per condition ({time.time() - start:.0f}s)')
    runs = {}
    for name in methods:
        t = time.time()
        runs[name] = run_method(name, data_root, work_dir, checkpoint, rounds, cfg_options,
                                images_per_condition)
        print(f'[demo] {name}: {rounds} rounds in {time.time() - t:.0f}s')
    for name, records in runs.items():
        print(f'\n{name}: mIoU (%) per round and domain\n{format_table(records)}')
    print(f'\nMethods compared (mean over rounds; clean_val scored without updates)\n'
          f'{format_comparison(runs)}')
    plot_miou(runs, osp.join(work_dir, 'compare_miou.png'))
    rows = figure_rows(data_root, work_dir, methods, rounds,
                       subset=stream_subset(data_root, images_per_condition))
    qualitative_figure(rows, ACDCDataset.METAINFO['palette'],
                       osp.join(work_dir, 'qualitative.png'))
    print(f'\n[demo] wrote {work_dir}/compare_miou.png, {work_dir}/qualitative.png and each '
          f'method\'s reports under {work_dir}/<method>/ ({time.time() - start:.0f}s in all)')
    print(f'[demo] {STUDY_POINTER}')
    return runs
