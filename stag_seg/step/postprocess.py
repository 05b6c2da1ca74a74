"""Full-resolution predictions from the head's logits: mmseg's post-processing steps, with an
exact argmax that is fast on CPU."""
from __future__ import annotations

import torch
from mmengine.structures import PixelData
from mmseg.models.utils import resize
from torch import Tensor

#: pixels per block of :func:`argmax_classes` on CPU: a block's work planes stay in a core's
#: cache (16384: 42 ms for 19 x 1080 x 1920 on one thread, 67 ms with boolean work planes)
ARGMAX_BLOCK_PIXELS = 16384


def argmax_classes(logits: Tensor) -> Tensor:
    """(K, H, W) -> (H, W) int64 index of the first maximum over classes, exactly as
    ``logits.argmax(0)`` gives it (NaN ranks highest there, and here).

    On CPU, argmax over the outer (strided) class axis is slow (0.3 s for 19 x 1080 x 1920 on
    one thread). Here, per block of rows (:data:`ARGMAX_BLOCK_PIXELS`), the maximum over
    classes is one vectorised reduction, and the index of the first plane equal to it is the
    number of leading planes that differ from it: per plane, a compare, a multiply and an add,
    in the logits' floating dtype (a comparison that writes booleans is not vectorised on
    CPU, one that writes floats is; the counts, at most 254, are exact): ~7x faster.
    """
    if (logits.device.type != 'cpu' or not logits.is_floating_point()
            or not 2 <= logits.shape[0] <= 255):
        return logits.argmax(0)
    num_classes, height, width = logits.shape
    rows = max(1, ARGMAX_BLOCK_PIXELS // max(1, width))
    out = torch.empty((height, width), dtype=torch.long)
    best = torch.empty((rows, width), dtype=logits.dtype)
    no_max_yet = torch.empty_like(best)          # 1.0 while every plane so far differs
    differs = torch.empty_like(best)
    index = torch.empty_like(best)
    for top in range(0, height, rows):
        block = logits[:, top:top + rows]
        n = block.shape[1]
        block_best = torch.amax(block, 0, out=best[:n])
        if block_best.isnan().any():            # rare: argmax's NaN order
            out[top:top + n] = block.argmax(0)
            continue
        block_no_max, block_differs, block_index = no_max_yet[:n], differs[:n], index[:n]
        torch.ne(block[0], block_best, out=block_no_max)
        block_index.copy_(block_no_max)
        for k in range(1, num_classes - 1):
            torch.ne(block[k], block_best, out=block_differs)
            block_no_max.mul_(block_differs)
            block_index.add_(block_no_max)
        out[top:top + n] = block_index
    return out


class ResizeBuffer:
    """A kept output for the full-resolution resize of one image's logits.

    On CPU a fresh 19 x 1080 x 1920 float32 tensor (158 MB) per image costs ~50 ms of page
    faults, as much as the resize itself; resizing into a kept tensor
    (``upsample_bilinear2d.out``) gives bitwise the logits mmseg's ``resize`` gives. Elsewhere
    (CUDA's caching allocator reuses its blocks), and for logits that need a gradient, every
    resize is fresh. What :meth:`resize` returns is valid until its next call.
    """

    def __init__(self) -> None:
        self.out: Tensor | None = None

    def resize(self, logits: Tensor, size: tuple[int, int], align_corners: bool) -> Tensor:
        """(1, K, h, w) -> (1, K, H, W) at ``size``, bilinear (mmseg's ``resize``)."""
        if logits.device.type != 'cpu' or (logits.requires_grad and torch.is_grad_enabled()):
            return resize(logits, size=size, mode='bilinear', align_corners=align_corners,
                          warning=False)
        shape = (*logits.shape[:2], *size)
        if self.out is None or self.out.shape != shape or self.out.dtype != logits.dtype:
            self.out = None                     # freed before the new one is made
            with torch.inference_mode(False):   # writable in and outside inference mode
                self.out = torch.empty(shape, dtype=logits.dtype)
        return torch.ops.aten.upsample_bilinear2d.out(logits, [int(s) for s in size],
                                                       bool(align_corners), None, None,
                                                       out=self.out)


def unpadded_logits(seg_logits: Tensor, index: int, meta: dict) -> Tensor:
    """Sample ``index``'s (1, K, h', w') logits with its padding cropped and a flip undone
    (mmseg's ``BaseSegmentor.postprocess_result`` before its resize)."""
    _, _, height, width = seg_logits.shape
    left, right, top, bottom = meta.get('img_padding_size', meta.get('padding_size', [0] * 4))
    logits = seg_logits[index:index + 1, :, top:height - bottom, left:width - right]
    if meta.get('flip'):
        direction = meta.get('flip_direction')
        if direction not in ('horizontal', 'vertical'):
            raise ValueError(f'{meta.get("img_path")}: unknown flip_direction {direction!r}')
        logits = logits.flip(dims=(3,) if direction == 'horizontal' else (2,))
    return logits


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
    return [resize(unpadded_logits(seg_logits, i, sample.metainfo),
                   size=sample.metainfo['ori_shape'], mode='bilinear',
                   align_corners=align_corners, warning=False)[0]
            for i, sample in enumerate(samples)]


def predict_labels(seg_logits: Tensor, samples: list, align_corners: bool,
                   buffer: ResizeBuffer | None = None) -> list:
    """Sets each sample's ``pred_sem_seg`` (1, H, W) at its ``ori_shape``: the argmax
    (:func:`argmax_classes`) of its full-resolution logits (:func:`full_resolution_logits`'s),
    resized one sample at a time into ``buffer`` (a new one if None) and not kept.

    Args:
        seg_logits: (N, K, h, w) multi-class logits at the input's (padded) size, detached.
        samples: N ``SegDataSample`` with their metainfo.
        align_corners: the segmentor's ``align_corners``.
        buffer: the resize's kept output (e.g. the learner's, reused image after image).
    """
    buffer = ResizeBuffer() if buffer is None else buffer
    for i, sample in enumerate(samples):
        logits = buffer.resize(unpadded_logits(seg_logits, i, sample.metainfo),
                               sample.metainfo['ori_shape'], align_corners)
        sample.set_data({'pred_sem_seg': PixelData(data=argmax_classes(logits[0])[None])})
    return samples
