"""Each variant's batch as its stream config's loader gives it: one synthetic image and label at
the benchmark's input size in an ACDC tree, through the config's own pipeline and collate
function (CoTTA's configs end the pipeline with its test-time-augmented views, made from an
original image twice the input size, as ACDC's 1920x1080 is twice the 960x540 input)."""
from __future__ import annotations

import copy
import functools
import os.path as osp
import tempfile
from collections.abc import Callable, Iterable

from mmengine.config import Config
from mmengine.registry import FUNCTIONS, init_default_scope

from stag_seg.benchmark.fixtures import write_acdc_stream
from stag_seg.benchmark.paths import resolve_config
from stag_seg.datasets.tta_views import split_views
from stag_seg.engine.stream import build_domain

#: the ACDC condition the synthetic image is written under
CONDITION = 'fog'
#: the original image's size over the base view's for views made from the original image
#: (ACDC: 1920x1080 images, a 960x540 base view)
ORIGINAL_FACTOR = 2


def set_stream_resize(cfg: Config, size: tuple[int, int]) -> bool:
    """Points the stream pipeline's base view at ``size`` (H, W), keeping the ratio as
    shipped: its one Resize, or, for views made from the loaded image (CoTTA's
    ``MultiScaleFlipViews``, no Resize), the views' base scale. Returns whether the views are
    made from the original image (whose size the caller then chooses: :data:`ORIGINAL_FACTOR`).
    A pipeline with neither is an error naming the config (the Resizes inside
    ``TestTimeAugSharedLabel`` views scale the base view and are left as they are)."""
    pipeline = cfg.test_dataloader.dataset.pipeline
    resizes = [t for t in pipeline if t['type'] == 'Resize']
    views = [t for t in pipeline if t['type'] == 'MultiScaleFlipViews']
    if not resizes and len(views) == 1:
        views[0]['scale'] = (size[1], size[0])
        return True
    if len(resizes) != 1:
        raise ValueError(f'{cfg.filename}: the stream pipeline needs one Resize (or one '
                         'MultiScaleFlipViews) to benchmark at another input size, found '
                         f'{len(resizes)}')
    resizes[0]['scale'] = (size[1], size[0])
    return False


def stream_collate(cfg: Config):
    """The config's ``test_dataloader.collate_fn`` (mmengine's default: pseudo_collate), built
    as mmengine's Runner builds it."""
    collate = copy.deepcopy(cfg.test_dataloader.get('collate_fn', dict(type='pseudo_collate')))
    kind = collate.pop('type')
    return functools.partial(FUNCTIONS.get(kind) if isinstance(kind, str) else kind, **collate)


def stream_batch(config: str, size: tuple[int, int],
                 tree: Callable[[tuple[int, int]], str]) -> dict:
    """One collated batch of the config's stream: the first image of an ACDC tree
    (condition :data:`CONDITION`) through the config's dataset template, with its base view
    set to ``size`` (:func:`set_stream_resize`), as the engine builds a stream domain
    (``build_domain``). ``tree(image_size)`` gives the tree's root with images of
    ``image_size``: ``size``, or ``ORIGINAL_FACTOR`` times it for views made from the original
    image (ACDC's 1920x1080 for a 960x540 base view)."""
    cfg = Config.fromfile(resolve_config(config))
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    from_original = set_stream_resize(cfg, size)
    image_size = tuple(ORIGINAL_FACTOR * s for s in size) if from_original else tuple(size)
    domain = build_domain(dict(name='benchmark', dataset=dict(data_root=tree(image_size),
                                                              condition=CONDITION)),
                          cfg.test_dataloader.dataset)
    return stream_collate(cfg)([domain.dataset[0]])


def stream_batches(configs: Iterable[str], size: tuple[int, int], seed: int = 0
                   ) -> dict[str, dict]:
    """:func:`stream_batch` of each config, all from the same synthetic image and label at
    ``size`` (so that every batch's base view is the same image, and its label, the
    resolution predictions are made and averaged at, is at the input size); configs whose
    views are made from the original image get a synthetic image (and label) at
    ``ORIGINAL_FACTOR`` times ``size``, made with the same seed."""
    with tempfile.TemporaryDirectory(prefix='stag_bench_batch_') as tmp:
        trees: dict[tuple[int, int], str] = {}

        def tree(image_size: tuple[int, int]) -> str:
            if image_size not in trees:
                trees[image_size] = write_acdc_stream(
                    osp.join(tmp, 'acdc_{}x{}'.format(*image_size)), 1, image_size,
                    condition=CONDITION, seed=seed)
            return trees[image_size]

        return {config: stream_batch(config, size, tree) for config in dict.fromkeys(configs)}


def num_views(batch: dict) -> int:
    """The number of test-time-augmented views in a collated batch (1 without views)."""
    return len(split_views(batch)[0])


def base_view(batch: dict) -> dict:
    """The batch of the base view (the batch itself without views)."""
    views, base = split_views(batch)
    return views[base]
