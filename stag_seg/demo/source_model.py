"""Trains the demo's source model with mmseg's own loop and publishes a weights-only checkpoint."""
from __future__ import annotations

import os
import os.path as osp

from mmengine.config import Config
from mmengine.runner import Runner, save_checkpoint
from mmengine.runner.checkpoint import weights_to_cpu

from stag_seg.resources import resolve_config

DEMO_MODEL_CONFIG = 'configs/demo/segformer_mini_minicity.py'
DEMO_CHECKPOINT = 'checkpoints/segformer_mini_minicity.pth'


def train_source_model(config: str = DEMO_MODEL_CONFIG,
                       work_dir: str = 'work_dirs/segformer_mini_minicity',
                       out: str = DEMO_CHECKPOINT,
                       max_iters: int | None = None) -> dict:
    """Trains on mini-Cityscapes train, scores mini-Cityscapes val, writes ``out``.

    The published checkpoint holds only ``state_dict`` (fp32, CPU) and ``meta`` with the
    clean-val metrics, so it stays small and loads with ``weights_only=True``.
    Returns the clean-val metrics (mIoU, mAcc, aAcc in %).
    """
    cfg = Config.fromfile(resolve_config(config))
    cfg.work_dir = work_dir
    if max_iters is not None:
        cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = max_iters
        cfg.param_scheduler[-1].end = max_iters
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = {k: float(v) for k, v in runner.val().items()}
    os.makedirs(osp.dirname(out) or '.', exist_ok=True)
    meta = {'config': config, 'max_iters': int(cfg.train_cfg.max_iters),
            'seed': int(cfg.randomness.seed), 'clean_val': metrics}
    save_checkpoint({'state_dict': weights_to_cpu(runner.model.state_dict()), 'meta': meta},
                    out)
    return metrics
