"""Test-time-augmented views in the stream: mmcv's ``TestTimeAug`` with the label kept once
(CoTTA's multi-scale-flip views made from the loaded image), and a collated batch of views
split into one batch per view."""
from __future__ import annotations

from collections.abc import Sequence

from mmcv.transforms import TestTimeAug
from mmseg.datasets.transforms import PackSegInputs
from mmseg.registry import TRANSFORMS

#: metainfo flag of the view that is the pipeline's input unchanged (CoTTA's student view)
BASE_VIEW_KEY = 'tta_base_view'


@TRANSFORMS.register_module()
class TestTimeAugSharedLabel(TestTimeAug):
    """mmcv's ``TestTimeAug`` whose views share one label, packed once on the base view.

    Put it last in the stream pipeline, after the steps every method's input goes through
    (``LoadImageFromFile``, ``Resize`` to the base view, ``LoadExactAnnotations``). The views
    are ``TestTimeAug``'s: one per combination of ``transforms`` (the first list outermost),
    each ending with ``PackSegInputs``; a ``Resize`` with ``scale_factor`` scales the base
    view. The label (``gt_seg_map``) is taken out before the views are made, so it is decoded
    once and never resized, flipped or copied per view; it is packed once (by mmseg's
    ``PackSegInputs``) onto the base view's data sample, at the original resolution at which
    every method is scored.

    The base view is the first view whose image is the input's unchanged (the same
    ``img_shape``, not flipped: ``Resize`` with ``scale_factor=1.0`` and ``RandomFlip`` with
    ``prob=0.0``); its metainfo ``tta_base_view`` is True, False on the others. Views without
    such a view are an error naming the image.

    ``base_view`` (an index into the views) names the base view instead: the view the adapted
    model is trained on when every view is made from the loaded image, none of them unchanged
    (:class:`MultiScaleFlipViews`).

    Returns ``{'inputs': [V tensors], 'data_samples': [V SegDataSample]}`` (``TestTimeAug``'s
    form; the loader collates it to V lists of N).
    """

    def __init__(self, transforms: list, base_view: int | None = None) -> None:
        super().__init__(transforms)
        if base_view is not None and not 0 <= base_view < len(self.subroutines):
            raise ValueError(f'{type(self).__name__}: base_view={base_view!r} is not one of '
                             f'the {len(self.subroutines)} views (0 to '
                             f'{len(self.subroutines) - 1})')
        self.base_view = base_view

    def transform(self, results: dict) -> dict:
        label = results.pop('gt_seg_map', None)
        if 'gt_seg_map' in results.get('seg_fields', ()):
            results['seg_fields'] = [f for f in results['seg_fields'] if f != 'gt_seg_map']
        shape = tuple(results['img'].shape[:2])
        views = super().transform(results)
        samples = views['data_samples']
        base = self.base_view
        if base is None:
            base = next((i for i, s in enumerate(samples) if tuple(s.img_shape[:2]) == shape
                         and not s.metainfo.get('flip', False)), None)
        if base is None:
            raise ValueError(
                f'{type(self).__name__}: none of the {len(samples)} views of '
                f'{results.get("img_path")} is the input image unchanged ({shape[1]}x{shape[0]}'
                ', not flipped); add Resize(scale_factor=1.0) and RandomFlip(prob=0.0) to '
                'the views: that is the base view the adapted model is trained on')
        for i, sample in enumerate(samples):
            sample.set_metainfo({BASE_VIEW_KEY: i == base})
        if label is not None:
            packed = PackSegInputs(meta_keys=())(dict(gt_seg_map=label))
            samples[base].gt_sem_seg = packed['data_samples'].gt_sem_seg
        return views


@TRANSFORMS.register_module()
class MultiScaleFlipViews(TestTimeAugSharedLabel):
    """CoTTA's views: mmseg 0.x's ``MultiScaleFlipAug`` (``img_scale``, ``img_ratios``,
    ``flip``) on the loaded image, the label kept once.

    Each view is the loaded (original, e.g. 1920x1080) image resized, keeping its ratio, to fit
    ``(int(w * r), int(h * r))`` for ``(w, h) = scale`` and each ratio ``r`` (mmcv's
    ``imrescale``, bilinear: what mmseg 0.x's ``Resize(keep_ratio=True)`` does), then, with
    ``flip``, also flipped horizontally; ratios outermost: (r0, no flip), (r0, flip), (r1, ...
    The base view, the adapted model's input, is ratio 1.0 without flip: the same image as
    ``Resize(scale=scale, keep_ratio=True)`` gives every other method. Put it last in the stream
    pipeline, after ``LoadImageFromFile`` and ``LoadExactAnnotations`` (no ``Resize`` before it).

    Args:
        scale: (w, h) of the base view.
        ratios: the views' scales relative to ``scale``; must contain 1.0.
        flip: add each view flipped horizontally.
    """

    def __init__(self, scale: Sequence[int], ratios: Sequence[float], flip: bool = True) -> None:
        name = type(self).__name__
        if (not isinstance(scale, (list, tuple)) or len(scale) != 2
                or not all(isinstance(v, int) and v > 0 for v in scale)):
            raise ValueError(f'{name}: scale must be (w, h), two positive ints, got {scale!r}')
        if (not isinstance(ratios, (list, tuple)) or not ratios
                or not all(isinstance(r, (int, float)) and r > 0 for r in ratios)):
            raise ValueError(f'{name}: ratios must be a non-empty list of positive numbers, '
                             f'got {ratios!r}')
        if 1.0 not in ratios:
            raise ValueError(f'{name}: ratios {list(ratios)} have no 1.0, the base view the '
                             'adapted model is trained on')
        w, h = scale
        flips = [dict(type='RandomFlip', prob=p, direction='horizontal')
                 for p in ((0.0, 1.0) if flip else (0.0,))]
        resizes = [dict(type='Resize', scale=(int(w * r), int(h * r)), keep_ratio=True)
                   for r in ratios]
        super().__init__([resizes, flips, [dict(type='PackSegInputs')]],
                         base_view=list(ratios).index(1.0) * len(flips))
        self.scale, self.ratios, self.flip = tuple(scale), list(ratios), flip


def split_views(batch: dict) -> tuple[list[dict], int]:
    """A collated batch as one batch per view, and the index of the base view.

    ``batch`` is what the loader gives: from :class:`TestTimeAugSharedLabel`,
    ``{'inputs': V sequences of N tensors, 'data_samples': V sequences of N samples}``; from
    a pipeline without views, N tensors and N samples (returned as the single, base view).
    """
    samples = batch['data_samples']
    if not samples or not isinstance(samples[0], (list, tuple)):
        return [batch], 0
    views = [{'inputs': list(inputs), 'data_samples': list(view_samples)}
             for inputs, view_samples in zip(batch['inputs'], samples, strict=True)]
    flags = [bool(v['data_samples'][0].metainfo.get(BASE_VIEW_KEY, False)) for v in views]
    if flags.count(True) != 1:
        raise ValueError(f'a batch of {len(views)} test-time-aug views has '
                         f'{flags.count(True)} base views (metainfo {BASE_VIEW_KEY!r}); build '
                         'the views with MultiScaleFlipViews or TestTimeAugSharedLabel (see '
                         'configs/_base_/datasets/acdc_continual_cotta.py)')
    return views, flags.index(True)
