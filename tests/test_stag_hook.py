"""STAGHook on the adapter: the term it adds and its gradients equal an independent
computation on the same forward; its options, seam and log."""
import glob
import os.path as osp

import pytest
import torch
from engine_utils import REPO, build_runner
from fixture_data import make_acdc_tree
from mmengine.config import Config

from stag_seg.engine.adapter import TTAAdapter
from stag_seg.methods import Tent
from stag_seg.ops import softmax_entropy
from stag_seg.plugins import STAGHook
from stag_seg.reports import load_records
from stag_seg.stag import stag_loss, structural_anchors
from stag_seg.step.tap import ModuleTap

STAG_CONFIG = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc_stag.py')


@pytest.fixture(scope='module')
def acdc(tmp_path_factory):
    return make_acdc_tree(str(tmp_path_factory.mktemp('data') / 'acdc'), size=(128, 64))


@pytest.fixture(scope='module')
def model_and_batch(acdc, tmp_path_factory):
    """The tiny segformer (random init, seed 0) and one fog batch from its stream loader."""
    runner = build_runner(str(tmp_path_factory.mktemp('w')), acdc)
    loader_cfg = runner.cfg.test_dataloader.copy()
    loader_cfg.dataset.condition = 'fog'
    batch = next(iter(runner.build_dataloader(loader_cfg)))
    return runner.model, batch


def _step_gradients(model, batch, hook: STAGHook | None, lr: float = 0.0):
    """One adapter step (Adam at ``lr``) of TENT (+ ``hook``) on a fresh copy of ``model``;
    returns the loss terms and the gradients of the trainable parameters before the step."""
    model = __import__('copy').deepcopy(model)
    adapter = TTAAdapter(model, Tent(), plugins=[hook] if hook else [],
                         optimizer=dict(type='SGD', lr=lr))
    captured = {}

    class Spy:
        def __init__(self, wrapper):
            self.wrapper = wrapper

        def __getattr__(self, name):
            return getattr(self.wrapper, name)

        def step(self, **kwargs):
            captured['grads'] = {n: p.grad.clone() for n, p in model.named_parameters()
                                 if p.grad is not None}
            self.wrapper.step(**kwargs)

    adapter.optim_wrapper = Spy(adapter.optim_wrapper)
    ctx = adapter.forward(batch, grad=True)
    ctx.losses = Tent().loss(ctx)
    adapter.add_plugin_losses(ctx)
    terms = {k: v.detach().clone() for k, v in ctx.losses.items()}
    assert adapter.update(ctx)
    adapter.close()
    return model, terms, captured['grads']


def _reference(model, batch, weight: float, **stag):
    """Independent: TENT + weight * stag_loss on the same forward, by hand with a tap and
    torch.autograd.grad."""
    import copy

    model = copy.deepcopy(model)
    Tent().configure_model(model)
    classifier = model.decode_head.conv_seg
    anchors = structural_anchors(classifier.weight, classifier.bias,
                                 stag.get('tau', 1.0), stag.get('grad_space', 'classifier'))
    tap = ModuleTap(classifier, keep_inputs=True)
    with torch.enable_grad():
        model.test_step(batch)
        logits, feats = tap.logits(), tap.features()
        if stag.get('detach_feats'):
            feats = feats.detach()
        term = stag_loss(logits, anchors, feats=feats, conf_thresh=stag.get('conf_thresh'))
        total = softmax_entropy(logits, dim=1).mean() + weight * term
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        grads = torch.autograd.grad(total, list(params.values()), allow_unused=True)
    tap.remove()
    return weight * term.detach(), {n: g for n, g in zip(params, grads, strict=True)
                                    if g is not None}


@pytest.fixture(scope='module')
def median_confidence(model_and_batch):
    """The median max-probability of the classifier pixels: a threshold that keeps half."""
    model, batch = model_and_batch
    tap = ModuleTap(model.decode_head.conv_seg)
    with torch.enable_grad():
        model.test_step(batch)
    confidence = tap.logits().detach().softmax(1).amax(1)
    tap.remove()
    return confidence.median().item()


@pytest.mark.parametrize('stag', [
    dict(grad_space='classifier'),
    dict(grad_space='feature'),
    dict(grad_space='classifier', conf_thresh='median'),
    dict(grad_space='feature', conf_thresh='median'),
    dict(grad_space='classifier', tau=0.5),
])
def test_term_and_gradients_equal_an_independent_computation(model_and_batch, stag,
                                                             median_confidence):
    model, batch = model_and_batch
    if stag.get('conf_thresh') == 'median':
        stag = {**stag, 'conf_thresh': median_confidence}
    hook = STAGHook(loss_weight=2.0, **stag)
    _, terms, grads = _step_gradients(model, batch, hook)
    expected_term, expected_grads = _reference(model, batch, 2.0, **stag)
    torch.testing.assert_close(terms['loss_stag'], expected_term, rtol=1e-5, atol=1e-7)
    assert grads.keys() == expected_grads.keys() and 'backbone.layers.0.2.weight' in grads
    for name, grad in expected_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-7, msg=name)
    assert 'decode_head.conv_seg.weight' not in grads        # W is not adapted under TENT


def test_conf_thresh_and_feature_grad_change_the_term_as_computed_independently(
        model_and_batch, median_confidence):
    model, batch = model_and_batch
    _, all_pixels, _ = _step_gradients(model, batch, STAGHook(grad_space='classifier'))
    _, confident, _ = _step_gradients(model, batch, STAGHook(grad_space='classifier',
                                                             conf_thresh=median_confidence))
    assert abs(all_pixels['loss_stag'] - confident['loss_stag']) > 1e-3
    _, _, detached = _step_gradients(model, batch, STAGHook(grad_space='classifier',
                                                            feature_grad=False))
    _, expected = _reference(model, batch, 2.0, grad_space='classifier', detach_feats=True)
    for name, grad in expected.items():
        torch.testing.assert_close(detached[name], grad, rtol=1e-4, atol=1e-7, msg=name)


def test_zero_weight_is_the_tent_trajectory_through_the_plug_in_path(tmp_path, acdc):
    tent = build_runner(str(tmp_path / 'tent'), acdc)
    tent.test()
    hooks = [dict(type='STAGHook', loss_weight=0.0)]
    zero = build_runner(str(tmp_path / 'zero'), acdc, custom_hooks=hooks)
    zero.test()
    plugin = next(h for h in zero.hooks if isinstance(h, STAGHook))
    assert plugin.anchors is not None and plugin.loss_weight == 0.0   # the term was built
    for key, value in tent.model.state_dict().items():
        assert torch.equal(value, zero.model.state_dict()[key]), key
    strip = [{k: v for k, v in r.items() if k != 'method'}
             for r in load_records(str(tmp_path / 'tent'))]
    assert strip == [{k: v for k, v in r.items() if k != 'method'}
                     for r in load_records(str(tmp_path / 'zero'))]


@pytest.mark.parametrize('option, value, message', [
    ('tau', 0, 'tau must be > 0'),
    ('loss_weight', -1, 'loss_weight must be >= 0'),
    ('conf_thresh', 1.5, 'conf_thresh must be <= 1'),
    ('grad_space', 'foo', 'grad_space must be one of'),
    ('impl', 'fast', 'impl must be one of'),
])
def test_bad_options_are_named(option, value, message):
    with pytest.raises(ValueError, match=message):
        STAGHook(**{option: value})


@pytest.mark.parametrize('grad_space', ['feature', 'classifier'])
def test_config_with_only_the_hook_runs_stag_and_logs_diagnostics(tmp_path, acdc, grad_space):
    cfg = Config.fromfile(STAG_CONFIG)
    assert cfg.custom_hooks == [dict(type='STAGHook', loss_weight=1.0)]
    work_dir = str(tmp_path / 'stag')
    runner = build_runner(work_dir, acdc, config=STAG_CONFIG,
                          **{'custom_hooks.0.grad_space': grad_space, 'log_level': 'INFO'})
    runner.test()
    tent = build_runner(str(tmp_path / 'tent'), acdc)
    tent.test()
    assert any(not torch.equal(v, tent.model.state_dict()[k])
               for k, v in runner.model.state_dict().items())
    records = load_records(work_dir)
    assert {r['method'] for r in records} == {'tent+stag'}
    log = open(glob.glob(osp.join(work_dir, '*', '*.log'))[0]).read()
    assert f'STAG anchors from decode_head.conv_seg (19 classes, {grad_space} space' in log
    for word in ('mean self-entropy H=', 'mean diagonal probability psi=',
                 'structural accuracy='):
        assert word in log


def test_hook_with_an_adapting_classifier_uses_its_current_weight_detached():
    """CoTTA adapts the classifier: the hook keeps the source anchors a_k = W0^T v_k but builds
    each pixel's gradient g = W^T u with the current W, a constant of the term (no gradient
    into W through it)."""
    import logging

    from stag_seg.stag.entropy import entropy_logit_grad
    from stag_seg.step.context import StepContext

    torch.manual_seed(5)
    classifier = torch.nn.Conv2d(8, 5, 1).double()
    w0 = classifier.weight.detach().flatten(1).clone()
    anchors0 = structural_anchors(classifier.weight, classifier.bias, grad_space='feature')
    hook = STAGHook(loss_weight=1.5, grad_space='feature')
    hook.setup(classifier, 'decode_head.conv_seg', logging.getLogger('test'))
    with torch.no_grad():                                   # the update moved W
        classifier.weight.add_(0.5 * torch.randn_like(classifier.weight))
    w = classifier.weight.detach().flatten(1)
    logits = torch.randn(2, 5, 3, 4, dtype=torch.float64, requires_grad=True)
    term = hook.losses(StepContext(outputs=[], logits=logits))['loss_stag']

    rows = logits.detach().permute(0, 2, 3, 1).reshape(-1, 5)
    u, _ = entropy_logit_grad(rows, dim=1)
    expected = 1 - torch.nn.functional.cosine_similarity(
        u @ w, anchors0.anchors[rows.argmax(1)], dim=1)
    torch.testing.assert_close(term, 1.5 * expected.mean())
    stale = 1 - torch.nn.functional.cosine_similarity(u @ w0, anchors0.anchors[rows.argmax(1)],
                                                      dim=1)
    assert abs(term.item() - 1.5 * stale.mean().item()) > 1e-3     # not the source W's form
    assert torch.autograd.grad(term, classifier.weight, allow_unused=True)[0] is None
