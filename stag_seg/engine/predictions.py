"""Writes scored predictions as ``*_labelTrainIds.png`` mirroring the input's path."""
from __future__ import annotations

import os
import os.path as osp
import shutil

import cv2
import numpy as np
from mmseg.structures import SegDataSample
from torch.utils.data import Dataset


def prediction_path(out_dir: str, round_idx: int, domain: str, img_path: str,
                    dataset: Dataset) -> str:
    """``out_dir/round_<r>/<domain>/<img path relative to data_root, suffix replaced>``."""
    root = getattr(dataset, 'data_root', None) or osp.dirname(img_path)
    rel = osp.relpath(img_path, root)
    suffix = getattr(dataset, 'img_suffix', None)
    stem = rel[:-len(suffix)] if suffix and rel.endswith(suffix) else osp.splitext(rel)[0]
    return osp.join(out_dir, f'round_{round_idx}', domain, f'{stem}_labelTrainIds.png')


def save_prediction(sample: SegDataSample, path: str) -> None:
    """Saves ``pred_sem_seg`` (1, H, W) at the label's resolution as a uint8 PNG."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    pred = sample.pred_sem_seg.data.squeeze(0).cpu().numpy().astype(np.uint8)
    if not cv2.imwrite(path, pred):
        full = shutil.disk_usage(osp.dirname(path)).free < (1 << 20)
        raise OSError(f'could not write prediction {path}'
                      + (' (no space left on device)' if full else ''))
