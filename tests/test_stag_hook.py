"""STAGHook plugged into the continual loop: its term, its seam and its log."""
import glob
import os.path as osp

import pytest
import torch
from engine_utils import REPO, build_runner
from fixture_data import make_acdc_tree
from mmengine.config import Config

from stag_seg.engine.methods import Tent
from stag_seg.engine.tap import ModuleTap
from stag_seg.reports import load_records
from stag_seg.stag import stag_loss, structural_anchors

STAG_CONFIG = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc_stag.py')


@pytest.fixture(scope='module')
def acdc(tmp_path_factory):
    return make_acdc_tree(str(tmp_path_factory.mktemp('data') / 'acdc'), size=(128, 64))


def _final_state(runner):
    runner.test()
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


def test_stag_term_changes_norm_gradients_and_leaves_the_classifier_alone(tmp_path, acdc):
    runner = build_runner(str(tmp_path / 'w'), acdc)
    model = runner.model
    Tent().configure_model(model)
    classifier = model.decode_head.conv_seg
    anchors = structural_anchors(classifier.weight, classifier.bias)
    loader_cfg = runner.cfg.test_dataloader.copy()
    loader_cfg.dataset.condition = 'fog'
    batch = next(iter(runner.build_dataloader(loader_cfg)))
    tap = ModuleTap(classifier)
    grads = {}
    for weight in (0.0, 1.0):
        with torch.enable_grad():
            model.test_step(batch)
            logits = tap.logits()
            loss = Tent().loss(logits)['loss_entropy'] + weight * stag_loss(logits, anchors)
            model.zero_grad()
            loss.backward()
        tap.clear()
        grads[weight] = {n: p.grad.clone() for n, p in model.named_parameters()
                         if p.grad is not None}
        assert classifier.weight.grad is None
    assert grads[0.0].keys() == grads[1.0].keys() and 'backbone.layers.0.2.weight' in grads[1.0]
    assert any(not torch.allclose(grads[0.0][n], grads[1.0][n]) for n in grads[0.0])


def test_zero_weight_gives_exactly_the_tent_trajectory(tmp_path, acdc):
    tent = _final_state(build_runner(str(tmp_path / 'tent'), acdc))
    hooks = [dict(type='STAGHook', loss_weight=0.0)]
    zero = _final_state(build_runner(str(tmp_path / 'zero'), acdc, custom_hooks=hooks))
    for key, value in tent.items():
        assert torch.equal(value, zero[key]), key
    strip = [{k: v for k, v in r.items() if k != 'method'}
             for r in load_records(str(tmp_path / 'tent'))]
    assert strip == [{k: v for k, v in r.items() if k != 'method'}
                     for r in load_records(str(tmp_path / 'zero'))]


@pytest.mark.parametrize('grad_space', ['feature', 'classifier'])
def test_config_with_only_the_hook_runs_stag_and_logs_diagnostics(tmp_path, acdc, grad_space):
    cfg = Config.fromfile(STAG_CONFIG)
    assert cfg.custom_hooks == [dict(type='STAGHook', loss_weight=1.0)]
    work_dir = str(tmp_path / 'stag')
    runner = build_runner(work_dir, acdc, config=STAG_CONFIG,
                          **{'custom_hooks.0.grad_space': grad_space, 'log_level': 'INFO'})
    stag = _final_state(runner)
    tent = _final_state(build_runner(str(tmp_path / 'tent'), acdc))
    assert any(not torch.equal(stag[k], tent[k]) for k in tent)
    records = load_records(work_dir)
    assert {r['method'] for r in records} == {'tent+stag'}
    log = open(glob.glob(osp.join(work_dir, '*', '*.log'))[0]).read()
    assert f'STAG anchors from decode_head.conv_seg (19 classes, {grad_space} space' in log
    for word in ('mean self-entropy H=', 'mean diagonal probability psi=',
                 'structural accuracy='):
        assert word in log
