"""Each variant's batch as its stream config's loader gives it: one synthetic image and label at
the benchmark's input size in an ACDC tree, through the config's own pipeline and collate
function (CoTTA's configs end the pipeline with its test-time-augmented views)."""
from __future__ import annotations

import copy
import functools
import os.path as osp
import tempfile
from collections.abc import Iterable

from mmengine.config import Config
from mmengine.registry import FUNCTIONS, init_default_scope

from stag_seg.benchmark.fixtures import write_acdc_stream
from stag_seg.benchmark.paths import resolve_config
from stag_seg.datasets.tta_views import split_views
from stag_seg.engine.stream import build_domain

#: the ACDC condition the synthetic image is written under
CONDITION = 'fog'


def set_stream_resize(cfg: Config, size: tuple[int, int]) -> None:
    """Points the stream pipeline's Resize (the base view) at ``size`` (H, W), keeping the
    ratio as shipped. A pipeline without exactly one such Resize is an error naming the
    config (the views' own Resizes scale the base view and are left as they are)."""
    resizes = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'Resize']
    if len(resizes) != 1:
        raise ValueError(f'{cfg.filename}: the stream pipeline needs one Resize to benchmark '
                         f'at another input size, found {len(resizes)}')
    resizes[0]['scale'] = (size[1], size[0])


def stream_collate(cfg: Config):
    """The config's ``test_dataloader.collate_fn`` (mmengine's default: pseudo_collate), built
    as mmengine's Runner builds it."""
    collate = copy.deepcopy(cfg.test_dataloader.get('collate_fn', dict(type='pseudo_collate')))
    kind = collate.pop('type')
    return functools.partial(FUNCTIONS.get(kind) if isinstance(kind, str) else kind, **collate)


def stream_batch(config: str, size: tuple[int, int], root: str) -> dict:
    """One collated batch of the config's stream: the first image of the ACDC tree at ``root``
    (condition :data:`CONDITION`) through the config's dataset template, with its Resize set
    to ``size``, as the engine builds a stream domain (``build_domain``)."""
    cfg = Config.fromfile(resolve_config(config))
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    set_stream_resize(cfg, size)
    domain = build_domain(dict(name='benchmark', dataset=dict(data_root=root,
                                                              condition=CONDITION)),
                          cfg.test_dataloader.dataset)
    return stream_collate(cfg)([domain.dataset[0]])


def stream_batches(configs: Iterable[str], size: tuple[int, int], seed: int = 0
                   ) -> dict[str, dict]:
    """:func:`stream_batch` of each config, all from the same synthetic image and label at
    ``size`` (so that every batch's base view is the same image, and its label, the
    resolution predictions are made and averaged at, is at the input size)."""
    with tempfile.TemporaryDirectory(prefix='stag_bench_batch_') as tmp:
        root = write_acdc_stream(osp.join(tmp, 'acdc'), 1, size, condition=CONDITION,
                                 seed=seed)
        return {config: stream_batch(config, size, root) for config in dict.fromkeys(configs)}


def num_views(batch: dict) -> int:
    """The number of test-time-augmented views in a collated batch (1 without views)."""
    return len(split_views(batch)[0])


def base_view(batch: dict) -> dict:
    """The batch of the base view (the batch itself without views)."""
    views, base = split_views(batch)
    return views[base]
