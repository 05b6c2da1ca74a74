"""The qualitative figure's rows: first stream images of each condition, each method's output."""
from __future__ import annotations

import os.path as osp
from collections.abc import Sequence

from stag_seg.datasets.acdc import ACDC_CONDITIONS, ACDCDataset
from stag_seg.demo.launch import predictions_dir
from stag_seg.engine.predictions import prediction_path


def figure_rows(data_root: str, work_dir: str, methods: Sequence[str], round_idx: int,
                per_condition: int = 2,
                subset: dict[str, list[int]] | None = None) -> list[dict]:
    """Rows for :func:`~stag_seg.reports.qualitative.qualitative_figure`.

    Each condition's stream is the ACDCDataset the runs used (``subset``: its ``indices``
    per condition, from :func:`~stag_seg.demo.launch.stream_subset`); its first
    ``per_condition`` images get each method's prediction from round ``round_idx``, located
    by the engine's :func:`~stag_seg.engine.predictions.prediction_path`.
    """
    rows = []
    for condition in ACDC_CONDITIONS:
        dataset = ACDCDataset(condition, data_root=osp.join(data_root, 'acdc'),
                              indices=(subset or {}).get(condition))
        for i in range(min(per_condition, len(dataset))):
            info = dataset.get_data_info(i)
            preds = {m: prediction_path(predictions_dir(work_dir, m), round_idx, condition,
                                        info['img_path'], dataset) for m in methods}
            rows.append(dict(title=f'{condition}: input', image=info['img_path'],
                             label=info['seg_map_path'], preds=preds))
    return rows
