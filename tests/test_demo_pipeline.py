"""The demo's run on a tiny generated stream with a random-init source model."""
import glob
import json
import os
import os.path as osp

import cv2
import pytest
import torch
from engine_utils import REPO
from mmengine.config import Config
from mmengine.runner import save_checkpoint
from mmseg.registry import MODELS

from stag_seg.datasets.acdc import ACDC_CONDITIONS
from stag_seg.demo import DEMO_MODEL_CONFIG, run_demo, run_method
from stag_seg.demo.launch import predictions_dir
from stag_seg.demo.synth import cache, ensure_demo_data
from stag_seg.demo.synth.naming import acdc_stem

TINY_DATA = dict(num_train=1, num_val=2, num_per_condition=3, size=(256, 128))   # 3 cached


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(osp.join(REPO, DEMO_MODEL_CONFIG)).model)
    model.init_weights()
    path = str(tmp_path_factory.mktemp('ckpt') / 'demo.pth')
    save_checkpoint({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return str(tmp_path_factory.mktemp('data'))


def _predicted_stems(work, method, round_idx, condition):
    files = glob.glob(osp.join(predictions_dir(work, method), f'round_{round_idx}', condition,
                               '**', '*_labelTrainIds.png'), recursive=True)
    return sorted(osp.basename(f)[:-len('_labelTrainIds.png')] for f in files)


def _first_stems(condition, num):
    return sorted(acdc_stem(condition, i)[1] for i in range(num))


def test_demo_writes_tables_plot_and_qualitative_figure(data, tmp_path, checkpoint, capsys):
    work = str(tmp_path / 'work')
    runs = run_demo(data, work, checkpoint, rounds=1, images_per_condition=2,
                    data_kwargs=TINY_DATA)
    out = capsys.readouterr().out
    assert list(runs) == ['source', 'tent', 'tent+stag']
    for name, records in runs.items():
        assert [(r['domain'], r.get('adapted', True)) for r in records] == [
            ('fog', True), ('night', True), ('rain', True), ('snow', True),
            ('clean_val', False)]
        assert [r['num_images'] for r in records] == [2, 2, 2, 2, 2]   # 2 of 3 cached; val 2
        assert osp.isfile(osp.join(work, name.replace('+', '_'), 'results.md'))
        with open(osp.join(work, name.replace('+', '_'), 'results.jsonl')) as f:
            for line in f:          # plain JSON: no NaN/Infinity constants, no numpy types
                json.loads(line, parse_constant=lambda c: pytest.fail(f'JSON constant {c}'))
        assert f"{records[0]['mIoU']:.2f}" in out
        for cond in ACDC_CONDITIONS:     # the first two rendered images of each condition
            assert _predicted_stems(work, name, 1, cond) == _first_stems(cond, 2)
    assert 'Methods compared' in out and 'tent+stag' in out and '2 of the 3 images' in out
    assert cv2.imread(osp.join(work, 'compare_miou.png')) is not None
    figure = cv2.imread(osp.join(work, 'qualitative.png'))
    assert figure.shape == (8 * (128 + 22), 5 * 256, 3)    # 2 per condition x 5 panels
    # the source model never adapts, so its clean-val score is the same as no stream at all
    assert runs['source'][-1]['skipped_updates'] == 0


def test_fewer_images_reuse_the_cache(data, tmp_path, checkpoint, monkeypatch):
    assert ensure_demo_data(data, 3, **TINY_DATA)[1] == 3      # rendered (by now or before)
    stat = {f: (os.stat(f).st_ino, os.stat(f).st_mtime_ns)
            for f in glob.glob(osp.join(data, '**', '*.*'), recursive=True)}

    def no_render(*args, **kwargs):
        raise AssertionError('re-rendered the demo data for fewer images')

    monkeypatch.setattr(cache, 'run_jobs', no_render)
    work = str(tmp_path / 'work')
    runs = run_demo(data, work, checkpoint, rounds=1, images_per_condition=1,
                    methods=['source'], data_kwargs=TINY_DATA)
    assert [r['num_images'] for r in runs['source']] == [1, 1, 1, 1, 2]
    for cond in ACDC_CONDITIONS:
        assert _predicted_stems(work, 'source', 1, cond) == _first_stems(cond, 1)
    assert {f: (os.stat(f).st_ino, os.stat(f).st_mtime_ns) for f in stat} == stat
    assert cv2.imread(osp.join(work, 'qualitative.png')).shape[0] == 4 * (128 + 22)
    with pytest.raises(ValueError, match='holds 3 images per condition'):
        run_method('tent', data, str(tmp_path / 'more'), checkpoint, rounds=1,
                   images_per_condition=4)


def test_every_demo_method_runs_and_plugin_options_reach_only_stag_methods(data, tmp_path,
                                                                           checkpoint):
    from stag_seg.demo.launch import DEMO_CONFIGS

    work = str(tmp_path / 'all')
    runs = run_demo(data, work, checkpoint, rounds=1, images_per_condition=1,
                    methods=list(DEMO_CONFIGS), data_kwargs=TINY_DATA,
                    cfg_options={'custom_hooks.0.loss_weight': 0.5})
    assert list(runs) == list(DEMO_CONFIGS)
    for name, records in runs.items():
        assert [r['num_images'] for r in records] == [1, 1, 1, 1, 2], name
        config = Config.fromfile(glob.glob(osp.join(work, name.replace('+', '_'), '*.py'))[0])
        hooks = config.get('custom_hooks') or []
        assert [h['loss_weight'] for h in hooks] == ([0.5] if name.endswith('+stag') else [])
