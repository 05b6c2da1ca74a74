"""Stream regimes as config: Dirichlet label shift, seeded subsets and orders, forgetting
rounds."""
import os.path as osp

import numpy as np
import pytest
from engine_utils import build_runner
from fixture_data import make_acdc_tree

from stag_seg.engine.samplers import dirichlet_order
from stag_seg.engine.stream import plan_stages
from stag_seg.reports import load_records


def _drift(order: list[int], labels: np.ndarray, window: int) -> float:
    """Mean total-variation distance between each window's class histogram and the whole
    stream's: 0 for an i.i.d.-like order, large when the label distribution drifts."""
    classes = np.unique(labels)
    overall = np.array([np.mean(labels == c) for c in classes])
    distances = []
    for start in range(0, len(order) - window + 1, window):
        part = labels[order[start:start + window]]
        hist = np.array([np.mean(part == c) for c in classes])
        distances.append(0.5 * np.abs(hist - overall).sum())
    return float(np.mean(distances))


LABELS = np.repeat(np.arange(8), 25)          # 8 classes x 25 images


def test_dirichlet_order_is_a_seeded_permutation():
    a = dirichlet_order(LABELS, 0.1, 20, np.random.default_rng([0, 0]))
    b = dirichlet_order(LABELS, 0.1, 20, np.random.default_rng([0, 0]))
    c = dirichlet_order(LABELS, 0.1, 20, np.random.default_rng([1, 0]))
    assert a == b and a != c and sorted(a) == list(range(len(LABELS)))


def test_small_gamma_drifts_more_than_large_gamma():
    drift = {gamma: np.mean([_drift(dirichlet_order(LABELS, gamma, 20,
                                                    np.random.default_rng([seed])),
                                     LABELS, window=10) for seed in range(5)])
             for gamma in (0.1, 1.0, 1000.0)}
    assert drift[0.1] > drift[1.0] > drift[1000.0]
    assert drift[0.1] > 0.5 and drift[1000.0] < 0.25


def test_forgetting_every_k_rounds_and_after_the_last():
    stages = plan_stages(['fog'], 5, 'sequential', 'clean', forgetting_every=2)
    assert [s.round for s in stages if not s.adapt] == [2, 4, 5]


@pytest.fixture(scope='module')
def acdc(tmp_path_factory):
    return make_acdc_tree(str(tmp_path_factory.mktemp('data') / 'acdc'), size=(128, 64),
                          frames_per_sequence=3)


def _orders(runner, rounds=(1, 2)):
    out = {}
    for name in ('fog', 'night'):
        loader = runner.test_loop.loaders[name]
        for r in rounds:
            loader.sampler.set_epoch(r)
            out[(name, r)] = [runner.test_loop.domains[name].dataset.indices[i]
                              for i in loader.sampler]
    return out


@pytest.mark.parametrize('options', [
    {'test_cfg.order': 'dirichlet', 'test_cfg.dirichlet.gamma': 0.5},
    {'test_cfg.shuffle': True, 'test_cfg.subset': 4},
])
def test_seeds_give_different_streams_and_a_seed_the_same_one(tmp_path, acdc, options):
    runs = {}
    for name, seed in (('a', 0), ('b', 0), ('c', 1)):
        runner = build_runner(str(tmp_path / name), acdc, num_rounds=2,
                              randomness=dict(seed=seed), **options)
        runner.test()
        runs[name] = (_orders(runner), load_records(str(tmp_path / name)))
    assert runs['a'] == runs['b']
    assert runs['a'][0] != runs['c'][0]
    size = options.get('test_cfg.subset', 6)
    assert [r['num_images'] for r in runs['a'][1]] == [size] * 8


def test_source_set_loader_takes_a_seeded_subset_and_needs_no_labels(tmp_path, acdc):
    import shutil

    from fixture_data import make_cityscapes_tree
    root = make_cityscapes_tree(str(tmp_path / 'cs'), frames_per_city=4)
    shutil.rmtree(osp.join(root, 'gtFine'))                     # labels are not needed
    source_set = dict(type='CityscapesDataset', data_root=root,
                      data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
                      pipeline=[dict(type='LoadImageFromFile'), dict(type='PackSegInputs')])
    picks = {}
    for seed in range(4):
        for repeat in range(2):
            runner = build_runner(str(tmp_path / f'w{seed}{repeat}'), acdc,
                                  randomness=dict(seed=seed))
            loader = runner.test_loop.build_loader(source_set, size=3)
            picks.setdefault(seed, []).append(list(loader.dataset.indices))
    assert all(a == b and len(a) == 3 for a, b in picks.values())
    assert len({tuple(a) for a, _ in picks.values()}) > 1
