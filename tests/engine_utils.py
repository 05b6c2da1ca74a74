"""Helpers for engine tests: the tiny config on a fixture tree, and test-only hooks."""
from __future__ import annotations

import os
import os.path as osp
import time

import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

import stag_seg  # noqa: F401
from stag_seg.engine import launch
from stag_seg.engine.launch import load_tta_config
from stag_seg.engine.runner import StreamRunner
from stag_seg.plugins import TTAPlugin

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CONFIG = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc.py')


def tiny_options(data_root: str, num_rounds: int = 2, **extra) -> dict:
    """cfg_options that point the tiny config at a fixture tree with 64x32 inputs."""
    options = {
        'test_dataloader.dataset.data_root': data_root,
        'test_dataloader.num_workers': 0,
        'test_dataloader.persistent_workers': False,
        'test_dataloader.dataset.pipeline.1.scale': (64, 32),
        'test_cfg.num_rounds': num_rounds,
        'test_cfg.progress': False,
        'test_cfg.random_init': True,
        'randomness': dict(seed=0),
        'log_level': 'WARNING',
    }
    options.update(extra)
    return options


def snapshot(work_dir: str, skip: tuple[str, ...] = ()) -> dict[str, tuple[bytes | None, int]]:
    """Every file (its bytes) and folder (None) under ``work_dir`` by relative path, with its
    modification time; the relative paths in ``skip`` left out."""
    out: dict[str, tuple[bytes | None, int]] = {}
    for folder, dirs, files in os.walk(work_dir):
        for name in dirs:
            path = osp.join(folder, name)
            out[osp.relpath(path, work_dir) + '/'] = (None, os.stat(path).st_mtime_ns)
        for name in files:
            path = osp.join(folder, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, work_dir)] = (f.read(), os.stat(path).st_mtime_ns)
    return {k: v for k, v in out.items() if k not in skip}


def build_runner(work_dir: str, data_root: str, resume: bool = False, config: str = TINY_CONFIG,
                 **extra) -> StreamRunner:
    run = load_tta_config(config, work_dir, tiny_options(data_root, **extra), resume=resume)
    return launch.build_runner(run)


@HOOKS.register_module()
class CrashAfterItersHook(Hook):
    """Raises after ``iters`` test iterations: a run killed mid-stream."""

    def __init__(self, iters: int) -> None:
        self.iters = iters
        self.seen = 0

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.seen += 1
        if self.seen == self.iters:
            raise KeyboardInterrupt('killed by test')


@HOOKS.register_module()
class NonFiniteLossHook(TTAPlugin):
    """A plug-in adding a NaN loss term at the given (1-based) adaptation steps; snapshots
    the model before and after those steps."""

    name = 'nan'

    def __init__(self, steps: tuple[int, ...]) -> None:
        super().__init__(loss_weight=1.0)
        self.steps = set(steps)
        self.step = 0
        self.model = None
        self.snapshots: dict[int, tuple[dict, dict | None]] = {}

    def before_test(self, runner) -> None:
        self.model = runner.model

    def losses(self, ctx) -> dict:
        self.step += 1
        if self.step in self.steps:
            state = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.snapshots[self.step] = (state, None)
            return {'loss_nan': torch.tensor(float('nan'))}
        return {'loss_nan': ctx.logits.sum() * 0.0}

    def after_update(self, ctx) -> None:
        if self.step in self.snapshots and self.snapshots[self.step][1] is None:
            after = {k: v.clone() for k, v in self.model.state_dict().items()}
            self.snapshots[self.step] = (self.snapshots[self.step][0], after)


@HOOKS.register_module()
class PauseOnceHook(Hook):
    """After ``iters`` test iterations, creates the file named by $STAG_TEST_PAUSE_FILE and
    sleeps (up to a minute): a run caught mid-stream, for a test to signal. Does nothing
    without that variable or once the file exists (a resumed run goes through)."""

    def __init__(self, iters: int) -> None:
        self.iters = iters
        self.seen = 0

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.seen += 1
        path = os.environ.get('STAG_TEST_PAUSE_FILE')
        if self.seen != self.iters or not path or osp.exists(path):
            return
        open(path, 'w').close()
        time.sleep(60)
