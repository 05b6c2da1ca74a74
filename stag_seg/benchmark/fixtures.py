"""Benchmark inputs: a packed batch at the input size, a 1080p scored sample, and an ACDC tree
of full-resolution PNGs for the loop."""
from __future__ import annotations

import os
import os.path as osp

import cv2
import numpy as np
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

#: ACDC's image size (H, W): the stream's images and labels
FULL_RESOLUTION = (1080, 1920)


def synthetic_batch(size: tuple[int, int], seed: int = 0) -> dict:
    """One image as the stream's pipeline packs it: a (3, H, W) uint8 image with metainfo at
    ``size`` (so predictions are made at the input size: the bare step, no upsampling)."""
    h, w = size
    gen = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)
    sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                         scale_factor=(1.0, 1.0), flip=False))
    return dict(inputs=[img], data_samples=[sample])


def scored_sample(size: tuple[int, int] = FULL_RESOLUTION, num_classes: int = 19,
                  seed: int = 0) -> SegDataSample:
    """A sample to predict and score at ``size``: ``ori_shape=size`` and a (1, H, W) int64
    label of random blocks of ids in 0..K-1 with an ignored (255) band, as the stream's
    pipeline loads ACDC labels."""
    label = torch.from_numpy(_blocky_labels(size, num_classes, np.random.default_rng(seed)))
    sample = SegDataSample(metainfo=dict(ori_shape=size, img_path='bench.png',
                                         seg_map_path='bench_gt.png'))
    sample.gt_sem_seg = PixelData(data=label[None].long())
    return sample


def _blocky_labels(size: tuple[int, int], num_classes: int,
                   rng: np.random.Generator) -> np.ndarray:
    h, w = size
    coarse = rng.integers(0, num_classes, (max(1, h // 16), max(1, w // 16)), dtype=np.uint8)
    label = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST)
    label[:max(1, h // 20)] = 255
    return label


def _photo_like(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8: smooth colour fields plus pixel noise, so that a PNG of it has about
    the size and decode cost of a photograph's (a few MB at 1080p), unlike pure noise."""
    h, w = size
    coarse = rng.integers(0, 256, (max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    noise = rng.integers(-6, 7, (h, w, 3), dtype=np.int16)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def write_acdc_stream(root: str, num_images: int, size: tuple[int, int] = FULL_RESOLUTION,
                      condition: str = 'fog', num_classes: int = 19, seed: int = 0) -> str:
    """One condition of an ACDC tree in the real layout (``rgb_anon/`` and ``gt/``), with
    ``num_images`` photo-like images and blocky labels at ``size`` (default ACDC's 1080p)."""
    rng = np.random.default_rng(seed)
    for k in range(num_images):
        stem = f'GOPR0475_frame_{41 + k:06d}'
        for sub, suffix, array in (
                ('rgb_anon', '_rgb_anon.png', _photo_like(size, rng)),
                ('gt', '_gt_labelTrainIds.png', _blocky_labels(size, num_classes, rng))):
            folder = osp.join(root, sub, condition, 'train', 'GOPR0475')
            os.makedirs(folder, exist_ok=True)
            path = osp.join(folder, stem + suffix)
            if not cv2.imwrite(path, array):
                raise OSError(f'could not write {path}')
    return root
