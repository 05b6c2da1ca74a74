"""ACDC (Adverse Conditions Dataset with Correspondences), one weather condition per dataset."""
from __future__ import annotations

import logging
import os
import os.path as osp

from mmengine.logging import print_log
from mmseg.datasets.cityscapes import CityscapesDataset
from mmseg.registry import DATASETS

from stag_seg.datasets.checks import check_label_paths

ACDC_CONDITIONS = ('fog', 'night', 'rain', 'snow')
#: file types mmcv decodes: an image of another type among a condition's PNGs is reported
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


def other_images(folder: str, suffix: str) -> list[str]:
    """Image files under ``folder`` (recursive, sorted) whose names do not end with
    ``suffix``: they are not in the stream."""
    found = []
    for root, _, files in os.walk(folder):
        found += [osp.join(root, f) for f in files
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.endswith(suffix)]
    return sorted(found)


@DATASETS.register_module()
class ACDCDataset(CityscapesDataset):
    """One ACDC condition/split: ``rgb_anon/<cond>/<split>`` with ``gt/<cond>/<split>`` labels.

    Uses the 19 Cityscapes train ids (and palette); ``<split>_ref`` folders and the other
    ``gt`` files (``_gt_labelColor`` etc.) are ignored. Samples are sorted by image path
    (mmseg's ``BaseSegDataset.load_data_list`` sorts the listing; an ``ann_file`` keeps its order).
    """

    def __init__(self,
                 condition: str,
                 split: str = 'train',
                 data_root: str | None = 'data/acdc',
                 **kwargs) -> None:
        if condition not in ACDC_CONDITIONS:
            raise ValueError(f'ACDCDataset: unknown condition={condition!r}; '
                             f'valid conditions are {", ".join(ACDC_CONDITIONS)}')
        if data_root is None or not osp.isdir(data_root):
            raise FileNotFoundError(f'ACDCDataset: data_root {data_root!r} does not exist '
                                    'or is not a directory')
        self.condition, self.split = condition, split
        for sub in ('rgb_anon', 'gt'):
            folder = osp.join(data_root, sub, condition, split)
            if not osp.isdir(folder):
                raise FileNotFoundError(f'ACDCDataset: missing folder {folder} '
                                        f'(condition={condition!r}, split={split!r})')
        kwargs.setdefault('data_prefix', {'img_path': f'rgb_anon/{condition}/{split}',
                                          'seg_map_path': f'gt/{condition}/{split}'})
        super().__init__(img_suffix='_rgb_anon.png', seg_map_suffix='_gt_labelTrainIds.png',
                         data_root=data_root, **kwargs)

    def load_data_list(self) -> list[dict]:
        """List image/label pairs (mmseg sorts them by image path); every image must have its
        label."""
        data_list = super().load_data_list()
        if not data_list:
            raise ValueError(f'ACDCDataset: empty domain, no *{self.img_suffix} images '
                             f'under {self.data_prefix["img_path"]}')
        check_label_paths(data_list, 'ACDCDataset')
        skipped = other_images(self.data_prefix['img_path'], self.img_suffix)
        if skipped:
            print_log(f'ACDCDataset: {len(skipped)} image(s) under {self.data_prefix["img_path"]} '
                      f'are not *{self.img_suffix} and are left out of the stream (first: '
                      f'{skipped[0]}); convert them to PNG with that name to include them',
                      logger='current', level=logging.WARNING)
        return data_list
