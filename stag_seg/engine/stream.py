"""The continual stream: domains built from dataset configs (their samples tagged with the
domain's name, optionally a seeded subset), and the schedule of stages."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from mmseg.registry import DATASETS
from torch.utils.data import ConcatDataset, Dataset

from stag_seg.datasets import check_image_file, check_label_files

ORDERS = ('sequential', 'mixed', 'dirichlet')
#: metainfo key that carries a sample's domain through the pipeline, the model and scoring
DOMAIN_KEY = 'stream_domain'


class DomainDataset(Dataset):
    """A domain's dataset whose samples carry the domain's name in their metainfo
    (``DOMAIN_KEY``), so that scoring attributes every prediction by its own sample.

    ``indices`` restricts it to those samples of ``dataset`` (a seeded subset), in that order.
    """

    def __init__(self, name: str, dataset: Dataset, indices: list[int] | None = None) -> None:
        self.name = name
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else list(indices)
        self.metainfo = getattr(dataset, 'metainfo', {})

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        info = self.dataset.get_data_info(self.indices[index])
        check_image_file(info.get('img_path'))      # an empty or cut file, named
        data = self.dataset[self.indices[index]]
        samples = data.get('data_samples') if isinstance(data, dict) else None
        if samples is None:
            raise ValueError(f'domain {self.name!r}: the pipeline must end with PackSegInputs '
                             '(no data_samples in what it returned)')
        for sample in samples if isinstance(samples, list) else [samples]:  # TTA views: a list
            sample.set_metainfo({DOMAIN_KEY: self.name})
        return data

    def label_path(self, index: int) -> str:
        """The label file of sample ``index``."""
        return self.dataset.get_data_info(self.indices[index])['seg_map_path']

    def take_subset(self, size: int, rng: np.random.Generator) -> None:
        """Keeps ``size`` samples drawn by ``rng`` (in the dataset's order)."""
        if not 1 <= size <= len(self.indices):
            raise ValueError(f'test_cfg.subset={size}: domain {self.name!r} has '
                             f'{len(self.indices)} images')
        chosen = rng.choice(len(self.indices), size=size, replace=False)
        self.indices = [self.indices[i] for i in sorted(chosen)]


@dataclass
class Domain:
    """One stream domain: a name, its (tagged) dataset, and whether it adapts."""

    name: str
    dataset: DomainDataset
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


def build_domain(cfg: dict, template: dict | None, adapt: bool = True,
                 check_labels: bool = True) -> Domain:
    """Builds one domain from ``dict(name=..., dataset=dict(...))``.

    An empty domain, or (if ``check_labels``) an image without its label file, is an error
    naming the domain.
    """
    if 'name' not in cfg:
        raise ValueError(f'a stream domain needs a name: {cfg}')
    dataset_cfg = merge_dataset_cfg(template, cfg.get('dataset', {}))
    dataset = DATASETS.build({**dataset_cfg, 'lazy_init': True})
    if not getattr(dataset, '_fully_initialized', True) and not dataset.load_data_list():
        root = dataset_cfg.get('data_root', '')
        raise ValueError(f"domain {cfg['name']!r} is empty: no images found "
                         f'(data_root={root!r}, data_prefix={dataset_cfg.get("data_prefix")})')
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    if len(dataset) == 0:
        raise ValueError(f"domain {cfg['name']!r} is empty (after the dataset's filters)")
    if check_labels:
        check_label_files(dataset, cfg['name'])
    return Domain(cfg['name'], DomainDataset(cfg['name'], dataset), adapt)


def build_source_domain(dataset_cfg: dict, template: dict | None) -> Domain:
    """A source-domain set a method reads (e.g. EATA's Fisher set): ``dataset_cfg`` resolved
    like a stream domain's on ``template``, never adapted, labels not required."""
    return build_domain(dict(name='source set', dataset=dataset_cfg), template, adapt=False,
                        check_labels=False)


def build_stream_domains(domain_cfgs: list[dict], template: dict | None,
                         subset: int | None, forgetting: dict | None,
                         seed: int) -> list[Domain]:
    """The stream's domains (``test_cfg.domains``, then the forgetting set, which never
    adapts), each a seeded subset of ``subset`` images if set. Missing data, an empty domain
    or a subset larger than a domain is an error naming the path, the domain or the option."""
    domains = [build_domain(cfg, template) for cfg in domain_cfgs]
    if subset is not None:
        for index, domain in enumerate(domains):
            domain.dataset.take_subset(subset, np.random.default_rng([seed, 1 << 20, index]))
    if forgetting is not None:
        domains.append(build_domain(forgetting, template, adapt=False))
    return domains


def plan_stages(domains: list[str], num_rounds: int, order: str,
                forgetting: str | None, forgetting_every: int = 1) -> list[Stage]:
    """The whole stream, round by round, as the ordered list of stages.

    'sequential' and 'dirichlet' run one stage per domain (the latter reorders each domain's
    images); 'mixed' one stage per round. The forgetting set is scored after every
    ``forgetting_every``-th round and after the last.
    """
    if order not in ORDERS:
        raise ValueError(f'test_cfg.order must be one of {ORDERS}, got {order!r}')
    if num_rounds < 1:
        raise ValueError(f'test_cfg.num_rounds must be >= 1, got {num_rounds}')
    stages = []
    for r in range(1, num_rounds + 1):
        if order == 'mixed':
            stages.append(Stage(r, tuple(domains)))
        else:
            stages += [Stage(r, (name,)) for name in domains]
        if forgetting is not None and (r % forgetting_every == 0 or r == num_rounds):
            stages.append(Stage(r, (forgetting,), adapt=False))
    return stages


class MixedDataset(ConcatDataset):
    """All adapted domains' images as one dataset (each sample keeps its domain's tag)."""

    def __init__(self, domains: list[Domain]) -> None:
        super().__init__([d.dataset for d in domains])
        self.metainfo = domains[0].dataset.metainfo
