"""ACDCDataset file pairing and validation errors, the Cityscapes fixture, label-id checks."""
import glob
import os
import os.path as osp
import re
import shutil

import numpy as np
import pytest
import torch
from fixture_data import make_acdc_tree, make_cityscapes_tree
from mmseg.registry import DATASETS

from stag_seg.datasets import ACDCDataset, check_label_ids  # imports stag_seg: mmseg usable


@pytest.fixture(scope='module')
def acdc_root(tmp_path_factory):
    return make_acdc_tree(str(tmp_path_factory.mktemp('acdc')), conditions=('fog', 'night'))


def _pairs(ds):
    return [(ds.get_data_info(i)['img_path'], ds.get_data_info(i)['seg_map_path'])
            for i in range(len(ds))]


def _copy(acdc_root, tmp_path):
    return shutil.copytree(acdc_root, str(tmp_path / 'acdc'))


@pytest.mark.parametrize('condition', ['fog', 'night'])
def test_loads_exact_sorted_pairs(acdc_root, condition):
    ds = ACDCDataset(condition, data_root=acdc_root)
    imgs = sorted(glob.glob(osp.join(acdc_root, 'rgb_anon', condition, 'train', '*',
                                     '*_rgb_anon.png')))
    expected = [(p, p.replace(osp.join('rgb_anon', ''), osp.join('gt', ''))
                 .replace('_rgb_anon.png', '_gt_labelTrainIds.png')) for p in imgs]
    assert len(expected) == 4
    assert _pairs(ds) == expected
    assert not any('_ref' in img for img, _ in _pairs(ds))
    assert len(ds.metainfo['classes']) == 19
    assert ds.metainfo['palette'][0] == [128, 64, 128]


def test_registry_build_and_pipeline(acdc_root):
    ds = DATASETS.build({
        'type': 'ACDCDataset', 'condition': 'night', 'data_root': acdc_root,
        'pipeline': [{'type': 'mmseg.LoadImageFromFile'}, {'type': 'mmseg.LoadAnnotations'}]})
    assert isinstance(ds, ACDCDataset)
    sample = ds[0]
    assert sample['img'].shape == (32, 64, 3)
    label = sample['gt_seg_map']
    assert label.shape == (32, 64)
    check_label_ids(label, 19, 255, ds.get_data_info(0)['seg_map_path'])
    assert (label == 255).any() and (label < 19).any()


def test_unknown_condition():
    with pytest.raises(ValueError, match=r"condition='haze'"):
        ACDCDataset('haze', data_root='unused')


def test_missing_data_root(tmp_path):
    root = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match=re.escape(root)):
        ACDCDataset('fog', data_root=root)


def test_missing_split_folder(acdc_root):
    with pytest.raises(FileNotFoundError,
                       match=re.escape(osp.join(acdc_root, 'rgb_anon', 'fog', 'val'))):
        ACDCDataset('fog', split='val', data_root=acdc_root)


def test_missing_condition_folder(acdc_root):
    with pytest.raises(FileNotFoundError,
                       match=re.escape(osp.join(acdc_root, 'rgb_anon', 'rain', 'train'))):
        ACDCDataset('rain', data_root=acdc_root)


def test_missing_gt_folder(acdc_root, tmp_path):
    root = _copy(acdc_root, tmp_path)
    shutil.rmtree(osp.join(root, 'gt', 'fog', 'train'))
    with pytest.raises(FileNotFoundError,
                       match=re.escape(osp.join(root, 'gt', 'fog', 'train'))):
        ACDCDataset('fog', data_root=root)


def test_image_without_label(acdc_root, tmp_path):
    root = _copy(acdc_root, tmp_path)
    label = sorted(glob.glob(osp.join(root, 'gt', 'fog', 'train', '*',
                                      '*_gt_labelTrainIds.png')))[1]
    os.remove(label)
    img = label.replace(osp.join('gt', ''), osp.join('rgb_anon', '')).replace(
        '_gt_labelTrainIds.png', '_rgb_anon.png')
    with pytest.raises(FileNotFoundError) as err:
        ACDCDataset('fog', data_root=root)
    assert img in str(err.value) and label in str(err.value)


def test_empty_domain(tmp_path):
    root = str(tmp_path / 'acdc')
    for sub in ('rgb_anon', 'gt'):
        os.makedirs(osp.join(root, sub, 'snow', 'train', 'GOPR0001'))
    with pytest.raises(ValueError, match='empty domain') as err:
        ACDCDataset('snow', data_root=root)
    assert osp.join(root, 'rgb_anon', 'snow', 'train') in str(err.value)


def test_cityscapes_fixture_loads(tmp_path):
    root = make_cityscapes_tree(str(tmp_path / 'cityscapes'))
    ds = DATASETS.build({'type': 'CityscapesDataset', 'data_root': root, 'data_prefix': {
        'img_path': 'leftImg8bit/val', 'seg_map_path': 'gtFine/val'}})
    assert type(ds).__name__ == 'CityscapesDataset'
    pairs = _pairs(ds)
    assert len(pairs) == 4
    assert [osp.basename(img) for img, _ in pairs] == [
        'frankfurt_000000_000019_leftImg8bit.png', 'frankfurt_000000_000020_leftImg8bit.png',
        'lindau_000000_000019_leftImg8bit.png', 'lindau_000000_000020_leftImg8bit.png']
    assert all(seg.endswith('_gtFine_labelTrainIds.png') and osp.isfile(seg)
               for _, seg in pairs)


def test_check_label_ids_accepts_valid():
    label = np.array([[0, 18], [255, 3]], dtype=np.uint8)
    check_label_ids(label, 19, 255, 'a.png')
    check_label_ids(torch.from_numpy(label), 19, 255, 'a.png')


@pytest.mark.parametrize('to_tensor', [False, True])
def test_check_label_ids_rejects_invalid(to_tensor):
    label = np.array([[0, 19], [254, 255]], dtype=np.uint8)
    label = torch.from_numpy(label) if to_tensor else label
    with pytest.raises(ValueError, match=r'some/dir/x_gt_labelTrainIds\.png') as err:
        check_label_ids(label, 19, 255, 'some/dir/x_gt_labelTrainIds.png')
    assert '19, 254' in str(err.value)
