"""Full-resolution predictions from the head's logits: mmseg's post-processing steps, with an
exact argmax that is fast on CPU."""
from __future__ import annotations

import torch
from mmengine.structures import PixelData
from mmseg.models.utils import resize
from torch import Tensor


def argmax_classes(logits: Tensor) -> Tensor:
    """(K, H, W) -> (H, W) int64 index of the first maximum over classes, exactly as
    ``logits.argmax(0)`` gives it (NaN ranks highest there, and here).

    On CPU, argmax over the outer (strided) class axis is slow (0.3 s for 19 x 1080 x 1920 on
    one thread). Here the maximum over classes is one vectorised reduction, and the index of
    the first plane equal to it is the number of leading planes that differ from it (compare,
    and, add per plane; no masked writes): 7x faster.
    """
    if logits.device.type != 'cpu' or not 2 <= logits.shape[0] <= 255:
        return logits.argmax(0)
    best = logits.amax(0)
    if best.isnan().any():                      # rare: argmax's NaN order
        return logits.argmax(0)
    no_max_yet = torch.ones(logits.shape[1:], dtype=torch.bool)
    differs = torch.empty_like(no_max_yet)
    index = torch.zeros(logits.shape[1:], dtype=torch.uint8)
    for k in range(logits.shape[0] - 1):
        torch.ne(logits[k], best, out=differs)
        no_max_yet &= differs
        index += no_max_yet
    return index.long()


def full_resolution_logits(seg_logits: Tensor, samples: list,
                           align_corners: bool) -> list[Tensor]:
    """Per sample, its (K, H, W) logits at ``ori_shape``: the padding cropped, a flip undone,
    resized bilinearly with mmseg's ``resize`` (the steps of mmseg's
    ``BaseSegmentor.postprocess_result``, without its argmax).

    Args:
        seg_logits: (N, K, h, w) logits at the input's (padded) size, detached.
        samples: N ``SegDataSample`` with their metainfo.
        align_corners: the segmentor's ``align_corners``.
    """
    _, _, height, width = seg_logits.shape
    out = []
    for i, sample in enumerate(samples):
        meta = sample.metainfo
        left, right, top, bottom = meta.get('img_padding_size',
                                            meta.get('padding_size', [0] * 4))
        logits = seg_logits[i:i + 1, :, top:height - bottom, left:width - right]
        if meta.get('flip'):
            direction = meta.get('flip_direction')
            if direction not in ('horizontal', 'vertical'):
                raise ValueError(f'{meta.get("img_path")}: unknown flip_direction {direction!r}')
            logits = logits.flip(dims=(3,) if direction == 'horizontal' else (2,))
        out.append(resize(logits, size=meta['ori_shape'], mode='bilinear',
                          align_corners=align_corners, warning=False)[0])
    return out


def predict_labels(seg_logits: Tensor, samples: list, align_corners: bool) -> list:
    """Sets each sample's ``pred_sem_seg`` (1, H, W) at its ``ori_shape``: the argmax
    (:func:`argmax_classes`) of :func:`full_resolution_logits`, which are not kept.

    Args:
        seg_logits: (N, K, h, w) multi-class logits at the input's (padded) size, detached.
        samples: N ``SegDataSample`` with their metainfo.
        align_corners: the segmentor's ``align_corners``.
    """
    for sample, logits in zip(samples, full_resolution_logits(seg_logits, samples,
                                                              align_corners), strict=True):
        sample.set_data({'pred_sem_seg': PixelData(data=argmax_classes(logits)[None])})
    return samples
