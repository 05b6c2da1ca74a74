"""The adapter as the home of the step: a user's own method runs through the unchanged loop
and resumes; AMP; a misconfigured classifier; TENT's BatchNorm mode; mixed-order attribution."""
import copy
import glob
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from engine_utils import REPO, build_runner
from fixture_data import make_acdc_tree
from torch import nn

from stag_seg.engine.adapter import TTAAdapter
from stag_seg.methods import StepResult, Tent
from stag_seg.plugins import STAGHook
from stag_seg.registry import TTA_METHODS
from stag_seg.reports import load_records
from stag_seg.step.learner import Learner

STAG_CONFIG = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc_stag.py')


@TTA_METHODS.register_module(name='test-ema-teacher', force=True)
class EMATeacher(Tent):
    """A method written by a user, outside the package: TENT on the student, but the scored
    prediction is a teacher's (an EMA of the student, ``momentum`` per step); counts its
    updates. Teacher and count are its own state."""

    def __init__(self, momentum: float = 0.5) -> None:
        self.momentum = momentum

    def configure_model(self, model: nn.Module) -> None:
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)   # source, as deployed
        self.steps = 0
        super().configure_model(model)

    def forward_and_adapt(self, learner: Learner, batch: dict, adapt: bool) -> StepResult:
        scored = learner.predict(self.teacher, batch)
        student = super().forward_and_adapt(learner, batch, adapt)
        return StepResult(scored, student.attempted, student.updated,
                          {'teacher_updates': int(student.updated)})

    def after_update(self, learner: Learner) -> None:
        self.steps += 1
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), learner.model.parameters(), strict=True):
                t.mul_(self.momentum).add_(s, alpha=1 - self.momentum)

    def state_dict(self) -> dict:
        return {'teacher': self.teacher.state_dict(), 'steps': self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.load_state_dict(state['teacher'])
        self.steps = state['steps']


@pytest.fixture(scope='module')
def acdc(tmp_path_factory):
    return make_acdc_tree(str(tmp_path_factory.mktemp('data') / 'acdc'), size=(128, 64))


def _strip(records):
    return [{k: v for k, v in r.items() if k not in ('method', 'teacher_updates')}
            for r in records]


def test_user_method_scores_its_teacher_through_the_unchanged_loop(tmp_path, acdc):
    build_runner(str(tmp_path / 'source'), acdc, **{'test_cfg.method.type': 'source'}).test()
    runner = build_runner(str(tmp_path / 'ema'), acdc,
                          **{'test_cfg.method': dict(type='test-ema-teacher', momentum=1.0)})
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.test()
    # momentum 1: the teacher stays the source model, so its scores are exactly the source's
    assert _strip(load_records(str(tmp_path / 'ema'))) == _strip(
        load_records(str(tmp_path / 'source')))
    assert any(not torch.equal(v, before[k]) for k, v in runner.model.state_dict().items())
    records = load_records(str(tmp_path / 'ema'))
    assert [r['teacher_updates'] for r in records] == [4] * 8
    assert runner.test_loop.adapter.method.steps == 32


def test_user_method_state_survives_kill_and_resume(tmp_path, acdc):
    method = {'test_cfg.method': dict(type='test-ema-teacher', momentum=0.5)}
    build_runner(str(tmp_path / 'full'), acdc, **method).test()
    crash = [dict(type='CrashAfterItersHook', iters=13)]
    with pytest.raises(KeyboardInterrupt):
        build_runner(str(tmp_path / 'part'), acdc, custom_hooks=crash, **method).test()
    resumed = build_runner(str(tmp_path / 'part'), acdc, resume=True, **method)
    resumed.test()
    full = open(tmp_path / 'full' / 'results.jsonl', 'rb').read()
    assert open(tmp_path / 'part' / 'results.jsonl', 'rb').read() == full
    assert resumed.test_loop.adapter.method.steps == 32
    state = torch.load(tmp_path / 'part' / 'tta_state.pth', weights_only=True)
    assert state['adapter']['method']['steps'] == 32


def test_bf16_autocast_runs_tent_and_stag_with_float32_losses(tmp_path, acdc):
    runner = build_runner(str(tmp_path / 'w'), acdc, num_rounds=1)
    batch = next(iter(runner.build_dataloader(_fog_loader(runner))))
    model = copy.deepcopy(runner.model)
    adapter = TTAAdapter(model, Tent(), plugins=[STAGHook()], amp='bf16')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = adapter.forward(batch, grad=True)
    assert ctx.logits.dtype == torch.bfloat16
    ctx.losses = Tent().loss(ctx)
    adapter.add_plugin_losses(ctx)
    assert {k: v.dtype for k, v in ctx.losses.items()} == {'loss_entropy': torch.float32,
                                                           'loss_stag': torch.float32}
    assert adapter.update(ctx)
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())
    for config in (None, STAG_CONFIG):
        work_dir = str(tmp_path / f'amp_{config is None}')
        build_runner(work_dir, acdc, num_rounds=1, **({'config': config} if config else {}),
                     **{'test_cfg.amp': 'bf16'}).test()
        assert [r['skipped_updates'] for r in load_records(work_dir)] == [0] * 4


def _fog_loader(runner):
    cfg = runner.cfg.test_dataloader.copy()
    cfg.dataset.condition = 'fog'
    return cfg


def test_classifier_that_is_never_called_fails_before_the_first_update(tmp_path, acdc):
    aux = dict(type='FCNHead', in_channels=16, in_index=1, channels=8, num_convs=1,
               concat_input=False, num_classes=19, norm_cfg=dict(type='BN'),
               loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4))
    runner = build_runner(str(tmp_path / 'w'), acdc, config=STAG_CONFIG,
                          **{'model.auxiliary_head': aux,
                             'test_cfg.classifier': 'auxiliary_head.conv_seg'})
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    with pytest.raises(RuntimeError, match=r"test_cfg.classifier='auxiliary_head.conv_seg' "
                                           r'was not called.*STAGHook'):
        runner.test()
    for key, value in runner.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not osp.exists(tmp_path / 'w' / 'results.jsonl')


def test_tent_normalises_batchnorm_with_test_batch_statistics():
    torch.manual_seed(0)
    conv, bn, pooled_bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4)
    for norm in (bn, pooled_bn):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 1.5)
        norm.bias.data.uniform_(-0.5, 0.5)
    model = nn.ModuleDict(dict(conv=conv, bn=bn, pooled=pooled_bn))
    Tent().configure_model(model)
    stats = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
    x = torch.randn(1, 3, 8, 8)
    h = conv(x)
    out = bn(h)
    mean, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
    expected = ((h - mean) / torch.sqrt(var + bn.eps) * bn.weight[None, :, None, None]
                + bn.bias[None, :, None, None])
    torch.testing.assert_close(out, expected)
    g = h.mean((2, 3), keepdim=True)                # one value per channel at batch 1
    expected_pooled = ((g - pooled_bn.running_mean[None, :, None, None])
                       / torch.sqrt(pooled_bn.running_var[None, :, None, None] + pooled_bn.eps)
                       * pooled_bn.weight[None, :, None, None]
                       + pooled_bn.bias[None, :, None, None])
    torch.testing.assert_close(pooled_bn(g), expected_pooled)
    for key, value in model.state_dict().items():
        if 'running' in key:
            assert torch.equal(value, stats[key]), key        # running statistics untouched


def test_mixed_batches_are_attributed_by_each_samples_own_domain(tmp_path, acdc):
    out = tmp_path / 'preds'
    build_runner(str(tmp_path / 'w'), acdc, num_rounds=1,
                 **{'test_cfg.order': 'mixed', 'test_dataloader.batch_size': 3,
                    'test_cfg.out_dir': str(out)}).test()
    records = load_records(str(tmp_path / 'w'))
    assert [(r['domain'], r['num_images']) for r in records] == [
        (c, 4) for c in ('fog', 'night', 'rain', 'snow')]
    for record in records:
        files = sorted(glob.glob(str(out / 'round_1' / record['domain'] / '**' / '*.png'),
                                 recursive=True))
        assert len(files) == 4
        for path in files:                       # each prediction sits under its own domain
            assert f"/rgb_anon/{record['domain']}/" in path
            assert cv2.imread(path, cv2.IMREAD_UNCHANGED).shape == (64, 128)
    assert np.isfinite([r['mIoU'] for r in records]).all()
