"""Sanity checks on ground truth: label ids of a loaded map, label files of a dataset."""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import tempfile
from collections.abc import Iterable, Iterator

import cv2
import numpy as np
import torch

MAX_SHOWN_IDS = 20
#: the last 12 bytes of every complete PNG: the IEND chunk
PNG_END = b'\x00\x00\x00\x00IEND\xaeB`\x82'


def _as_id_tensor(label: np.ndarray | torch.Tensor, path: str, *bounds: int) -> torch.Tensor:
    """``label`` as an int32/int64 tensor on its device, wide enough for the ints ``bounds``.

    torch compares a tensor with a Python int by casting the int to the tensor's dtype
    (``uint8 tensor == 300`` matches 44), and most uint16 ops are not implemented, so
    narrow types are widened (to int32, which is cheaper than int64, where ``bounds`` fit).
    """
    if not isinstance(label, torch.Tensor):
        label = torch.from_numpy(np.ascontiguousarray(label))
    if label.dtype.is_floating_point or label.dtype.is_complex:
        raise TypeError(f'label file {path}: label map of dtype {label.dtype}; expected '
                        'integer label ids')
    fits_int32 = all(-2 ** 31 <= b < 2 ** 31 for b in bounds)
    if label.dtype == torch.int64 or (label.dtype == torch.int32 and fits_int32):
        return label
    return label.to(torch.int32 if fits_int32 and label.element_size() < 4 else torch.int64)


def check_label_ids(label: np.ndarray | torch.Tensor, num_classes: int,
                    ignore_index: int, path: str) -> None:
    """Raise ValueError naming ``path`` and the bad ids if ``label`` has ids outside
    ``{0..num_classes-1, ignore_index}``.

    ``label``: an integer label map of any shape, e.g. a sample's ``gt_sem_seg.data``
    (1, H, W) int64, as a numpy array or a CPU/CUDA tensor. A valid map costs three
    elementwise passes (``==``, ``where``, ``aminmax``) and one host sync; the bad ids are
    listed (``unique``) only when some are bad.
    """
    label = _as_id_tensor(label, path, num_classes, ignore_index).detach()
    if label.numel() == 0:
        return
    low, high = torch.aminmax(torch.where(label == ignore_index, 0, label))
    if not bool((low < 0) | (high >= num_classes)):
        return
    bad = label[((label < 0) | (label >= num_classes)) & (label != ignore_index)]
    bad = torch.unique(bad).tolist()        # sorted
    shown = ', '.join(str(i) for i in bad[:MAX_SHOWN_IDS])
    shown += ' ...' if len(bad) > MAX_SHOWN_IDS else ''
    raise ValueError(f'label file {path}: invalid ids [{shown}]; expected 0..{num_classes - 1} '
                     f'or ignore_index={ignore_index}')


def check_label_paths(data_infos: Iterable[dict], name: str) -> None:
    """Raise FileNotFoundError naming ``name``, the image and its expected label path for the
    first data info whose ``seg_map_path`` is set but is not a file."""
    for info in data_infos:
        seg = info.get('seg_map_path')
        if seg is not None and not osp.isfile(seg):
            raise FileNotFoundError(f'{name}: image {info["img_path"]} has no label file; '
                                    f'expected {seg}')


def check_label_files(dataset, name: str) -> None:
    """``check_label_paths`` over the samples of ``dataset`` (any mmengine/mmseg dataset),
    naming the domain ``name``; call it when the stream is built, before any image is scored.
    Samples without a ``seg_map_path`` (an unlabelled dataset) are not checked.
    """
    check_label_paths((dataset.get_data_info(i) for i in range(len(dataset))), name)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Sends what C libraries write to fd 2 (libpng's ``libpng error:`` lines) nowhere."""
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_image_file(path: str) -> None:
    """Raise OSError naming ``path`` if it is an empty file, or a PNG that is cut short (no
    IEND chunk at its end) and does not decode; local files only (others: no check).

    Costs a ``stat`` and a 12-byte read for a good image; a suspect PNG is decoded once with
    libpng's own error line suppressed.
    """
    try:
        size = os.stat(path).st_size
    except (OSError, TypeError):
        return                              # not a local file: the loader reports it
    if size == 0:
        raise OSError(f'image file {path} is empty (0 bytes)')
    if not path.lower().endswith('.png'):
        return
    with open(path, 'rb') as f:
        f.seek(max(0, size - len(PNG_END)))
        if f.read() == PNG_END:
            return
        f.seek(0)
        data = np.frombuffer(f.read(), np.uint8)
    with _quiet_stderr():
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise OSError(f'image file {path} is truncated or corrupt ({size} bytes, no PNG end '
                      'chunk); cannot be decoded')
