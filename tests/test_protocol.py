"""CoTTA's Cityscapes->ACDC protocol, point by point, against computations written from its
code: a fresh optimizer at each domain visit, TENT in eval mode, the loss at the label's
resolution."""
import copy

import pytest
import torch
from engine_utils import build_runner
from fixture_data import make_acdc_tree
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from stag_seg.engine.config import check_loop_options, run_fingerprint
from stag_seg.reports import load_records

DOMAINS = [dict(name='fog')]


@pytest.fixture
def acdc(tmp_path):
    return make_acdc_tree(str(tmp_path / 'acdc'), size=(128, 64))   # inputs resized to 64x32


@HOOKS.register_module()
class FirstStepOfStageHook(Hook):
    """Keeps, for each stage, the trainable parameters and the optimizer state before and
    after the stage's first step."""

    def __init__(self) -> None:
        self.before, self.after = [], []

    def _take(self, runner) -> dict:
        adapter = runner.test_loop.adapter
        return {'params': [p.detach().clone() for p in adapter.params],
                'optimizer': copy.deepcopy(adapter.optim_wrapper.optimizer.state_dict())}

    def before_test_iter(self, runner, batch_idx, data_batch=None) -> None:
        if batch_idx == 0:
            self.before.append(self._take(runner))

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if batch_idx == 0:
            self.after.append(self._take(runner))


def _first_steps(tmp_path, acdc, optimizer_reset: str, name: str):
    runner = build_runner(str(tmp_path / name), acdc,
                          custom_hooks=[dict(type='FirstStepOfStageHook')],
                          **{'test_cfg.optimizer_reset': optimizer_reset})
    runner.test()
    return next(h for h in runner.hooks if isinstance(h, FirstStepOfStageHook))


def test_optimizer_is_fresh_at_each_domain_visit(tmp_path, acdc):
    """Every domain visit (4 conditions x 2 rounds) starts without Adam state, and its first
    update is Adam's first step written out: p - lr * g / (|g| + eps), with
    m = (1 - b1) g and v = (1 - b2) g^2 (what a newly built torch.optim.Adam does)."""
    hook = _first_steps(tmp_path, acdc, 'domain', 'domain')
    lr, (b1, b2), eps = 6e-5 / 8, (0.9, 0.999), 1e-8
    assert len(hook.before) == 8
    for before, after in zip(hook.before, hook.after, strict=True):
        assert before['optimizer']['state'] == {}
        state = after['optimizer']['state']
        assert len(state) == len(before['params'])
        for index, (p0, p1) in enumerate(zip(before['params'], after['params'], strict=True)):
            assert float(state[index]['step']) == 1
            grad = state[index]['exp_avg'] / (1 - b1)
            torch.testing.assert_close(state[index]['exp_avg_sq'], (1 - b2) * grad ** 2)
            torch.testing.assert_close(p1, p0 - lr * grad / (grad.abs() + eps))
    # the model carries on from one domain to the next (only the optimizer is new)
    assert any(not torch.equal(a, b) for a, b in zip(hook.before[1]['params'],
                                                       hook.before[0]['params'], strict=True))


def test_without_reset_one_optimizer_runs_the_whole_stream(tmp_path, acdc):
    hook = _first_steps(tmp_path, acdc, 'never', 'never')
    steps = [max((float(s['step']) for s in b['optimizer']['state'].values()), default=0)
             for b in hook.before]
    assert steps == [0, 4, 8, 12, 16, 20, 24, 28]        # 4 images per domain


def test_reset_per_domain_survives_kill_and_resume(tmp_path, acdc):
    """Killed mid-domain and resumed: the resumed stream is the uninterrupted one (records
    and final model and optimizer state); the resume point is the last finished domain."""
    options = {'test_cfg.optimizer_reset': 'domain', 'test_cfg.optimizer.lr': 1e-2}
    build_runner(str(tmp_path / 'full'), acdc, **options).test()
    crash = [dict(type='CrashAfterItersHook', iters=22)]     # round 2, night, 2nd image
    with pytest.raises(KeyboardInterrupt):
        build_runner(str(tmp_path / 'part'), acdc, custom_hooks=crash, **options).test()
    build_runner(str(tmp_path / 'part'), acdc, resume=True, **options).test()
    assert (tmp_path / 'part' / 'results.jsonl').read_bytes() == (
        tmp_path / 'full' / 'results.jsonl').read_bytes()
    full = torch.load(tmp_path / 'full' / 'tta_state.pth', weights_only=True)['adapter']
    part = torch.load(tmp_path / 'part' / 'tta_state.pth', weights_only=True)['adapter']
    for key, value in full['model'].items():
        assert torch.equal(value, part['model'][key]), key
    for index, state in full['optimizer']['state'].items():
        assert float(state['step']) == 4                  # the last domain's 4 updates
        for key, value in state.items():
            assert torch.equal(value, part['optimizer']['state'][index][key]), key
    assert len(load_records(str(tmp_path / 'part'))) == 8


def test_optimizer_reset_is_checked_and_in_the_fingerprint(tmp_path, acdc):
    with pytest.raises(ValueError, match=r'test_cfg: optimizer_reset must be one of'):
        check_loop_options(DOMAINS, require_checkpoint=False, optimizer_reset='round')
    with pytest.raises(ValueError, match=r"optimizer_reset='domain' with order='mixed'"):
        check_loop_options(DOMAINS, require_checkpoint=False, optimizer_reset='domain',
                           order='mixed')
    assert check_loop_options(DOMAINS, require_checkpoint=False)['optimizer_reset'] == 'never'
    prints = [run_fingerprint(build_runner(str(tmp_path / r), acdc,
                                           **{'test_cfg.optimizer_reset': r}).cfg, 0)
              for r in ('never', 'domain')]
    assert prints[0]['test_cfg.optimizer_reset'] == "'never'"
    assert prints[1]['test_cfg.optimizer_reset'] == "'domain'"
