"""Where a pseudo-label loss is computed: full-resolution label maps sampled on the decode
head's output grid (``loss_resolution='head'``), or the head's logits brought to the label's
resolution (``'label'``, CoTTA's code: mmseg's decode loss)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: a method's ``loss_resolution`` choices
LOSS_RESOLUTIONS = ('head', 'label')

#: target of head cells over the input's padding (``F.cross_entropy``'s default ignore index)
IGNORE_INDEX = -100


def _cell_sources(cells: int, size: int, before: int, after: int, full: int,
                  device: torch.device) -> tuple[Tensor, Tensor]:
    """For a grid of ``cells`` spanning the padded input (``before + size + after`` pixels,
    the image in ``[before, before + size)``): the full-resolution index (``full`` pixels
    span the image) under each cell's centre, and whether that centre is on the image.

    Exact integer arithmetic: centre ``(i + 1/2) * padded / cells - before`` in input pixels,
    scaled by ``full / size``, floored.
    """
    padded = before + size + after
    num = (2 * torch.arange(cells, device=device) + 1) * padded - 2 * before * cells
    inside = (num >= 0) & (num < 2 * cells * size)
    index = (num.clamp(min=0) * full).div(2 * cells * size, rounding_mode='floor')
    return index.clamp(max=full - 1), inside


def labels_on_head_grid(label: Tensor, grid: tuple[int, int], meta: dict,
                        ignore_index: int = IGNORE_INDEX) -> Tensor:
    """The label under the centre of each cell of the decode head's grid (nearest neighbour).

    The head's grid spans the model's (padded) input; the input's image part (``img_shape``,
    after ``img_padding_size`` / ``padding_size`` = left, right, top, bottom, as mmseg's
    post-processing reads them) is the whole original image, at ``label``'s resolution.
    Without padding this is ``F.interpolate(label, grid, mode='nearest-exact')``.

    Args:
        label: (H, W) integer map at the original resolution.
        grid: (h, w) of the head's output.
        meta: the sample's metainfo (``img_shape``, optional padding).
        ignore_index: the value of cells whose centre lies on the padding.

    Returns:
        (h, w) int64 map.
    """
    left, right, top, bottom = meta.get('img_padding_size', meta.get('padding_size', [0] * 4))
    img_h, img_w = meta['img_shape'][:2]
    rows, rows_in = _cell_sources(grid[0], img_h, top, bottom, label.shape[0], label.device)
    cols, cols_in = _cell_sources(grid[1], img_w, left, right, label.shape[1], label.device)
    out = label.long()[rows][:, cols]
    out[~(rows_in[:, None] & cols_in[None, :])] = ignore_index
    return out


def logits_at_label_resolution(logits: Tensor, size: tuple[int, int], meta: dict,
                               align_corners: bool = False) -> Tensor:
    """(K, h, w) head logits of one image bilinearly resized to the label's (H, W) ``size``.

    Without padding (CoTTA's case) this is one ``F.interpolate`` from the head's grid to
    ``size``, as mmseg's decode loss resizes logits to ``gt_semantic_seg``. With padding
    (``img_padding_size`` / ``padding_size`` in ``meta``), the logits are first resized to
    the padded input (``batch_input_shape`` or ``pad_shape``), the padding is cropped, and
    the image part is resized to ``size`` (mmseg's post-processing steps).
    """
    left, right, top, bottom = meta.get('img_padding_size', meta.get('padding_size', [0] * 4))
    x = logits[None]
    if left or right or top or bottom:
        padded = meta.get('batch_input_shape', meta.get('pad_shape'))[:2]
        x = F.interpolate(x, size=tuple(padded), mode='bilinear', align_corners=align_corners)
        x = x[..., top:padded[0] - bottom, left:padded[1] - right]
    return F.interpolate(x, size=tuple(size), mode='bilinear', align_corners=align_corners)[0]


def label_resolution_cross_entropy(logits: Tensor, labels: list[Tensor], samples: list,
                                   align_corners: bool = False) -> Tensor:
    """CoTTA's student loss: cross-entropy (float32, mean over every pixel of every image)
    of the (N, K, h, w) head logits bilinearly resized to each (H, W) label's resolution
    (:func:`logits_at_label_resolution`) against the label."""
    total, count = logits.new_zeros((), dtype=torch.float32), 0
    for logit, label, sample in zip(logits, labels, samples, strict=True):
        full = logits_at_label_resolution(logit.float(), tuple(label.shape[-2:]),
                                          sample.metainfo, align_corners)
        total = total + F.cross_entropy(full[None], label[None].long().to(full.device),
                                        reduction='sum')
        count += label.numel()
    return total / count
