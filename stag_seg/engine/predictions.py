"""Writes scored predictions mirroring the input's path: ``*_labelTrainIds.png`` label ids, or
colourised beside the input (``--show-dir``)."""
from __future__ import annotations

import os
import os.path as osp
import shutil

import cv2
import numpy as np
from mmseg.structures import SegDataSample
from torch.utils.data import Dataset


def prediction_path(out_dir: str, round_idx: int, domain: str, img_path: str,
                    dataset: Dataset, ending: str = '_labelTrainIds.png') -> str:
    """``out_dir/round_<r>/<domain>/<img path relative to data_root, suffix -> ending>``."""
    root = getattr(dataset, 'data_root', None) or osp.dirname(img_path)
    rel = osp.relpath(img_path, root)
    suffix = getattr(dataset, 'img_suffix', None)
    stem = rel[:-len(suffix)] if suffix and rel.endswith(suffix) else osp.splitext(rel)[0]
    return osp.join(out_dir, f'round_{round_idx}', domain, f'{stem}{ending}')


def save_prediction(sample: SegDataSample, path: str) -> None:
    """Saves ``pred_sem_seg`` (1, H, W) at the label's resolution as a uint8 PNG."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    pred = sample.pred_sem_seg.data.squeeze(0).cpu().numpy().astype(np.uint8)
    if not cv2.imwrite(path, pred):
        raise OSError(f'could not write prediction {path}{_full_disk(path)}')


def save_shown_prediction(sample: SegDataSample, path: str, palette) -> None:
    """Saves the input image and, to its right, ``pred_sem_seg`` coloured by ``palette``
    (a dataset meta's ``palette``: RGB per class id), at the label's resolution."""
    pred = sample.pred_sem_seg.data.squeeze(0).cpu().numpy()
    image = cv2.imread(sample.img_path, cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f'could not read image {sample.img_path}')
    if image.shape[:2] != pred.shape:
        image = cv2.resize(image, pred.shape[::-1], interpolation=cv2.INTER_LINEAR)
    colours = np.asarray(palette, dtype=np.uint8)[pred][..., ::-1]    # RGB -> cv2's BGR
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, np.concatenate([image, colours], axis=1)):
        raise OSError(f'could not write {path}{_full_disk(path)}')


def _full_disk(path: str) -> str:
    """' (no space left on device)' when ``path``'s disk is (nearly) full, else ''."""
    full = shutil.disk_usage(osp.dirname(path)).free < (1 << 20)
    return ' (no space left on device)' if full else ''
