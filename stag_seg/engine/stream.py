"""The continual stream: domains built from dataset configs, and its schedule of stages."""
from __future__ import annotations

import bisect
import copy
from dataclasses import dataclass

import numpy as np
from mmengine.registry import DATA_SAMPLERS
from mmseg.registry import DATASETS
from torch.utils.data import ConcatDataset, Dataset, Sampler

ORDERS = ('sequential', 'mixed')


@dataclass
class Domain:
    """One stream domain: a name and its built dataset."""

    name: str
    dataset: Dataset
    adapt: bool = True


@dataclass(frozen=True)
class Stage:
    """One unit of work that ends with a report and a checkpoint.

    ``domains`` are scored together: one domain when sequential, all of them in a mixed
    round; ``adapt=False`` is a forgetting check scored without updates.
    """

    round: int
    domains: tuple[str, ...]
    adapt: bool = True


def merge_dataset_cfg(template: dict | None, override: dict) -> dict:
    """A domain's dataset config: the dataloader's dataset with the domain's keys on top.

    A domain whose ``type`` differs from the template's (e.g. Cityscapes val in an ACDC
    stream) is taken as a full config on its own.
    """
    override = copy.deepcopy(dict(override))
    if not template or override.get('type', template.get('type')) != template.get('type'):
        return override
    merged = copy.deepcopy(dict(template))
    merged.update(override)
    return merged


def build_domain(cfg: dict, template: dict | None, adapt: bool = True) -> Domain:
    """Builds one domain from ``dict(name=..., dataset=dict(...))``; an empty one is an error."""
    if 'name' not in cfg:
        raise ValueError(f'a stream domain needs a name: {cfg}')
    dataset_cfg = merge_dataset_cfg(template, cfg.get('dataset', {}))
    dataset = DATASETS.build(dataset_cfg)
    if len(dataset) == 0:
        root = dataset_cfg.get('data_root', '')
        raise ValueError(f"domain {cfg['name']!r} is empty: no images found "
                         f'(data_root={root!r}, data_prefix={dataset_cfg.get("data_prefix")})')
    return Domain(cfg['name'], dataset, adapt)


def plan_stages(domains: list[str], num_rounds: int, order: str,
                forgetting: str | None) -> list[Stage]:
    """The whole stream, round by round, as the ordered list of stages."""
    if order not in ORDERS:
        raise ValueError(f'test_cfg.order must be one of {ORDERS}, got {order!r}')
    if num_rounds < 1:
        raise ValueError(f'test_cfg.num_rounds must be >= 1, got {num_rounds}')
    stages = []
    for r in range(1, num_rounds + 1):
        if order == 'sequential':
            stages += [Stage(r, (name,)) for name in domains]
        else:
            stages.append(Stage(r, tuple(domains)))
        if forgetting is not None:
            stages.append(Stage(r, (forgetting,), adapt=False))
    return stages


class MixedDataset(ConcatDataset):
    """All domains' images as one dataset; ``domain_of(i)`` says where image i comes from."""

    def __init__(self, domains: list[Domain]) -> None:
        super().__init__([d.dataset for d in domains])
        self.names = [d.name for d in domains]
        self.metainfo = domains[0].dataset.metainfo

    def domain_of(self, index: int) -> str:
        return self.names[bisect.bisect_right(self.cumulative_sizes, index)]


@DATA_SAMPLERS.register_module()
class SeededOrderSampler(Sampler):
    """A seeded random order that changes with ``set_epoch`` (one epoch = one round).

    ``order`` holds the indices of the current epoch, so a loop can tell which sample a
    batch holds.
    """

    def __init__(self, dataset: Dataset, seed: int | None = 0) -> None:
        self.size = len(dataset)
        self.seed = 0 if seed is None else seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        self.order = rng.permutation(self.size).tolist()

    def __iter__(self):
        return iter(self.order)

    def __len__(self) -> int:
        return self.size
