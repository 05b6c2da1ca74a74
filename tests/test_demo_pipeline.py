"""The demo's pipeline and ablation on a tiny generated stream with a random-init source model."""
import os.path as osp

import cv2
import pytest
import torch
from engine_utils import REPO
from mmengine.config import Config
from mmengine.runner import save_checkpoint
from mmseg.registry import MODELS

from stag_seg.demo.ablation import run_ablation, setting_name
from stag_seg.demo.pipeline import run_demo
from stag_seg.demo.source_model import DEMO_MODEL_CONFIG

TINY_DATA = dict(num_train=1, num_val=2, size=(256, 128))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(osp.join(REPO, DEMO_MODEL_CONFIG)).model)
    model.init_weights()
    path = str(tmp_path_factory.mktemp('ckpt') / 'demo.pth')
    save_checkpoint({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def test_demo_writes_tables_plot_and_qualitative_figure(tmp_path, checkpoint, capsys):
    data, work = str(tmp_path / 'data'), str(tmp_path / 'work')
    runs = run_demo(data, work, checkpoint, rounds=1, images_per_condition=2,
                    data_kwargs=TINY_DATA)
    out = capsys.readouterr().out
    assert list(runs) == ['source', 'tent', 'tent+stag']
    for name, records in runs.items():
        assert [(r['domain'], r.get('adapted', True)) for r in records] == [
            ('fog', True), ('night', True), ('rain', True), ('snow', True),
            ('clean_val', False)]
        assert osp.isfile(osp.join(work, name.replace('+', '_'), 'results.md'))
        assert f"{records[0]['mIoU']:.2f}" in out
    assert 'Methods compared' in out and 'tent+stag' in out
    assert cv2.imread(osp.join(work, 'compare_miou.png')) is not None
    figure = cv2.imread(osp.join(work, 'qualitative.png'))
    assert figure.shape == (8 * (128 + 22), 5 * 256, 3)    # 2 per condition x 5 panels
    # the source model never adapts, so its clean-val score is the same as no stream at all
    assert runs['source'][-1]['skipped_updates'] == 0


def test_ablation_runs_each_setting_against_tent(tmp_path, checkpoint):
    data = str(tmp_path / 'data')
    run_demo(data, str(tmp_path / 'demo'), checkpoint, rounds=1, images_per_condition=2,
             methods=['source'], data_kwargs=TINY_DATA)
    grid = [dict(loss_weight=2.0, grad_space='classifier', tau=0.5)]
    runs, table = run_ablation(grid, data, str(tmp_path / 'ablation'), checkpoint, rounds=1)
    name = setting_name(grid[0])
    assert list(runs) == ['tent', name]
    assert all(r['method'] == name for r in runs[name])
    assert name in table and 'tent' in table
    assert runs[name] != runs['tent']
