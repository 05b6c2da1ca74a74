"""Label loading for the stream: label ids as stored, one clear error per bad label file."""
from __future__ import annotations

import mmcv
import numpy as np
from mmengine import fileio
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS


def decode_label(data: bytes, path: str, backend: str = 'pillow') -> np.ndarray:
    """Decode label-file bytes to an (H, W) integer map with the stored values (uint8 or
    uint16 PNG, no cast); raise naming ``path`` if it is not a one-channel integer image."""
    try:
        label = mmcv.imfrombytes(data, flag='unchanged', backend=backend)
    except Exception as e:              # PIL: UnidentifiedImageError, truncated data, ...
        raise OSError(f'label file {path}: cannot be decoded ({e}); expected a '
                      'single-channel PNG of label ids') from e
    if label is None:                   # the cv2 backend's way of failing
        raise OSError(f'label file {path}: cannot be decoded; expected a single-channel PNG '
                      'of label ids')
    if label.ndim == 3 and label.shape[2] == 1:
        label = label[..., 0]
    if label.ndim != 2:
        raise ValueError(f'label file {path}: decoded to shape {label.shape}; expected a '
                         'single-channel (H, W) map of label ids')
    if label.dtype == np.bool_:
        label = label.astype(np.uint8)
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f'label file {path}: decoded to dtype {label.dtype}; expected '
                         'integer label ids')
    return label


def remap_label(label: np.ndarray, reduce_zero_label: bool,
                label_map: dict[int, int] | None) -> np.ndarray:
    """mmseg's ``LoadAnnotations`` id mapping on a label of any integer dtype.

    ``reduce_zero_label``: 0 and 255 become 255, every other id ``v`` becomes ``v - 1``
    (so a stored 256 becomes 255, as it would in mmseg). ``label_map``: then old id -> new id.
    Returns a new (H, W) array of ``label``'s dtype.
    """
    out = label.copy()
    if reduce_zero_label:
        out -= 1                                     # 0 wraps; it becomes 255 next
        out[(label == 0) | (label == 255)] = 255
    if label_map is not None:
        reduced = out.copy()
        for old_id, new_id in label_map.items():
            out[reduced == old_id] = new_id
    return out


@TRANSFORMS.register_module()
class LoadExactAnnotations(LoadAnnotations):
    """mmseg's ``LoadAnnotations`` without wrapping ids to uint8, and with clear errors.

    mmseg casts every label to uint8, so a 16-bit label's id 259 is scored as class 3. This
    keeps the stored values (uint8 or uint16) so that ``check_label_ids`` rejects bad ids by
    their true values; ``reduce_zero_label`` and ``label_map`` act as in mmseg. A label file
    that cannot be decoded, has several channels, or is not of its image's original size
    (``ori_shape``, set by ``LoadImageFromFile``; ``Resize`` leaves it alone) raises one error
    naming the file and what was expected.

    Adds ``gt_seg_map`` ((H, W) uint8/uint16) and appends it to ``seg_fields``.
    """

    def _load_seg_map(self, results: dict) -> None:
        path = results['seg_map_path']
        label = decode_label(fileio.get(path, backend_args=self.backend_args), path,
                             self.imdecode_backend)
        ori_shape = results.get('ori_shape')
        if ori_shape is not None and label.shape != tuple(ori_shape[:2]):
            raise ValueError(
                f'label file {path}: size {label.shape[0]}x{label.shape[1]} (HxW); expected '
                f'the size of its image {results.get("img_path")}, '
                f'{ori_shape[0]}x{ori_shape[1]} (HxW)')
        results['gt_seg_map'] = remap_label(label, self._reduce_zero_label(results),
                                            results.get('label_map'))
        results['seg_fields'].append('gt_seg_map')

    def _reduce_zero_label(self, results: dict) -> bool:
        """The dataset's ``reduce_zero_label``; a loader setting must agree with it (mmseg)."""
        from_dataset = results.get('reduce_zero_label')
        if self.reduce_zero_label is None or from_dataset is None:
            return bool(self.reduce_zero_label or from_dataset)
        if self.reduce_zero_label != from_dataset:
            raise ValueError(f'{type(self).__name__}: reduce_zero_label='
                             f'{self.reduce_zero_label} but the dataset of '
                             f'{results["seg_map_path"]} has reduce_zero_label={from_dataset}')
        return bool(from_dataset)
