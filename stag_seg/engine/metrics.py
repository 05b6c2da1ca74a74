"""Per-class IoU and a running mIoU from mmseg's IoUMetric, before ``evaluate`` clears it."""
from __future__ import annotations

import numpy as np
from mmengine.evaluator import Evaluator
from mmseg.evaluation import IoUMetric


def find_iou_metric(evaluator: Evaluator) -> IoUMetric:
    """The evaluator's IoUMetric (per-domain mIoU needs one)."""
    for metric in evaluator.metrics:
        if isinstance(metric, IoUMetric):
            return metric
    raise ValueError('test_evaluator must include an IoUMetric, got '
                     f'{[type(m).__name__ for m in evaluator.metrics]}')


class RunningIoU:
    """Sums the (intersection, union) areas that an IoUMetric appends, image by image."""

    def __init__(self, metric: IoUMetric) -> None:
        self.metric = metric
        num_classes = len(metric.dataset_meta['classes'])
        self.intersect = np.zeros(num_classes)
        self.union = np.zeros(num_classes)
        self._seen = 0

    def update(self) -> None:
        for result in self.metric.results[self._seen:]:
            self.intersect += result[0].cpu().numpy()
            self.union += result[1].cpu().numpy()
        self._seen = len(self.metric.results)

    def class_iou(self) -> np.ndarray:
        """(K,) IoU in % per class (NaN where a class never occurred)."""
        with np.errstate(divide='ignore', invalid='ignore'):
            return self.intersect / self.union * 100

    def miou(self) -> float:
        """mIoU in %, as mmseg computes it (mean over classes that occurred)."""
        iou = self.class_iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float('nan')
