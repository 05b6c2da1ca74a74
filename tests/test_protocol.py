"""CoTTA's Cityscapes->ACDC protocol, point by point, against computations written from its
code: a fresh optimizer at each domain visit, TENT in eval mode, the loss at the label's
resolution."""
import copy

import pytest
import torch
import torch.nn.functional as F
from engine_utils import TINY_CONFIG, build_runner
from fixture_data import make_acdc_tree
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmseg.registry import DATASETS, HOOKS, MODELS
from torch import nn

from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.config import check_loop_options, run_fingerprint
from stag_seg.methods.cotta import CoTTA
from stag_seg.methods.head_grid import label_resolution_cross_entropy
from stag_seg.methods.tent import TentPseudoLabel
from stag_seg.plugins import TTAPlugin
from stag_seg.reports import load_records

init_default_scope('mmseg')
DOMAINS = [dict(name='fog')]


@pytest.fixture
def acdc(tmp_path):
    return make_acdc_tree(str(tmp_path / 'acdc'), size=(128, 64))   # inputs resized to 64x32


def _batch(data_root: str, views: dict | None = None) -> dict:
    """Two fog images at 64x32, their labels at the original 128x64 (as the stream loads)."""
    pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 32),
                                                     keep_ratio=True),
                dict(type='LoadExactAnnotations'), views or dict(type='PackSegInputs')]
    dataset = DATASETS.build(dict(type='ACDCDataset', data_root=data_root, condition='fog',
                                  pipeline=pipeline))
    return pseudo_collate([dataset[0], dataset[1]])


def _tiny_model_with_source_statistics() -> nn.Module:
    """The tiny SegFormer with BatchNorm running statistics far from any batch's."""
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(TINY_CONFIG).model)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


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


@pytest.mark.parametrize('loss_resolution', ['head', 'label'])
def test_tent_pl_is_cotta_codes_tent_step_in_eval_mode(acdc, loss_resolution):
    """One tent-pl step against the step of CoTTA's ``single_gpu_tent`` written out: the
    model in eval mode (BatchNorm on its running statistics), the norm layers' affine
    parameters in a new Adam, the prediction made before the update, then the cross-entropy
    of the head's logits with the argmax ('head') or, resized bilinearly to the label, with
    the full-resolution prediction ('label': mmseg's decode loss on ``gt_semantic_seg``)."""
    batch = _batch(acdc)
    model = _tiny_model_with_source_statistics()
    reference = copy.deepcopy(model)
    adapter = TTAAdapter(model, TentPseudoLabel(loss_resolution=loss_resolution),
                         optimizer=dict(type='Adam', lr=1e-2))
    assert adapter.method.capturable == (loss_resolution == 'head')
    result = adapter.step(batch, adapt=True)
    assert result.updated

    reference.eval()
    reference.requires_grad_(False)
    norms = [m for m in reference.modules() if isinstance(m, (nn.LayerNorm, nn.BatchNorm2d))]
    params = [p for m in norms for p in (m.weight, m.bias)]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=1e-2)
    data = reference.data_preprocessor(batch, False)
    with torch.no_grad():
        predicted = reference.predict(data['inputs'], copy.deepcopy(data['data_samples']))
    labels = torch.stack([s.pred_sem_seg.data[0] for s in predicted])
    logits = reference.decode_head(reference.extract_feat(data['inputs']))
    if loss_resolution == 'head':
        loss = F.cross_entropy(logits, logits.detach().argmax(1))
    else:
        upsampled = F.interpolate(logits, size=labels.shape[-2:], mode='bilinear',
                                  align_corners=False)
        loss = F.cross_entropy(upsampled, labels)
    loss.backward()
    optimizer.step()

    for sample, label in zip(result.outputs, labels, strict=True):
        assert torch.equal(sample.pred_sem_seg.data[0], label)      # scored before the update
    torch.testing.assert_close(adapter.losses['loss_pseudo_label'], loss.detach())
    expected = dict(reference.named_parameters())
    for name, value in model.named_parameters():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)
    for (name, value), source in zip(model.named_buffers(), reference.buffers(), strict=True):
        assert torch.equal(value, source), name         # running statistics stay the source's
    assert not model.training and not any(m.training for m in model.modules())


def test_label_resolution_loss_is_cross_entropy_of_upsampled_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, 6)
    labels = [torch.randint(0, 5, (12, 18)) for _ in range(2)]
    samples = [type('S', (), {'metainfo': {}})() for _ in range(2)]
    expected = F.cross_entropy(F.interpolate(logits, size=(12, 18), mode='bilinear',
                                             align_corners=False), torch.stack(labels))
    torch.testing.assert_close(label_resolution_cross_entropy(logits, labels, samples), expected)
    corners = F.cross_entropy(F.interpolate(logits, size=(12, 18), mode='bilinear',
                                            align_corners=True), torch.stack(labels))
    torch.testing.assert_close(label_resolution_cross_entropy(logits, labels, samples, True),
                               corners)


class LossRecorder(TTAPlugin):
    """Keeps each step's loss terms and classifier logits."""

    name = 'recorder'

    def __init__(self):
        super().__init__(loss_weight=0.0)
        self.steps = []

    def losses(self, ctx):
        self.steps.append((dict(ctx.losses), ctx.logits.detach().clone()))
        return {}


def test_cotta_label_resolution_loss_upsamples_the_students_logits(acdc):
    """CoTTA's student loss at the label's resolution: the base view's head logits resized
    bilinearly to the full-resolution pseudo-label (the scored prediction), cross-entropy."""
    views = dict(type='TestTimeAugSharedLabel', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (1.0, 1.5)],
        [dict(type='RandomFlip', prob=p, direction='horizontal') for p in (0.0, 1.0)],
        [dict(type='PackSegInputs')]])
    batch = _batch(acdc, views)
    recorder = LossRecorder()
    adapter = TTAAdapter(_tiny_model_with_source_statistics(), CoTTA(loss_resolution='label'),
                         plugins=[recorder], optimizer=dict(type='Adam', lr=1e-3))
    result = adapter.step(batch, adapt=True)
    labels = torch.stack([s.pred_sem_seg.data[0] for s in result.outputs])
    assert labels.shape[-2:] == (64, 128)
    losses, logits = recorder.steps[0]
    expected = F.cross_entropy(F.interpolate(logits, size=(64, 128), mode='bilinear',
                                             align_corners=False), labels)
    torch.testing.assert_close(losses['loss_cotta'], expected)
    with pytest.raises(ValueError, match=r"loss_resolution must be one of \('head', 'label'\)"):
        CoTTA(loss_resolution='input')


def test_optimizer_reset_of_the_captured_step_equals_a_fresh_optimizer(acdc):
    """With ``cuda_graph`` (run eagerly on CPU after the same warm-up) the reset zeroes the
    optimizer's state in place, keeping the captured tensors: the next step equals the step
    of an eager adapter whose optimizer was rebuilt."""
    batch = _batch(acdc)
    fused = dict(type='Adam', lr=1e-2, betas=(0.9, 0.999), fused=True)
    adapters = [TTAAdapter(_tiny_model_with_source_statistics(), TentPseudoLabel(),
                           optimizer=fused, cuda_graph=graph) for graph in (True, False)]
    assert adapters[0].graphed is not None and adapters[1].graphed is None
    for adapter in adapters:
        for _ in range(2):
            assert adapter.step(copy.deepcopy(batch), adapt=True).updated
        adapter.reset_optimizer()
        assert adapter.step(copy.deepcopy(batch), adapt=True).updated
    assert adapters[0].graphed.captures == 1                 # the graph was kept
    for graphed, eager in zip(*(a.model.parameters() for a in adapters), strict=True):
        torch.testing.assert_close(graphed, eager, rtol=1e-4, atol=1e-6)
    for adapter in adapters:
        states = adapter.optim_wrapper.optimizer.state.values()
        assert states and all(float(s['step']) == 1 for s in states)
