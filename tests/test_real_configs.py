"""The shipped SegFormer-B5 and DeepLabV3+-R50 stream configs load and run (random init, CPU)."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
from engine_utils import REPO
from fixture_data import make_acdc_tree
from mmengine.config import Config

from stag_seg.engine.launch import load_tta_config, run_tta
from stag_seg.reports import load_records

CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*', '*_cs2acdc_*.py')))
TINY = {
    'test_dataloader.num_workers': 0,
    'test_dataloader.persistent_workers': False,
    'test_dataloader.dataset.pipeline.1.scale': (128, 64),
    'test_cfg.num_rounds': 1,
    'test_cfg.progress': False,
    'test_cfg.random_init': True,
}


@pytest.fixture(scope='module')
def acdc(tmp_path_factory):
    return make_acdc_tree(str(tmp_path_factory.mktemp('data') / 'acdc'), size=(128, 64),
                          sequences=('GOPR0475', ), frames_per_sequence=1)


def test_every_model_has_every_method_variant():
    names = {osp.basename(c) for c in CONFIGS}
    for model in ('segformer_mit-b5', 'deeplabv3plus_r50-d8'):
        for method in ('source', 'tent', 'tent-pl', 'tent-stag', 'bn-adapt', 'eata',
                       'eata-stag', 'sar', 'sar-stag'):
            assert f'{model}_cs2acdc_{method}.py' in names


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_is_the_acdc_stream_with_its_method(path):
    cfg = Config.fromfile(path)
    method = osp.splitext(osp.basename(path))[0].split('_cs2acdc_')[1]
    loop = cfg.test_cfg
    assert loop.type == 'ContinualTTALoop' and '_delete_' not in loop
    assert [d.name for d in loop.domains] == ['fog', 'night', 'rain', 'snow']
    assert loop.num_rounds == 10 and loop.optimizer.lr == pytest.approx(6e-5 / 8)
    assert loop.method.type == method.replace('-stag', '')
    hooks = [h.type for h in cfg.get('custom_hooks', [])]
    assert hooks == (['STAGHook'] if method.endswith('stag') else [])
    dataset = cfg.test_dataloader.dataset
    assert dataset.type == 'ACDCDataset' and dataset.split == 'train'
    assert cfg.test_dataloader.batch_size == 1
    assert 'SyncBN' not in cfg.pretty_text
    if method.startswith('cotta'):
        # CoTTA's code: the views from the loaded image (its base view: 960x540 keeping the
        # ratio), the teacher's views in slide mode with CoTTA's crop and stride
        assert dataset.pipeline[-1] == dict(
            type='MultiScaleFlipViews', scale=(960, 540), flip=True,
            ratios=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
        assert not [t for t in dataset.pipeline if t.type == 'Resize']
        assert cfg.model.test_cfg == dict(mode='slide', crop_size=(1024, 1024),
                                          stride=(768, 768))
    else:
        assert {'type': 'Resize', 'scale': (960, 540), 'keep_ratio': True} in dataset.pipeline
        assert cfg.model.test_cfg.mode == 'whole'
    # CoTTA's code builds a new Adam at each domain visit for its CoTTA and its TENT
    protocol = method.startswith(('cotta', 'tent-pl'))
    assert loop.get('optimizer_reset', 'never') == ('domain' if protocol else 'never')
    assert loop.method.get('loss_resolution', 'head') == ('label' if protocol else 'head')


def test_segformer_b5_tent_stag_runs_through_the_cli(tmp_path, acdc):
    config = osp.join(REPO, 'configs', 'segformer', 'segformer_mit-b5_cs2acdc_tent-stag.py')
    options = [f'{k}={v}'.replace(' ', '') for k, v in TINY.items()]
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'test_tta.py'), config, '--work-dir',
         str(tmp_path / 'w'), '--cfg-options', f'test_dataloader.dataset.data_root={acdc}',
         *options], capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': REPO})
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = load_records(str(tmp_path / 'w'))
    assert [(r['method'], r['domain']) for r in records] == [
        ('tent+stag', c) for c in ('fog', 'night', 'rain', 'snow')]


def test_deeplabv3plus_tent_runs_with_batch_norm_on_one_image(tmp_path, acdc):
    config = osp.join(REPO, 'configs', 'deeplabv3plus', 'deeplabv3plus_r50-d8_cs2acdc_tent.py')
    options = {**TINY, 'test_dataloader.dataset.data_root': acdc,
               'test_cfg.domains': [dict(name='fog', dataset=dict(condition='fog'))]}
    run = load_tta_config(config, str(tmp_path / 'w'), options)
    run_tta(run)
    [record] = load_records(str(tmp_path / 'w'))
    assert record['domain'] == 'fog' and record['skipped_updates'] == 0


@pytest.mark.skipif(os.environ.get('STAG_TEST_B5_COTTA') != '1',
                    reason='about an hour on 2 CPU cores; STAG_TEST_B5_COTTA=1 runs it')
def test_nvlabs_b5_cotta_protocol_runs_on_1080p_acdc(tmp_path):
    """CoTTA's protocol on NVlabs' SegFormer-B5 (random init) over 2 images per condition of
    a 1920x1080 ACDC tree: 14 views from the original, the teacher sliding (30 windows per
    image), one round; every domain is scored (the README's command, as a test)."""
    acdc = make_acdc_tree(str(tmp_path / 'acdc'), sequences=('GOPR0475', 'GP010476'),
                          frames_per_sequence=1, size=(1920, 1080))
    config = osp.join(REPO, 'configs', 'segformer', 'segformer_mit-b5-nvlabs_cs2acdc_cotta.py')
    options = {'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False,
               'test_dataloader.dataset.data_root': acdc, 'test_cfg.num_rounds': 1,
               'test_cfg.random_init': True}
    run_tta(load_tta_config(config, str(tmp_path / 'w'), options))
    records = load_records(str(tmp_path / 'w'))
    assert [(r['domain'], r['num_images']) for r in records] == [
        (c, 2) for c in ('fog', 'night', 'rain', 'snow')]
