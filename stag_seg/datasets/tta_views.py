"""Test-time-augmented views in the stream: mmcv's ``TestTimeAug`` with the label kept once,
and a collated batch of views split into one batch per view."""
from __future__ import annotations

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

    Returns ``{'inputs': [V tensors], 'data_samples': [V SegDataSample]}`` (``TestTimeAug``'s
    form; the loader collates it to V lists of N).
    """

    def transform(self, results: dict) -> dict:
        label = results.pop('gt_seg_map', None)
        if 'gt_seg_map' in results.get('seg_fields', ()):
            results['seg_fields'] = [f for f in results['seg_fields'] if f != 'gt_seg_map']
        shape = tuple(results['img'].shape[:2])
        views = super().transform(results)
        samples = views['data_samples']
        base = next((i for i, s in enumerate(samples)
                     if tuple(s.img_shape[:2]) == shape and not s.metainfo.get('flip', False)),
                    None)
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
                         'the views with TestTimeAugSharedLabel (see '
                         'configs/_base_/datasets/acdc_continual_cotta.py)')
    return views, flags.index(True)
