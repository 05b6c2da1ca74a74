"""ACDCDataset file pairing, order and validation errors; the Cityscapes fixture."""
import glob
import os
import os.path as osp
import re
import shutil

import pytest
from fixture_data import make_acdc_tree, make_cityscapes_tree
from mmengine import fileio
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmseg.registry import DATASETS

from stag_seg.datasets import ACDC_CONDITIONS, ACDCDataset, check_label_ids  # imports stag_seg


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


def test_order_is_mmseg_sorted_listing(acdc_root, monkeypatch):
    """mmseg's BaseSegDataset sorts the file listing by image path; ACDCDataset relies on it."""
    listing = fileio.list_dir_or_file

    def reversed_listing(*args, **kwargs):
        return iter(sorted(listing(*args, **kwargs), reverse=True))

    monkeypatch.setattr(fileio, 'list_dir_or_file', reversed_listing)
    ds = ACDCDataset('fog', data_root=acdc_root)
    images = [img for img, _ in _pairs(ds)]
    assert len(images) == 4 and images == sorted(images)
    assert next(reversed_listing(osp.join(acdc_root, 'rgb_anon', 'fog', 'train'),
                                 list_dir=False, recursive=True)) != \
        osp.relpath(images[0], osp.join(acdc_root, 'rgb_anon', 'fog', 'train'))


def test_conditions_are_the_stream_order():
    """The CoTTA protocol's order; the stream config must list the same conditions."""
    assert ACDC_CONDITIONS == ('fog', 'night', 'rain', 'snow')
    cfg = Config.fromfile(osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                                   'configs', '_base_', 'datasets', 'acdc_continual.py'))
    assert tuple(cfg.acdc_conditions) == ACDC_CONDITIONS
    assert [d['name'] for d in cfg.stream_loop['domains']] == list(ACDC_CONDITIONS)


def test_registry_build_and_pipeline(acdc_root):
    # the scope a Runner or load_tta_config sets (another test may have left another one)
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = DATASETS.build({
            'type': 'ACDCDataset', 'condition': 'night', 'data_root': acdc_root,
            'pipeline': [{'type': 'LoadImageFromFile'}, {'type': 'LoadExactAnnotations'}]})
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


def test_images_of_another_type_are_reported_with_count_and_first(acdc_root, tmp_path,
                                                                   monkeypatch):
    import stag_seg.datasets.acdc as acdc_module

    root = _copy(acdc_root, tmp_path)
    folder = osp.join(root, 'rgb_anon', 'fog', 'train')
    first = sorted(glob.glob(osp.join(folder, '*', '*_rgb_anon.png')))[0]
    jpgs = [first.replace('.png', '.jpg'), first.replace('_rgb_anon.png', '_b_rgb_anon.JPEG')]
    for jpg in jpgs:
        shutil.copy(first, jpg)
    logged = []
    monkeypatch.setattr(acdc_module, 'print_log', lambda msg, **kw: logged.append(msg))
    ds = ACDCDataset('fog', data_root=root)
    assert len(ds) == 4
    assert len(logged) == 1 and '\n' not in logged[0]
    assert logged[0].startswith(f'ACDCDataset: 2 image(s) under {folder} are not '
                                f'*_rgb_anon.png and are left out of the stream (first: '
                                f'{min(jpgs)})')
    logged.clear()
    ACDCDataset('night', data_root=root)
    assert logged == []
