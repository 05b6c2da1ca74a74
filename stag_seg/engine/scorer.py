"""DomainScorer: scores one domain's predictions and builds its record at each stage end."""
from __future__ import annotations

import math

import torch
from mmseg.registry import METRICS
from torch.utils.data import Dataset

from stag_seg.engine.iou_metric import StreamIoUMetric
from stag_seg.engine.predictions import (
    prediction_path,
    save_prediction,
    save_shown_prediction,
)

IOU_TYPES = ('IoUMetric', 'StreamIoUMetric')


def build_iou_metric(evaluator: dict | list, dataset: Dataset) -> StreamIoUMetric:
    """A StreamIoUMetric from ``test_evaluator`` (an IoUMetric or StreamIoUMetric config)."""
    cfgs = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    ious = [dict(c) for c in cfgs if dict(c).get('type') in IOU_TYPES]
    if len(ious) != 1 or len(cfgs) != 1:
        raise ValueError('test_evaluator must be one IoUMetric (or StreamIoUMetric) config, '
                         f'got {[dict(c).get("type") for c in cfgs]}')
    metric = METRICS.build({**ious[0], 'type': 'StreamIoUMetric'})
    metric.dataset_meta = dataset.metainfo
    return metric


def _count(value) -> float:
    """A counter summed over the stage, read once (a device tensor or a number)."""
    return value.item() if isinstance(value, torch.Tensor) else value


def _number(value) -> float | None:
    value = float(value)
    return round(value, 2) if math.isfinite(value) else None


class DomainScorer:
    """Per-domain IoU, optional prediction files, and the counters of the steps.

    Args:
        name: the domain's name in the stream and the reports.
        dataset: the domain's dataset (class names, data root for prediction paths).
        metric: its StreamIoUMetric.
        out_dir: if set, every scored prediction is saved under
            ``out_dir/round_<r>/<name>/...`` (see ``prediction_path``).
        show_dir: if set, the input with its colourised prediction beside it (the dataset
            meta's palette) is saved under ``show_dir/round_<r>/<name>/...`` for every
            ``show_interval``-th scored image of each stage (the first included).
    """

    def __init__(self, name: str, dataset: Dataset, metric: StreamIoUMetric,
                 out_dir: str | None = None, show_dir: str | None = None,
                 show_interval: int = 1) -> None:
        self.name, self.dataset, self.metric, self.out_dir = name, dataset, metric, out_dir
        self.show_dir, self.show_interval = show_dir, show_interval
        if show_dir and not dataset.metainfo.get('palette'):
            raise ValueError(f'test_cfg.show_dir: domain {name!r}: its dataset '
                             f'{type(dataset).__name__} has no palette in its metainfo')
        self.start()

    def start(self) -> None:
        """Starts a stage: clears the counters."""
        self.num_images = 0
        self.skipped_updates = 0
        self.stats: dict[str, float] = {}
        self.metric.results.clear()

    def add(self, sample, round_idx: int, attempted: bool | torch.Tensor,
            updated: bool | torch.Tensor) -> None:
        """Scores one prediction and counts its step (skipped: attempted, not updated;
        a captured step's flags are device bools, summed on the device and read once at the
        stage's end)."""
        self.metric.process(None, [sample])
        self.num_images += 1
        if isinstance(attempted, torch.Tensor) or isinstance(updated, torch.Tensor):
            skipped = torch.as_tensor(attempted) & ~torch.as_tensor(updated)   # 0-d: any device
            self.skipped_updates = self.skipped_updates + skipped.long()
        elif attempted:
            self.skipped_updates += int(not updated)
        if self.out_dir:
            save_prediction(sample, prediction_path(self.out_dir, round_idx, self.name,
                                                    sample.img_path, self.dataset))
        if self.show_dir and (self.num_images - 1) % self.show_interval == 0:
            path = prediction_path(self.show_dir, round_idx, self.name, sample.img_path,
                                   self.dataset, ending='.png')
            save_shown_prediction(sample, path, self.dataset.metainfo['palette'])

    def add_stats(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.stats[key] = self.stats.get(key, 0) + value

    def record(self, method: str, round_idx: int, adapt: bool) -> dict:
        """The stage's record for results.jsonl (metrics in %, NaN as None)."""
        metrics = self.metric.compute_metrics(self.metric.results)
        self.metric.results.clear()
        classes = self.dataset.metainfo['classes']
        record = {
            'method': method, 'round': round_idx, 'domain': self.name,
            'num_images': self.num_images,
            'mIoU': _number(metrics['mIoU']), 'mAcc': _number(metrics['mAcc']),
            'aAcc': _number(metrics['aAcc']),
            'IoU': {c: _number(v) for c, v in zip(classes, metrics['IoU'], strict=True)},
            'skipped_updates': int(self.skipped_updates),
            **{k: _count(v) for k, v in self.stats.items()},
        }
        if not adapt:
            record['adapted'] = False
        return record
