"""StreamScalarsHook: a stream's numbers as scalars through the Runner's visualizer.

Whatever vis backends the config's ``visualizer`` names (mmengine's LocalVisBackend writes
``<log dir>/vis_data/scalars.json``; TensorboardVisBackend, WandbVisBackend, MLflowVisBackend)
receive, under these tags:

* ``step/<term>`` every ``interval`` steps, at x = images streamed so far: each loss term of
  the step (the method's and the plug-ins', e.g. ``loss_entropy``, ``loss_stag``), their sum
  ``loss``, and each of the step's counters (``kept_pixels``, ...) with, for a ``*_pixels``
  counter, its fraction of ``pixels`` (``kept_pixels_fraction``);
* ``<domain>/<metric>`` at each stage end, at x = round: the record's mIoU, mAcc, aAcc,
  skipped_updates and the method's counters (fractions as above);
* ``round/mIoU`` and ``round/mAcc`` when a round ends, at x = round: the means over its
  adapted domains (cells without a value left out, as in the reports).

The loop calls :meth:`after_tta_step` and :meth:`after_tta_stage` (custom hook points); the
values are the ones results.jsonl gets. The loss terms are read (one host synchronisation)
only on the steps that are written.
"""
from __future__ import annotations

import math
import os.path as osp

import torch
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from stag_seg.options import check_int
from stag_seg.reports import RESULTS_FILE, load_records

#: record fields that are not numbers to plot
NOT_SCALARS = ('method', 'round', 'domain', 'num_images', 'IoU', 'adapted')


def with_fractions(counters: dict) -> dict[str, float]:
    """Numeric ``counters`` (numbers or one-element tensors: a captured step's device
    counters, read here) plus ``<name>_fraction`` = ``<name>_pixels`` / ``pixels``."""
    out = {k: float(v) for k, v in counters.items()
           if (isinstance(v, (int, float)) and not isinstance(v, bool))
           or (isinstance(v, torch.Tensor) and v.numel() == 1)}
    total = out.get('pixels')
    if total:
        out.update({f'{k}_fraction': v / total for k, v in out.items()
                    if k.endswith('_pixels') and k != 'pixels'})
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return math.fsum(values) / len(values) if values else None


@HOOKS.register_module()
class StreamScalarsHook(Hook):
    """Writes the stream's loss terms, per-domain metrics and round means as scalars.

    The stream runner registers it by default (``default_hooks.stream_scalars``); set
    ``default_hooks.stream_scalars.interval`` to change how often steps are written, or
    ``default_hooks.stream_scalars=None`` to turn it off.

    Args:
        interval: write the step scalars every ``interval`` steps (>= 1).
        log: also write the step scalars to the log file (one info line).
    """

    priority = 'LOW'

    def __init__(self, interval: int = 10, log: bool = True) -> None:
        check_int('StreamScalarsHook', 'interval', interval, low=1)
        self.interval = interval
        self.log = log

    def before_test(self, runner) -> None:
        """Starts the counters; a resumed run continues those of the records it keeps."""
        path = osp.join(runner.work_dir, RESULTS_FILE)
        records = load_records(path) if osp.isfile(path) else []
        self.steps = 0
        self.images = sum(r['num_images'] for r in records)
        self.round = records[-1]['round'] if records else None
        self.round_records = [r for r in records if r['round'] == self.round]

    def after_tta_step(self, runner, stage, result) -> None:
        self.steps += 1
        self.images += len(result.outputs)
        if self.steps % self.interval:
            return
        # a captured step names its terms whether or not it attempted the update (EATA's
        # filter kept nothing): as in eager, a step not attempted reports no terms
        losses = ({k: float(v) for k, v in result.losses.items()}
                  if bool(result.attempted) else {})
        if losses:
            losses['loss'] = math.fsum(losses.values())
        scalars = {**losses, **with_fractions(result.stats)}
        if not scalars:
            return
        runner.visualizer.add_scalars({f'step/{k}': v for k, v in scalars.items()},
                                      step=self.images)
        if self.log:
            terms = ' '.join(f'{k} {v:.4g}' for k, v in scalars.items())
            runner.logger.info(f'round {stage.round} {"+".join(stage.domains)} image '
                               f'{self.images}: {terms}')

    def after_tta_stage(self, runner, stage, records) -> None:
        if self.round is not None and stage.round != self.round:
            self._round_done(runner)
        self.round = stage.round
        for record in records:
            scalars = with_fractions({k: v for k, v in record.items() if k not in NOT_SCALARS})
            runner.visualizer.add_scalars(
                {f'{record["domain"]}/{k}': v for k, v in scalars.items()}, step=stage.round)
        self.round_records += records

    def after_test_epoch(self, runner, metrics=None) -> None:
        if self.round is not None:
            self._round_done(runner)

    def _round_done(self, runner) -> None:
        adapted = [r for r in self.round_records if r.get('adapted', True)]
        means = {k: _mean(r[k] for r in adapted) for k in ('mIoU', 'mAcc')}
        means = {f'round/{k}': v for k, v in means.items() if v is not None}
        if means:
            runner.visualizer.add_scalars(means, step=self.round)
        self.round_records = []
