"""The offline demo end to end: data, Source vs TENT vs TENT+STAG, tables, plots, figure."""
from __future__ import annotations

import glob
import os.path as osp
import time
from collections.abc import Sequence

from mmseg.datasets import CityscapesDataset

from stag_seg.demo.source_model import DEMO_CHECKPOINT
from stag_seg.engine.launch import load_tta_config, run_tta
from stag_seg.reports import format_comparison, format_table, load_records, plot_miou
from stag_seg.reports.qualitative import qualitative_figure

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIGS = {
    'source': 'configs/demo/segformer_mini_demo-acdc_source.py',
    'tent': 'configs/demo/segformer_mini_demo-acdc_tent.py',
    'tent+stag': 'configs/demo/segformer_mini_demo-acdc_tent-stag.py',
}
CONDITIONS = ('fog', 'night', 'rain', 'snow')


def _repo_path(path: str) -> str:
    return path if osp.isabs(path) else osp.join(REPO, path)


def run_method(name: str, data_root: str, work_dir: str, checkpoint: str, rounds: int,
               cfg_options: dict | None = None) -> list[dict]:
    """Runs one method's config over the demo stream; returns its records."""
    options = {
        'test_dataloader.dataset.data_root': osp.join(data_root, 'acdc'),
        'test_cfg.forgetting.dataset.data_root': osp.join(data_root, 'cityscapes'),
        'test_cfg.num_rounds': rounds,
        'log_level': 'WARNING',
        **(cfg_options or {}),
    }
    run_dir = osp.join(work_dir, name.replace('+', '_'))
    cfg = load_tta_config(_repo_path(DEMO_CONFIGS[name]), run_dir, options,
                          out_dir=osp.join(run_dir, 'predictions'))
    run_tta(cfg, _repo_path(checkpoint))
    return load_records(run_dir)


def figure_rows(data_root: str, work_dir: str, methods: Sequence[str], round_idx: int,
                per_condition: int = 2) -> list[dict]:
    """The first ``per_condition`` stream images of each condition, with each method's
    prediction from round ``round_idx``."""
    rows = []
    for condition in CONDITIONS:
        images = sorted(glob.glob(osp.join(data_root, 'acdc', 'rgb_anon', condition, 'train',
                                           '*', '*_rgb_anon.png')))[:per_condition]
        for image in images:
            rel = osp.relpath(image, osp.join(data_root, 'acdc'))
            stem = rel[:-len('_rgb_anon.png')]
            preds = {m: osp.join(work_dir, m.replace('+', '_'), 'predictions',
                                 f'round_{round_idx}', condition, f'{stem}_labelTrainIds.png')
                     for m in methods}
            label = osp.join(data_root, 'acdc', stem.replace('rgb_anon', 'gt', 1)
                             + '_gt_labelTrainIds.png')
            rows.append(dict(title=f'{condition}: input', image=image, label=label,
                             preds=preds))
    return rows


def run_demo(data_root: str = 'data/demo',
             work_dir: str = 'work_dirs/demo',
             checkpoint: str = DEMO_CHECKPOINT,
             rounds: int = 3,
             images_per_condition: int = 50,
             methods: Sequence[str] = ('source', 'tent', 'tent+stag'),
             cfg_options: dict | None = None,
             data_kwargs: dict | None = None) -> dict[str, list[dict]]:
    """Generates (or reuses) the data, runs each method, prints and writes the comparison.

    ``data_kwargs`` go to :func:`generate_demo_data` (e.g. smaller trees in tests).
    """
    from stag_seg.demo import generate_demo_data

    start = time.time()
    data_root, work_dir = _repo_path(data_root), _repo_path(work_dir)
    generate_demo_data(data_root, num_per_condition=images_per_condition, **(data_kwargs or {}))
    print(f'[demo] data ready in {data_root} ({time.time() - start:.0f}s)')
    runs = {}
    for name in methods:
        t = time.time()
        runs[name] = run_method(name, data_root, work_dir, checkpoint, rounds, cfg_options)
        print(f'[demo] {name}: {rounds} rounds in {time.time() - t:.0f}s')
    for name, records in runs.items():
        print(f'\n{name}: mIoU (%) per round and domain\n{format_table(records)}')
    print(f'\nMethods compared (mean over rounds; clean_val scored without updates)\n'
          f'{format_comparison(runs)}')
    plot_miou(runs, osp.join(work_dir, 'compare_miou.png'))
    qualitative_figure(figure_rows(data_root, work_dir, methods, rounds),
                       CityscapesDataset.METAINFO['palette'],
                       osp.join(work_dir, 'qualitative.png'))
    print(f'\n[demo] wrote {work_dir}/compare_miou.png, {work_dir}/qualitative.png and each '
          f'method\'s reports under {work_dir}/<method>/ ({time.time() - start:.0f}s in all)')
    return runs
