"""Builds a Runner from a stream config and runs it (what tools/test_tta.py calls)."""
from __future__ import annotations

import os.path as osp

from mmengine.config import Config

from stag_seg.engine.config import validate_tta_config
from stag_seg.engine.runner import StreamRunner
from stag_seg.engine.work_dir import check_dir_option, finished_run, locked_work_dir
from stag_seg.resources import resolve_config


def load_tta_config(config: str,
                    work_dir: str | None = None,
                    cfg_options: dict | None = None,
                    resume: bool = False,
                    out_dir: str | None = None,
                    checkpoint: str | None = None,
                    random_init: bool | None = None) -> Config:
    """The config with the command line's overrides applied, checked as a whole.

    Every option (loop, method, optimizer, plug-ins) is validated here, before a Runner
    exists, so a bad option never touches the work dir. ``checkpoint`` and ``random_init``
    set ``test_cfg.checkpoint`` / ``test_cfg.random_init`` (:func:`run_tta` can still set
    them, and requires one of the two); ``randomness.seed`` defaults to 0.
    """
    config = resolve_config(config)   # a path, stag_seg::<path> or a shipped config's name
    cfg = Config.fromfile(config)
    # no yapf: the Runner formats the config three times (log, work dir, visualizer) for text
    # nobody reads formatted (fromfile ignores format_python_code for plain configs)
    cfg = Config(cfg.to_dict(), cfg_text=cfg.text, filename=cfg.filename,
                 env_variables=cfg.env_variables, format_python_code=False)
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
    if checkpoint:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
        cfg.test_cfg.checkpoint = checkpoint
    if random_init is not None:
        cfg.test_cfg.random_init = random_init
    if cfg.get('randomness', {}).get('seed') is None:
        cfg.randomness = {**cfg.get('randomness', {}), 'seed': 0}
    cfg.load_from = None          # the loop loads (and checks) test_cfg.checkpoint itself
    cfg.launcher = 'none'
    validate_tta_config(cfg, require_checkpoint=False)
    return cfg


def run_tta(cfg: Config, checkpoint: str | None = None, random_init: bool | None = None,
            verbose: bool = True) -> dict:
    """Runs the stream; returns the loop's summary metrics. Reports land in ``cfg.work_dir``.

    ``verbose=False`` keeps the console to warnings and progress (the log file gets all).
    The work dir is locked for the run (a second run on it is refused, naming the holder).
    """
    if not verbose:
        cfg.console_log_level = 'WARNING'
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
        cfg.test_cfg.checkpoint = checkpoint
    if random_init is not None:
        cfg.test_cfg.random_init = random_init
    validate_tta_config(cfg)
    check_dir_option(cfg.test_cfg.get('out_dir'), '--out')
    check_dir_option(cfg.test_cfg.get('show_dir'), '--show-dir')
    with locked_work_dir(cfg.work_dir):     # before the Runner writes its logs there
        done = finished_run(cfg)
        return done if done is not None else StreamRunner.from_cfg(cfg).test()
