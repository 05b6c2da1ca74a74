"""Tiny on-disk ACDC and Cityscapes trees in the real layouts, distractor files included."""
import json
import os
import os.path as osp
from collections.abc import Sequence

import cv2
import numpy as np


def _write(path: str, array: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, array):
        raise OSError(f'could not write {path}')


def _image(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _label(rng: np.random.Generator, size: tuple[int, int], num_classes: int) -> np.ndarray:
    """Blocks of random classes with ~5% ignore (255) pixels."""
    w, h = size
    block = 8
    grid = rng.integers(0, num_classes, (-(-h // block), -(-w // block)), dtype=np.uint8)
    label = np.kron(grid, np.ones((block, block), dtype=np.uint8))[:h, :w].copy()
    label[rng.random((h, w)) < 0.05] = 255
    return label


def make_acdc_tree(root: str,
                   conditions: Sequence[str] = ('fog', 'night', 'rain', 'snow'),
                   split: str = 'train',
                   sequences: Sequence[str] = ('GOPR0475', 'GP010476'),
                   frames_per_sequence: int = 2,
                   size: tuple[int, int] = (64, 32),
                   num_classes: int = 19,
                   seed: int = 0) -> str:
    """Write ``rgb_anon/<cond>/<split>/<seq>/*_rgb_anon.png`` and ``gt/...`` under ``root``.

    ``size`` is (width, height). Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    for cond in conditions:
        for seq in sequences:
            for k in range(frames_per_sequence):
                stem = f'{seq}_frame_{41 + 7 * k:06d}'
                _write(osp.join(root, 'rgb_anon', cond, split, seq, f'{stem}_rgb_anon.png'),
                       _image(rng, size))
                gt_dir = osp.join(root, 'gt', cond, split, seq)
                label = _label(rng, size, num_classes)
                _write(osp.join(gt_dir, f'{stem}_gt_labelTrainIds.png'), label)
                _write(osp.join(gt_dir, f'{stem}_gt_labelIds.png'), label + 7)
                _write(osp.join(gt_dir, f'{stem}_gt_invIds.png'), np.zeros_like(label))
                _write(osp.join(gt_dir, f'{stem}_gt_labelColor.png'), _image(rng, size))
            ref_stem = f'{seq}_frame_{41:06d}'
            _write(osp.join(root, 'rgb_anon', cond, f'{split}_ref', seq,
                            f'{ref_stem}_rgb_ref_anon.png'), _image(rng, size))
    return root


def make_cityscapes_tree(root: str,
                         split: str = 'val',
                         cities: Sequence[str] = ('frankfurt', 'lindau'),
                         frames_per_city: int = 2,
                         size: tuple[int, int] = (64, 32),
                         seed: int = 0) -> str:
    """Write ``leftImg8bit/<split>/<city>/...`` and ``gtFine/<split>/<city>/...`` under ``root``.

    ``size`` is (width, height). Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    for city in cities:
        for k in range(frames_per_city):
            stem = f'{city}_000000_{19 + k:06d}'
            _write(osp.join(root, 'leftImg8bit', split, city, f'{stem}_leftImg8bit.png'),
                   _image(rng, size))
            gt_dir = osp.join(root, 'gtFine', split, city)
            label = _label(rng, size, 19)
            _write(osp.join(gt_dir, f'{stem}_gtFine_labelTrainIds.png'), label)
            _write(osp.join(gt_dir, f'{stem}_gtFine_labelIds.png'), label + 7)
            _write(osp.join(gt_dir, f'{stem}_gtFine_instanceIds.png'),
                   label.astype(np.uint16) * 1000)
            _write(osp.join(gt_dir, f'{stem}_gtFine_color.png'), _image(rng, size))
            with open(osp.join(gt_dir, f'{stem}_gtFine_polygons.json'), 'w') as f:
                json.dump({'imgHeight': size[1], 'imgWidth': size[0], 'objects': []}, f)
    return root


def tiny_sweep_options(root: str) -> tuple[dict, dict]:
    """A sweep spec's ``options`` aliases and ``cfg_options`` that run the tiny configs on a
    fixture ACDC tree under ``root`` (made once) from random init: what the sweep's start
    check reads."""
    acdc = osp.join(str(root), 'acdc')
    if not osp.isdir(acdc):
        make_acdc_tree(acdc)
    return ({'data': 'test_dataloader.dataset.data_root', 'init': 'test_cfg.random_init'},
            {'data': acdc, 'init': True})
