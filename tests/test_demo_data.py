"""Procedural demo data: determinism, exact dataset layouts, labels, depth, conditions, cache,
subsets of the cached stream."""
import glob
import json
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest

from stag_seg.datasets.acdc import ACDC_CONDITIONS, ACDCDataset
from stag_seg.demo import generate_demo_data
from stag_seg.demo.synth import (
    CONDITIONS,
    acdc_subset,
    apply_condition,
    cache,
    classes,
    ensure_demo_data,
    render_scene,
)
from stag_seg.demo.synth.classes import (
    BUILDING,
    CAR,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SKY,
    TRAFFIC_SIGN,
    VEGETATION,
)
from stag_seg.demo.synth.layout import SKY_DEPTH
from stag_seg.demo.synth.naming import acdc_paths

SMALL = dict(num_train=6, num_val=3, num_per_condition=3, size=(128, 64), seed=3)
CS_IMG = re.compile(r'cityscapes/leftImg8bit/(train|val)/(\w+)/\2_\d{6}_\d{6}_leftImg8bit\.png')
CS_GT = re.compile(r'cityscapes/gtFine/(train|val)/(\w+)/\2_\d{6}_\d{6}_gtFine_'
                   r'(labelTrainIds|color)\.png')
ACDC = re.compile(r'acdc/(rgb_anon|gt)/(fog|night|rain|snow)/train/(GOPR\d{4})/'
                  r'\3_frame_\d{6}_(rgb_anon|gt_labelTrainIds|gt_labelColor)\.png')


def _files(root):
    return sorted(osp.relpath(p, root) for p in glob.glob(osp.join(root, '**', '*.png'),
                                                          recursive=True))


def _read_all(root):
    return {rel: open(osp.join(root, rel), 'rb').read() for rel in _files(root)}


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo'))
    generate_demo_data(root, num_workers=2, **SMALL)  # 21 jobs: uses the process pool
    return root


@pytest.fixture(scope='module')
def scenes():
    return [render_scene(np.random.default_rng([11, i]), (256, 128)) for i in range(12)]


def test_deterministic_and_worker_independent(demo_root, tmp_path):
    other = str(tmp_path / 'again')
    generate_demo_data(other, num_workers=1, **SMALL)
    a, b = _read_all(demo_root), _read_all(other)
    assert a.keys() == b.keys() and len(a) == (6 + 3 + 4 * 3) * 3
    assert all(a[k] == b[k] for k in a)
    generate_demo_data(str(tmp_path / 'seed4'), num_workers=1, **{**SMALL, 'seed': 4})
    c = _read_all(str(tmp_path / 'seed4'))
    assert c.keys() == a.keys() and any(a[k] != c[k] for k in a)


def test_layouts_exact(demo_root):
    files = _files(demo_root)
    assert all(CS_IMG.fullmatch(f) or CS_GT.fullmatch(f) or ACDC.fullmatch(f) for f in files)
    for split, n, cities in (('train', 6, {'aachen', 'bochum'}), ('val', 3, {'frankfurt'})):
        imgs = glob.glob(osp.join(demo_root, f'cityscapes/leftImg8bit/{split}/*/'
                                  '*_*_*_leftImg8bit.png'))
        assert len(imgs) == n and {osp.basename(osp.dirname(p)) for p in imgs} == cities
        for img in imgs:
            gt = img.replace('leftImg8bit', 'gtFine', 1).replace(
                '_leftImg8bit.png', '_gtFine_labelTrainIds.png')
            assert osp.isfile(gt)
    for cond in ('fog', 'night', 'rain', 'snow'):
        imgs = glob.glob(osp.join(demo_root, f'acdc/rgb_anon/{cond}/train/*/'
                                  '*_frame_*_rgb_anon.png'))
        assert len(imgs) == 3
        for img in imgs:
            gt = img.replace('rgb_anon', 'gt', 1).replace('_rgb_anon.png',
                                                          '_gt_labelTrainIds.png')
            assert osp.isfile(gt)
    image = cv2.imread(imgs[0], cv2.IMREAD_UNCHANGED)
    label = cv2.imread(gt, cv2.IMREAD_UNCHANGED)
    assert image.shape == (64, 128, 3) and image.dtype == np.uint8
    assert label.shape == (64, 128) and label.dtype == np.uint8


def test_label_values_and_class_coverage(demo_root, scenes):
    for path in glob.glob(osp.join(demo_root, '**', '*labelTrainIds.png'), recursive=True):
        ids = np.unique(cv2.imread(path, cv2.IMREAD_UNCHANGED))
        assert set(ids.tolist()) <= set(range(19)) | {255}, path
    present = set()
    for s in scenes:
        assert s.image.shape == (128, 256, 3) and s.image.dtype == np.uint8
        assert s.label.shape == (128, 256) and s.depth.dtype == np.float32
        present |= set(np.unique(s.label).tolist())
    present.discard(255)
    assert len(present) >= 9
    assert {ROAD, SIDEWALK, BUILDING, POLE, TRAFFIC_SIGN, VEGETATION, SKY, PERSON,
            CAR} <= present


def test_depth_sky_farthest_and_bottom_nearer(scenes):
    for s in scenes:
        sky = s.label == SKY
        assert np.all(s.depth[sky] == SKY_DEPTH)
        assert s.depth[~sky].max() < SKY_DEPTH and s.depth.min() > 0
        h = s.depth.shape[0]
        rows = np.median(s.depth, axis=1)
        assert rows[-h // 8:].max() < np.median(rows[h // 3:h // 2])
        lower = rows[h // 2:]
        assert np.mean(np.diff(lower) <= 1e-3) > 0.9  # nearer towards the bottom


@pytest.fixture(scope='module')
def conditioned():
    out = []
    for i in range(3):
        s = render_scene(np.random.default_rng([21, i]), (512, 256))
        out.append((s, {c: apply_condition(c, s.image, s.label, s.depth,
                                           np.random.default_rng([22, i])) for c in CONDITIONS}))
    return out


def _grey(image):
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def test_conditions_keep_format_and_are_deterministic(conditioned):
    s, out = conditioned[0]
    for name, img in out.items():
        assert img.shape == s.image.shape and img.dtype == np.uint8
        again = apply_condition(name, s.image, s.label, s.depth, np.random.default_rng([22, 0]))
        assert np.array_equal(img, again)
    with pytest.raises(ValueError, match='unknown condition'):
        apply_condition('hail', s.image, s.label, s.depth, np.random.default_rng(0))


def test_night_is_darker(conditioned):
    for s, out in conditioned:
        assert out['night'].mean() < 0.5 * s.image.mean()


def test_fog_lowers_contrast_and_brightens_far(conditioned):
    for s, out in conditioned:
        clean, foggy = _grey(s.image), _grey(out['fog'])
        grad = [np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0)).mean() for g in (clean, foggy)]
        assert grad[1] < 0.8 * grad[0]
        far = (s.depth > 50) & (s.label != SKY)
        near = s.depth < 8
        assert foggy[far].mean() > clean[far].mean() + 20
        assert foggy[far].std() < 0.8 * clean[far].std()
        assert np.abs(foggy - clean)[near].mean() < np.abs(foggy - clean)[far].mean()


def test_snow_is_brighter_with_white_ground(conditioned):
    for s, out in conditioned:
        assert out['snow'].mean() > s.image.mean() + 20
        ground = np.isin(s.label, (ROAD, SIDEWALK))
        assert _grey(out['snow'])[ground].mean() > _grey(s.image)[ground].mean() + 30


def test_rain_streaks_raise_high_frequencies(conditioned):
    def hf(g):
        return np.abs(cv2.GaussianBlur(g, (0, 0), 0.5) - cv2.GaussianBlur(g, (0, 0), 2)).mean()

    for s, out in conditioned:
        assert hf(_grey(out['rain'])) > 1.05 * hf(_grey(s.image))
        hsv = [cv2.cvtColor(im, cv2.COLOR_BGR2HSV)[..., 1].mean() for im in (s.image,
                                                                          out['rain'])]
        assert hsv[1] < hsv[0]  # desaturated


def test_cache_reuses_and_regenerates(tmp_path):
    root = str(tmp_path / 'cache')
    params = dict(num_train=2, num_val=1, num_per_condition=1, size=(64, 32), seed=0,
                  num_workers=1)
    paths = generate_demo_data(root, **params)
    manifest = json.load(open(paths.manifest))
    assert manifest['params']['seed'] == 0 and manifest['version'] >= 1
    before = {f: os.stat(osp.join(root, f)).st_mtime_ns for f in _files(root)}
    m_before = os.stat(paths.manifest).st_mtime_ns
    again = generate_demo_data(root, **params)
    assert again == paths
    assert {f: os.stat(osp.join(root, f)).st_mtime_ns for f in _files(root)} == before
    assert os.stat(paths.manifest).st_mtime_ns == m_before
    generate_demo_data(root, **{**params, 'num_train': 1})  # fewer images: stale ones removed
    assert len(glob.glob(osp.join(paths.cityscapes, 'leftImg8bit', 'train', '*', '*.png'))) == 1
    assert json.load(open(paths.manifest))['params']['num_train'] == 1
    assert not glob.glob(osp.join(root, '.staging*'))


def test_refuses_to_overwrite_foreign_data(tmp_path):
    os.makedirs(tmp_path / 'cityscapes' / 'leftImg8bit')
    with pytest.raises(FileExistsError):
        generate_demo_data(str(tmp_path), num_train=1, num_val=1, num_per_condition=1,
                           size=(64, 32), num_workers=1)
    assert osp.isdir(tmp_path / 'cityscapes' / 'leftImg8bit')


def test_class_ids_and_conditions_come_from_the_datasets():
    names = ACDCDataset.METAINFO['classes']   # Cityscapes' 19
    ids = {n: getattr(classes, n.upper().replace(' ', '_')) for n in names}
    assert [ids[n] for n in names] == list(range(19))
    assert list(CONDITIONS) == list(ACDC_CONDITIONS)


def test_colour_labels_use_the_dataset_palette(demo_root):
    palette = np.array(ACDCDataset.METAINFO['palette'])   # Cityscapes', RGB
    pairs = glob.glob(osp.join(demo_root, 'acdc/gt/*/train/*/*_gt_labelTrainIds.png'))
    for path in pairs[:4]:
        label = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        color = cv2.imread(path.replace('labelTrainIds', 'labelColor'), cv2.IMREAD_COLOR)
        for i in np.unique(label):
            expected = palette[i][::-1] if i < 19 else (0, 0, 0)    # BGR; ignore is black
            assert (color[label == i] == expected).all(), (path, i)


def _acdc_bytes(root, num):
    return {(c, i): open(acdc_paths(osp.join(root, 'acdc'), c, 'train', i)[0], 'rb').read()
            for c in ACDC_CONDITIONS for i in range(num)}


@pytest.fixture(scope='module')
def larger_root(tmp_path_factory):
    """The SMALL tree with 5 instead of 3 images per condition."""
    root = str(tmp_path_factory.mktemp('larger'))
    generate_demo_data(root, num_workers=1, **{**SMALL, 'num_per_condition': 5})
    return root


def test_images_are_keyed_by_index(demo_root, larger_root):
    assert _acdc_bytes(larger_root, 3) == _acdc_bytes(demo_root, 3)
    assert _read_all(osp.join(larger_root, 'cityscapes')) == \
        _read_all(osp.join(demo_root, 'cityscapes'))


def test_subset_of_a_larger_cache_is_the_smaller_stream(demo_root, larger_root):
    """The first 3 of 5 cached images, as the dataset's ``indices``, are the stream a tree
    of exactly 3 per condition gives: same files, same order."""
    for cond in ACDC_CONDITIONS:
        small = ACDCDataset(cond, data_root=osp.join(demo_root, 'acdc'))
        subset = ACDCDataset(cond, data_root=osp.join(larger_root, 'acdc'),
                             indices=acdc_subset(cond, 5, 3))
        assert len(small) == len(subset) == 3
        for i in range(3):
            a, b = small.get_data_info(i), subset.get_data_info(i)
            assert osp.relpath(a['img_path'], demo_root) == \
                osp.relpath(b['img_path'], larger_root)
            assert open(a['img_path'], 'rb').read() == open(b['img_path'], 'rb').read()
    assert acdc_subset('fog', 4, 4) == [0, 1, 2, 3]
    assert acdc_subset('fog', 4, 2) == [0, 2]     # GOPR0475 frames 0, 2 | GOPR0477 1, 3
    with pytest.raises(ValueError, match='cannot take 5 of the 4'):
        acdc_subset('fog', 4, 5)


def test_ensure_reuses_a_larger_cache_and_renders_only_for_more(tmp_path, monkeypatch):
    root = str(tmp_path / 'cache')
    params = dict(num_train=1, num_val=1, num_per_condition=2, size=(64, 32), num_workers=1)
    paths, cached = ensure_demo_data(root, 1, **params)
    assert cached == 2 and json.load(open(paths.manifest))['params']['num_per_condition'] == 2
    before = {f: os.stat(osp.join(root, f)).st_ino for f in _files(root)}
    first = _acdc_bytes(root, 2)

    def no_render(*args, **kwargs):
        raise AssertionError('rendered although the cache holds enough images')

    with monkeypatch.context() as m:
        m.setattr(cache, 'run_jobs', no_render)
        assert ensure_demo_data(root, 1, **params) == (paths, 2)
        assert ensure_demo_data(root, 2, **{**params, 'num_per_condition': 1}) == (paths, 2)
    assert {f: os.stat(osp.join(root, f)).st_ino for f in _files(root)} == before
    _, cached = ensure_demo_data(root, 3, **params)        # more than cached: renders 3
    assert cached == 3 and _acdc_bytes(root, 2) == first
    assert json.load(open(paths.manifest))['params']['num_per_condition'] == 3
    _, cached = ensure_demo_data(root, 1, **{**params, 'seed': 1})   # other data: renders 2
    assert cached == 2 and _acdc_bytes(root, 2) != first
    with pytest.raises(ValueError, match='min_per_condition'):
        ensure_demo_data(root, 0, **params)
