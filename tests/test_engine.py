"""The continual TTA engine end to end on fixture trees in the real ACDC/Cityscapes layouts."""
import glob
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from engine_utils import REPO, TINY_CONFIG, build_runner, tiny_options
from fixture_data import make_acdc_tree, make_cityscapes_tree
from mmseg.datasets import CityscapesDataset

from stag_seg.methods import NORM_TYPES
from stag_seg.reports import load_records

RECORD_KEYS = {'method', 'round', 'domain', 'num_images', 'mIoU', 'mAcc', 'aAcc', 'IoU',
               'skipped_updates'}
CONDITIONS = ('fog', 'night', 'rain', 'snow')
CLASSES = CityscapesDataset.METAINFO['classes']


@pytest.fixture
def acdc(tmp_path):
    return make_acdc_tree(str(tmp_path / 'acdc'), size=(128, 64))   # inputs resized to 64x32


def _class_iou(preds: list, labels: list, num_classes: int = 19) -> np.ndarray:
    """(K,) IoU (%) per class from a confusion matrix (NaN where a class has no union)."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    for pred, label in zip(preds, labels, strict=True):
        keep = label != 255
        conf += np.bincount(label[keep].astype(np.int64) * num_classes + pred[keep],
                            minlength=num_classes ** 2).reshape(num_classes, num_classes)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        return inter / union * 100


def _miou(preds: list, labels: list, num_classes: int = 19) -> float:
    """mIoU (%) as mmseg defines it (mean over classes with a union)."""
    return float(np.nanmean(_class_iou(preds, labels, num_classes)))


def _cli(*args):
    env = {**os.environ, 'PYTHONPATH': REPO}
    proc = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'test_tta.py'), *args],
                          capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _options(data_root, **extra):
    return [f'{k}={v}'.replace(' ', '') for k, v in tiny_options(data_root, **extra).items()
            if k not in ('randomness', )]


def test_cli_writes_every_report_and_predictions_that_rescore(tmp_path, acdc):
    work_dir, out = tmp_path / 'work', tmp_path / 'preds'
    _cli(TINY_CONFIG, '--work-dir', str(work_dir), '--out', str(out),
         '--cfg-options', *_options(acdc))
    for name in ('results.jsonl', 'results.csv', 'results.md', 'miou.png'):
        assert (work_dir / name).stat().st_size > 0, name
    assert (work_dir / 'miou.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    records = load_records(str(work_dir))
    assert [(r['round'], r['domain']) for r in records] == [
        (r, c) for r in (1, 2) for c in CONDITIONS]
    table = (work_dir / 'results.md').read_text()
    for record in records:
        assert set(record) == RECORD_KEYS and record['method'] == 'tent'
        assert record['num_images'] == 4 and len(record['IoU']) == 19
        assert f"{record['mIoU']:.2f}" in table
        pred_files = sorted(glob.glob(str(
            out / f"round_{record['round']}" / record['domain'] / 'rgb_anon' / record['domain']
            / 'train' / '*' / '*_labelTrainIds.png')))
        assert len(pred_files) == 4
        preds, labels = [], []
        for path in pred_files:
            rel = osp.relpath(path, out / f"round_{record['round']}" / record['domain'])
            label_path = osp.join(acdc, rel.replace('rgb_anon', 'gt', 1).replace(
                '_labelTrainIds.png', '_gt_labelTrainIds.png'))
            labels.append(cv2.imread(label_path, cv2.IMREAD_UNCHANGED))
            preds.append(cv2.imread(path, cv2.IMREAD_UNCHANGED))
            assert preds[-1].shape == labels[-1].shape == (64, 128)   # label resolution
        assert record['mIoU'] == pytest.approx(_miou(preds, labels), abs=0.006)
        class_iou = _class_iou(preds, labels)
        assert list(record['IoU']) == list(CLASSES)
        for name, value in zip(CLASSES, class_iou, strict=True):
            if np.isnan(value):
                assert record['IoU'][name] is None, name
            else:
                assert record['IoU'][name] == pytest.approx(value, abs=0.006), name


def test_source_scores_the_same_every_round_and_never_updates(tmp_path, acdc):
    runner = build_runner(str(tmp_path / 'w'), acdc, **{'test_cfg.method.type': 'source'})
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.test()
    records = load_records(str(tmp_path / 'w'))
    by_round = {r: [(x['domain'], x['mIoU'], x['IoU']) for x in records if x['round'] == r]
                for r in (1, 2)}
    assert by_round[1] == by_round[2] and len(by_round[1]) == 4
    assert all(r['method'] == 'source' for r in records)
    for key, value in runner.model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize('method', ['tent', 'tent-pl'])
def test_tent_changes_only_norm_affine_parameters(tmp_path, acdc, method):
    runner = build_runner(str(tmp_path / 'w'), acdc, **{'test_cfg.method.type': method})
    model = runner.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    affine = {f'{name}.{p}' for name, m in model.named_modules() if isinstance(m, NORM_TYPES)
              for p in ('weight', 'bias')}
    assert 'backbone.layers.0.2.weight' in affine        # MiT stage-end LayerNorm
    runner.test()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= affine
    assert 'backbone.layers.0.2.weight' in changed
    assert not any('running' in k for k in changed)     # BN uses test-batch statistics
    assert load_records(str(tmp_path / 'w'))[0]['method'] == method


def test_killed_and_resumed_run_gives_the_same_results(tmp_path, acdc):
    build_runner(str(tmp_path / 'full'), acdc).test()
    crash = [dict(type='CrashAfterItersHook', iters=22)]     # round 2, night, 2nd image
    runner = build_runner(str(tmp_path / 'part'), acdc, custom_hooks=crash)
    with pytest.raises(KeyboardInterrupt):
        runner.test()
    assert len(load_records(str(tmp_path / 'part'))) == 5
    build_runner(str(tmp_path / 'part'), acdc, resume=True).test()
    assert load_records(str(tmp_path / 'part')) == load_records(str(tmp_path / 'full'))
    full = torch.load(tmp_path / 'full' / 'tta_state.pth', weights_only=True)
    part = torch.load(tmp_path / 'part' / 'tta_state.pth', weights_only=True)
    for key, value in full['adapter']['model'].items():
        assert torch.equal(value, part['adapter']['model'][key]), key


def test_mixed_stream_is_seeded_and_scored_per_condition(tmp_path, acdc):
    options = {'test_cfg.order': 'mixed', 'test_cfg.num_rounds': 1}
    runner = build_runner(str(tmp_path / 'a'), acdc, **options)
    runner.test()
    order = runner.test_loop.loaders['mixed'].sampler.order
    assert sorted(order) == list(range(16)) and order != list(range(16))
    records = load_records(str(tmp_path / 'a'))
    assert [(r['domain'], r['num_images']) for r in records] == [(c, 4) for c in CONDITIONS]
    build_runner(str(tmp_path / 'b'), acdc, **options).test()
    assert load_records(str(tmp_path / 'b')) == records


def test_forgetting_check_scores_the_source_set_without_updates(tmp_path, acdc):
    cityscapes = make_cityscapes_tree(str(tmp_path / 'cityscapes'), size=(128, 64))
    forgetting = dict(name='cityscapes_val', dataset=dict(
        type='CityscapesDataset', data_root=cityscapes,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 32)),
                  dict(type='LoadAnnotations'), dict(type='PackSegInputs')]))
    runner = build_runner(str(tmp_path / 'w'), acdc, **{'test_cfg.forgetting': forgetting})
    runner.test()
    records = load_records(str(tmp_path / 'w'))
    checks = [r for r in records if r.get('adapted') is False]
    assert [(r['round'], r['domain'], r['num_images']) for r in checks] == [
        (1, 'cityscapes_val', 4), (2, 'cityscapes_val', 4)]
    assert all(r['skipped_updates'] == 0 for r in checks)
    assert 'cityscapes_val' in (tmp_path / 'w' / 'results.md').read_text()


def test_non_finite_loss_skips_the_update_and_counts_it(tmp_path, acdc):
    hooks = [dict(type='NonFiniteLossHook', steps=(3, 11))]
    runner = build_runner(str(tmp_path / 'w'), acdc, custom_hooks=hooks)
    runner.test()
    hook = next(h for h in runner.hooks if type(h).__name__ == 'NonFiniteLossHook')
    for step in (3, 11):
        before, after = hook.snapshots[step]
        for key in before:
            assert torch.equal(before[key], after[key]), key
    skipped = {(r['round'], r['domain']): r['skipped_updates']
               for r in load_records(str(tmp_path / 'w'))}
    assert skipped[(1, 'fog')] == 1 and skipped[(1, 'rain')] == 1
    assert sum(skipped.values()) == 2


def test_reset_per_domain_or_round_restarts_from_the_source_model(tmp_path, acdc):
    def rounds(reset):
        work_dir = str(tmp_path / reset)
        build_runner(work_dir, acdc, **{'test_cfg.reset': reset,
                                        'test_cfg.optimizer.lr': 1e-2}).test()
        records = load_records(work_dir)
        return [[(r['domain'], r['mIoU'], r['IoU']) for r in records if r['round'] == k]
                for k in (1, 2)]
    by_domain, by_round, never = rounds('domain'), rounds('round'), rounds('never')
    assert by_domain[0] == by_domain[1] and by_round[0] == by_round[1]
    assert never[0] != never[1]             # control: without a reset, round 2 differs
    assert by_round[0] == never[0]          # 'round': no reset between a round's domains
    assert by_round[0][0] == by_domain[0][0] and by_round[0][1:] != by_domain[0][1:]


def test_resumed_run_with_resets_restarts_from_the_source_model(tmp_path, acdc):
    options = {'test_cfg.reset': 'round', 'test_cfg.optimizer.lr': 1e-2, 'num_rounds': 3}
    build_runner(str(tmp_path / 'full'), acdc, **options).test()
    crash = [dict(type='CrashAfterItersHook', iters=22)]     # round 2, night
    with pytest.raises(KeyboardInterrupt):
        build_runner(str(tmp_path / 'part'), acdc, custom_hooks=crash, **options).test()
    build_runner(str(tmp_path / 'part'), acdc, resume=True, **options).test()
    assert (tmp_path / 'part' / 'results.jsonl').read_bytes() == (
        tmp_path / 'full' / 'results.jsonl').read_bytes()
