"""File names of the demo's Cityscapes and ACDC trees (the real layouts), and stream subsets."""
from __future__ import annotations

import os.path as osp

from stag_seg.datasets.acdc import ACDC_CONDITIONS

CITIES = {'train': ('aachen', 'bochum'), 'val': ('frankfurt',)}
ACDC_SEQUENCES = {'fog': ('GOPR0475', 'GOPR0477'), 'night': ('GOPR0351', 'GOPR0356'),
                  'rain': ('GOPR0400', 'GOPR0402'), 'snow': ('GOPR0122', 'GOPR0176')}
if set(ACDC_SEQUENCES) != set(ACDC_CONDITIONS):
    raise ImportError(f'ACDC_SEQUENCES {sorted(ACDC_SEQUENCES)} do not match ACDC_CONDITIONS '
                      f'{ACDC_CONDITIONS}')


def cityscapes_stem(split: str, index: int) -> tuple[str, str]:
    """(city, '<city>_<seq:06d>_000019') of the ``index``-th image of a Cityscapes split."""
    cities = CITIES[split]
    city = cities[index % len(cities)]
    return city, f'{city}_{index // len(cities):06d}_000019'


def acdc_stem(condition: str, index: int) -> tuple[str, str]:
    """(sequence, '<sequence>_frame_<n:06d>') of the ``index``-th image of an ACDC condition."""
    seqs = ACDC_SEQUENCES[condition]
    seq = seqs[index % len(seqs)]
    return seq, f'{seq}_frame_{100 + 37 * (index // len(seqs)):06d}'


def cityscapes_paths(root: str, split: str, index: int) -> tuple[str, str, str]:
    """(image, train-id label, colour label) paths of a Cityscapes image under ``root``."""
    city, stem = cityscapes_stem(split, index)
    gt = osp.join(root, 'gtFine', split, city, f'{stem}_gtFine_')
    return (osp.join(root, 'leftImg8bit', split, city, f'{stem}_leftImg8bit.png'),
            gt + 'labelTrainIds.png', gt + 'color.png')


def acdc_paths(root: str, condition: str, split: str, index: int) -> tuple[str, str, str]:
    """(image, train-id label, colour label) paths of an ACDC image under ``root``."""
    seq, stem = acdc_stem(condition, index)
    gt = osp.join(root, 'gt', condition, split, seq, f'{stem}_gt_')
    return (osp.join(root, 'rgb_anon', condition, split, seq, f'{stem}_rgb_anon.png'),
            gt + 'labelTrainIds.png', gt + 'labelColor.png')


def acdc_subset(condition: str, num_cached: int, num: int) -> list[int]:
    """Positions, in a condition's stream (ACDCDataset sorts by image path), of the first
    ``num`` rendered images when ``num_cached`` are on disk (for the dataset's ``indices``).

    Images are rendered by index with per-index rngs, so images 0..num-1 are the same files
    whatever ``num_cached`` is; the positions keep the stream's path order.
    """
    if not 0 <= num <= num_cached:
        raise ValueError(f'cannot take {num} of the {num_cached} images cached per condition')
    order = sorted(range(num_cached), key=lambda i: acdc_paths('', condition, 'train', i)[0])
    return [pos for pos, index in enumerate(order) if index < num]
