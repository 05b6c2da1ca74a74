"""STAG's ablation on the demo stream: loss weight, gradient space and anchor temperature."""
from __future__ import annotations

import os.path as osp

from stag_seg.demo.launch import repo_path, run_method
from stag_seg.demo.source_model import DEMO_CHECKPOINT
from stag_seg.demo.synth.cache import DEFAULT_PER_CONDITION
from stag_seg.reports import format_comparison


def default_grid() -> list[dict]:
    """lambda in feature space at tau=1, the classifier space, and a sharper anchor tau."""
    grid = [dict(loss_weight=w, grad_space='feature', tau=1.0) for w in (0.5, 1.0, 2.0)]
    grid.append(dict(loss_weight=2.0, grad_space='classifier', tau=1.0))
    grid.append(dict(loss_weight=2.0, grad_space='feature', tau=0.5))
    return grid


def setting_name(setting: dict) -> str:
    """'stag <grad_space> lambda=<loss_weight> tau=<tau>', the setting's row in the table."""
    return (f"stag {setting['grad_space']} lambda={setting['loss_weight']:g} "
            f"tau={setting['tau']:g}")


def run_ablation(grid: list[dict] | None = None,
                 data_root: str = 'data/demo',
                 work_dir: str = 'work_dirs/ablation',
                 checkpoint: str = DEMO_CHECKPOINT,
                 rounds: int = 3,
                 images_per_condition: int | None = DEFAULT_PER_CONDITION
                 ) -> tuple[dict[str, list[dict]], str]:
    """Runs TENT and TENT+STAG for every setting; returns the runs and the printed table.

    Expects the demo data (tools/demo.py or tools/make_demo_data.py writes it) and takes
    the first ``images_per_condition`` images of each condition, as the demo does (None: all).
    """
    data_root, work_dir = repo_path(data_root), repo_path(work_dir)
    runs = {'tent': run_method('tent', data_root, osp.join(work_dir, 'tent'), checkpoint,
                               rounds, images_per_condition=images_per_condition)}
    for setting in grid or default_grid():
        name = setting_name(setting)
        options = {f'custom_hooks.0.{k}': v for k, v in setting.items()}
        records = run_method('tent+stag', data_root, osp.join(work_dir, name.replace(' ', '_')),
                             checkpoint, rounds, options, images_per_condition)
        runs[name] = [{**r, 'method': name} for r in records]
    return runs, format_comparison(runs)
