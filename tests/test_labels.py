"""Ground-truth labels: the exact label loader, its errors, label-id and label-file checks."""
import glob
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest
import torch
from fixture_data import make_acdc_tree, make_cityscapes_tree
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS, TRANSFORMS

from stag_seg.datasets import LoadExactAnnotations, check_label_files, check_label_ids

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
STREAM_CONFIGS = ['configs/_base_/datasets/acdc_continual.py',
                  'configs/_base_/datasets/demo_acdc_continual.py']


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Unprefixed transform names resolve in mmseg, as under the runner (default_scope)."""
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


def _write(path, array):
    assert cv2.imwrite(str(path), array)
    return str(path)


def _results(img_path, seg_path, reduce_zero_label=False, label_map=None):
    return {'img_path': img_path, 'seg_map_path': seg_path, 'seg_fields': [],
            'reduce_zero_label': reduce_zero_label, 'label_map': label_map}


def _load(seg_path, loader='LoadExactAnnotations', **kwargs):
    """Only the label loader (no image, so no size check): the (H, W) ``gt_seg_map``."""
    transform = TRANSFORMS.build({'type': loader})
    return transform(_results(None, seg_path, **kwargs))['gt_seg_map']


@pytest.fixture
def image(tmp_path):
    """A 64x128 (HxW) RGB image file."""
    rng = np.random.default_rng(0)
    return _write(tmp_path / 'img.png', rng.integers(0, 256, (64, 128, 3), dtype=np.uint8))


# ---- the loader: ids as stored -------------------------------------------------------------

def test_16bit_label_keeps_its_values(tmp_path):
    label = np.array([[0, 18, 255], [259, 1000, 65535]], dtype=np.uint16)
    path = _write(tmp_path / 'label16.png', label)
    assert _load(path, loader='mmseg.LoadAnnotations').tolist() == [[0, 18, 255],
                                                                     [3, 232, 255]]  # wrapped
    loaded = _load(path)
    assert loaded.dtype == np.uint16
    np.testing.assert_array_equal(loaded, label)


@pytest.mark.parametrize('backend', ['pillow', 'cv2'])
def test_8bit_label_unchanged_with_either_backend(tmp_path, backend):
    label = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = _write(tmp_path / 'label8.png', label)
    transform = LoadExactAnnotations(imdecode_backend=backend)
    loaded = transform(_results(None, path))['gt_seg_map']
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, label)


@pytest.mark.parametrize('reduce_zero_label', [False, True])
@pytest.mark.parametrize('label_map', [None, {0: 5, 5: 0, 7: 255, 254: 1}])
def test_8bit_mapping_matches_mmseg(tmp_path, reduce_zero_label, label_map):
    label = np.arange(256, dtype=np.uint8).reshape(16, 16)
    path = _write(tmp_path / 'label8.png', label)
    kwargs = dict(reduce_zero_label=reduce_zero_label, label_map=label_map)
    ours, mmseg = _load(path, **kwargs), _load(path, loader='mmseg.LoadAnnotations', **kwargs)
    assert ours.dtype == mmseg.dtype == np.uint8
    np.testing.assert_array_equal(ours, mmseg)


def test_16bit_reduce_zero_label_and_label_map(tmp_path):
    label = np.array([[0, 1, 19, 255], [256, 300, 1001, 2]], dtype=np.uint16)
    path = _write(tmp_path / 'label16.png', label)
    # 0 and 255 -> 255, v -> v - 1 (256 -> 255 as in mmseg), then the map 299 -> 7, 1 -> 300
    expected = [[255, 0, 18, 255], [255, 7, 1000, 300]]
    loaded = _load(path, reduce_zero_label=True, label_map={299: 7, 1: 300})
    assert loaded.tolist() == expected


def test_loader_and_dataset_disagree_on_reduce_zero_label(tmp_path):
    path = _write(tmp_path / 'label.png', np.zeros((4, 4), np.uint8))
    transform = LoadExactAnnotations(reduce_zero_label=True)
    with pytest.raises(ValueError, match=re.escape(path)):
        transform(_results(None, path, reduce_zero_label=False))


@pytest.mark.parametrize('config', STREAM_CONFIGS)
def test_stream_pipeline_reports_true_16bit_ids(tmp_path, config):
    """The configs' stream pipeline on an ACDC tree with one 16-bit label holding 259, 1000."""
    pipeline = Config.fromfile(osp.join(REPO, config)).stream_pipeline
    assert [t['type'] for t in pipeline] == ['LoadImageFromFile', 'Resize',
                                            'LoadExactAnnotations', 'PackSegInputs']
    root = make_acdc_tree(str(tmp_path / 'acdc'), conditions=('fog',))
    ds = DATASETS.build({'type': 'ACDCDataset', 'condition': 'fog', 'data_root': root,
                         'pipeline': pipeline})
    seg_path = ds.get_data_info(1)['seg_map_path']
    label = cv2.imread(seg_path, cv2.IMREAD_UNCHANGED).astype(np.uint16)
    label[0, :3] = [259, 1000, 19]
    _write(seg_path, label)
    sample = ds[1]['data_samples']
    gt = sample.gt_sem_seg.data
    assert gt.shape == (1, 32, 64) and gt.dtype == torch.int64     # full resolution
    assert sample.img_shape != sample.ori_shape                      # the input was resized
    np.testing.assert_array_equal(gt[0].numpy(), label)
    with pytest.raises(ValueError, match=re.escape(seg_path)) as err:
        check_label_ids(gt, 19, 255, seg_path)
    assert 'invalid ids [19, 259, 1000]' in str(err.value)


# ---- the loader: one clear error per bad label file -----------------------------------------

def _pipeline(loader='LoadExactAnnotations'):
    return Compose([{'type': 'LoadImageFromFile'},
                    {'type': 'Resize', 'scale': (64, 32), 'keep_ratio': True},
                    {'type': loader}])


def test_label_of_the_image_size_passes_resize(tmp_path, image):
    label = np.random.default_rng(1).integers(0, 19, (64, 128), dtype=np.uint8)
    out = _pipeline()(_results(image, _write(tmp_path / 'label.png', label)))
    assert out['img_shape'] == (32, 64) and out['ori_shape'] == (64, 128)
    np.testing.assert_array_equal(out['gt_seg_map'], label)


@pytest.mark.parametrize('size', [(128, 256), (32, 64)])
def test_label_of_another_size(tmp_path, image, size):
    """(32, 64) is the resized image's size: the label must match the original, 64x128."""
    path = _write(tmp_path / 'label.png', np.zeros(size, np.uint8))
    with pytest.raises(ValueError) as err:
        _pipeline()(_results(image, path))
    message = str(err.value)
    assert path in message and image in message
    assert f'size {size[0]}x{size[1]} (HxW)' in message and '64x128 (HxW)' in message


def _corrupt(path):
    with open(path, 'wb') as f:
        f.write(b'not a png')
    return path


def _truncated(path):
    label = np.random.default_rng(2).integers(0, 19, (64, 128), dtype=np.uint8)
    _write(path, label)
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    return path


@pytest.mark.parametrize('backend', ['pillow', 'cv2'])
@pytest.mark.parametrize('damage', [_corrupt, _truncated])
def test_undecodable_label(tmp_path, image, backend, damage):
    path = damage(str(tmp_path / 'label.png'))
    pipeline = Compose([{'type': 'LoadImageFromFile'},
                        {'type': 'LoadExactAnnotations', 'imdecode_backend': backend}])
    with pytest.raises(OSError, match=re.escape(path) + '.*cannot be decoded'):
        pipeline(_results(image, path))


def test_colour_label(tmp_path, image):
    path = _write(tmp_path / 'label_color.png', np.zeros((64, 128, 3), np.uint8))
    with pytest.raises(ValueError, match=re.escape(path) + r'.*\(64, 128, 3\).*single-channel'):
        _pipeline()(_results(image, path))


# ---- check_label_ids: vectorised, the same verdicts as the np.unique reference --------------

def _reference_bad_ids(label, num_classes, ignore_index):
    """The previous implementation: np.unique of the whole map, then the bad ones."""
    ids = np.unique(np.asarray(label))
    return ids[((ids < 0) | (ids >= num_classes)) & (ids != ignore_index)].tolist()


def _message_ids(label, num_classes, ignore_index):
    try:
        check_label_ids(label, num_classes, ignore_index, 'dir/x.png')
    except ValueError as e:
        assert 'label file dir/x.png' in str(e)
        assert f'expected 0..{num_classes - 1} or ignore_index={ignore_index}' in str(e)
        shown = re.search(r'invalid ids \[(.*)\]', str(e)).group(1)
        return shown
    return None


def _shown(bad):
    return None if not bad else ', '.join(map(str, bad[:20])) + (' ...' if len(bad) > 20 else '')


CASES = [  # dtype, num_classes, ignore_index, injected ids
    (np.uint8, 19, 255, []),
    (np.uint8, 19, 255, [19, 200, 254]),
    (np.uint8, 19, 300, [44, 255]),          # torch would cast 300 to uint8 (44) if not widened
    (np.uint8, 19, -1, [255]),
    (np.uint16, 19, 255, [259, 1000, 65535, 19]),
    (np.uint16, 19, 255, list(range(256, 300))),                    # > 20 bad: ' ...'
    (np.int16, 19, 255, [-1, -300, 19]),
    (np.int32, 150, 255, [-5, 150, 254, 256]),
    (np.int32, 19, 2 ** 32 + 19, [19]),      # the same for an int32 map and a large int
    (np.int64, 19, 255, [-(2 ** 40), 2 ** 40, 18]),
    (np.int64, 19, -1, [255, -2]),
]


def _label_map(dtype, num_classes, ignore_index, injected):
    """A (1, 48, 64) map of valid ids, ~10% ``ignore_index`` (where the dtype holds it) and
    the ``injected`` ids at random places; with the generator that made it."""
    rng = np.random.default_rng(len(injected) + num_classes)
    label = rng.integers(0, num_classes, (1, 48, 64)).astype(dtype)
    if 0 <= ignore_index <= np.iinfo(dtype).max:
        label[rng.random(label.shape) < 0.1] = ignore_index
    flat = label.reshape(-1)
    flat[rng.choice(flat.size, len(injected), replace=False)] = injected
    return label, rng


@pytest.mark.parametrize('form', ['numpy', 'tensor', 'int64 tensor'])
@pytest.mark.parametrize('dtype,num_classes,ignore_index,injected', CASES)
def test_check_label_ids_matches_reference(dtype, num_classes, ignore_index, injected, form):
    label, _ = _label_map(dtype, num_classes, ignore_index, injected)
    expected = _reference_bad_ids(label, num_classes, ignore_index)
    assert expected == sorted({i for i in injected
                               if (i < 0 or i >= num_classes) and i != ignore_index})
    if form != 'numpy':
        label = torch.from_numpy(label.astype(np.int64) if form == 'int64 tensor' else label)
    assert _message_ids(label, num_classes, ignore_index) == _shown(expected)


def _scored(pred, label):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    sample = SegDataSample(metainfo=dict(img_path='dir/x.jpg', seg_map_path='dir/x.png'))
    sample.pred_sem_seg = PixelData(data=pred[None])
    sample.gt_sem_seg = PixelData(data=label)
    return sample


VALID_CASES = [  # valid labels: one count, or the check then a count (* below)
    (np.uint8, 2, 255, []),
    (np.int64, 19, -1, []),
    (np.int16, 19, 3, []),                   # * an ignored class id: the general path
    (np.int32, 150, 255, []),                # * 255 * 150 does not fit an int16 index
    (np.int32, 150, 200, [149]),             # 200 * 150 + 149 does
]


@pytest.mark.parametrize('form', ['tensor', 'int64 tensor'])
@pytest.mark.parametrize('dtype,num_classes,ignore_index,injected', CASES + VALID_CASES)
def test_scoring_checks_label_ids_and_counts_mmseg_areas(dtype, num_classes, ignore_index,
                                                         injected, form, monkeypatch):
    """StreamIoUMetric.process on CPU: the same error as check_label_ids for bad ids, else
    mmseg's areas, counted in one pass where it can (check_label_ids not called)."""
    from mmseg.evaluation import IoUMetric

    from stag_seg.engine import iou_metric
    from stag_seg.engine.iou_metric import StreamIoUMetric

    label, rng = _label_map(dtype, num_classes, ignore_index, injected)
    pred = torch.from_numpy(rng.integers(0, num_classes, (48, 64)))
    label = torch.from_numpy(label.astype(np.int64) if form == 'int64 tensor' else label)
    checks = []
    monkeypatch.setattr(iou_metric, 'check_label_ids',
                        lambda *a: checks.append(a) or check_label_ids(*a))
    metric = StreamIoUMetric(ignore_index=ignore_index)
    metric.dataset_meta = dict(classes=[str(k) for k in range(num_classes)])
    expected = _shown(_reference_bad_ids(label.numpy(), num_classes, ignore_index))
    if expected is not None:
        with pytest.raises(ValueError) as err:
            metric.process(None, [_scored(pred, label)])
        assert str(err.value) == (f'label file dir/x.png: invalid ids [{expected}]; expected '
                                  f'0..{num_classes - 1} or ignore_index={ignore_index}')
        return
    metric.process(None, [_scored(pred, label)])
    wide = label[0].long()
    mask = wide != ignore_index
    theirs = IoUMetric.intersect_and_union(pred[mask], wide[mask], num_classes, 256)
    assert torch.equal(metric.results[0], torch.stack([a.float() for a in theirs]))
    high = max(int(label.max()), num_classes - 1)
    one_count = (dtype != np.uint16 and not 0 <= ignore_index < num_classes
                 and (high + 1) * num_classes <= 2 ** 15)
    assert (checks == []) == one_count          # a uint16 tensor takes the check


def test_check_label_ids_accepts_valid_and_empty():
    label = np.array([[0, 18], [255, 3]], dtype=np.uint8)
    check_label_ids(label, 19, 255, 'a.png')
    check_label_ids(torch.from_numpy(label), 19, 255, 'a.png')
    check_label_ids(torch.zeros((1, 0, 5), dtype=torch.int64), 19, 255, 'a.png')
    check_label_ids(label[::-1, ::-1], 19, 255, 'a.png')           # negative strides


def test_check_label_ids_rejects_float_labels():
    with pytest.raises(TypeError, match='a.png.*integer'):
        check_label_ids(np.zeros((2, 2), np.float32), 19, 255, 'a.png')


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_check_label_ids_on_cuda():
    label = torch.full((1, 1080, 1920), 3, dtype=torch.int64, device='cuda')
    label[0, 0, :3] = torch.tensor([255, 19, -1])
    with pytest.raises(ValueError, match=r'invalid ids \[-1, 19\]'):
        check_label_ids(label, 19, 255, 'a.png')
    check_label_ids(label.clamp(0, 18), 19, 255, 'a.png')


# ---- check_label_files: a missing label found when the stream is built ----------------------

def _cityscapes(root):
    return DATASETS.build({'type': 'CityscapesDataset', 'data_root': root, 'data_prefix': {
        'img_path': 'leftImg8bit/val', 'seg_map_path': 'gtFine/val'}})


def test_check_label_files_names_domain_image_and_label(tmp_path):
    root = make_cityscapes_tree(str(tmp_path / 'cityscapes'))
    check_label_files(_cityscapes(root), 'clean_val')
    label = sorted(glob.glob(osp.join(root, 'gtFine', 'val', '*',
                                      '*_gtFine_labelTrainIds.png')))[2]
    os.remove(label)
    image = label.replace(osp.join('gtFine', ''), osp.join('leftImg8bit', '')).replace(
        '_gtFine_labelTrainIds.png', '_leftImg8bit.png')
    ds = _cityscapes(root)                 # mmseg builds it without complaint
    with pytest.raises(FileNotFoundError) as err:
        check_label_files(ds, 'clean_val')
    assert str(err.value) == (f'clean_val: image {image} has no label file; '
                              f'expected {label}')


def test_check_label_files_skips_unlabelled_dataset(tmp_path):
    root = make_cityscapes_tree(str(tmp_path / 'cityscapes'))
    ds = DATASETS.build({'type': 'CityscapesDataset', 'data_root': root,
                         'data_prefix': {'img_path': 'leftImg8bit/val'}})
    assert len(ds) == 4 and 'seg_map_path' not in ds.get_data_info(0)
    check_label_files(ds, 'unlabelled')
