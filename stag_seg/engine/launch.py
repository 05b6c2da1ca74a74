"""Builds a Runner from a continual-TTA config and runs the stream (used by tools/test_tta.py)."""
from __future__ import annotations

import os.path as osp

from mmengine.config import Config
from mmengine.runner import Runner

from stag_seg.compat.checkpoint import load_segmentor_checkpoint


def load_tta_config(config: str,
                    work_dir: str | None = None,
                    cfg_options: dict | None = None,
                    resume: bool = False,
                    out_dir: str | None = None) -> Config:
    """The config with the command line's overrides applied."""
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if cfg.get('test_cfg', {}).get('type') != 'ContinualTTALoop':
        raise ValueError(f'{config}: test_cfg.type must be ContinualTTALoop '
                         f"(got {cfg.get('test_cfg', {}).get('type')!r}); inherit "
                         'configs/_base_/datasets/acdc_continual.py or define a stream')
    cfg.work_dir = (work_dir or cfg.get('work_dir')
                    or osp.join('work_dirs', osp.splitext(osp.basename(config))[0]))
    cfg.test_cfg.resume = resume
    if out_dir:
        cfg.test_cfg.out_dir = out_dir
    cfg.load_from = None          # the checkpoint is loaded (and checked) by run_tta
    cfg.launcher = 'none'
    return cfg


def run_tta(cfg: Config, checkpoint: str | None = None) -> dict:
    """Runs the stream; returns the loop's summary metrics. Reports land in cfg.work_dir."""
    runner = Runner.from_cfg(cfg)
    if checkpoint:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
        load_segmentor_checkpoint(runner.model, checkpoint)
        runner.logger.info(f'Loaded checkpoint {checkpoint}')
    return runner.test()
