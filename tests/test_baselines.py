"""The classic baselines (bn-adapt, EATA, SAR) as method objects on the adapter: each piece
against an independent computation, and every method (+ STAG) through tools/test_tta.py with a
kill and a resume."""
import copy
import importlib.util
import math
import os.path as osp

import numpy as np
import pytest
import torch
from engine_utils import REPO, TINY_CONFIG, build_runner, tiny_options
from fixture_data import make_acdc_tree, make_cityscapes_tree
from mmengine.config import Config
from mmseg.registry import MODELS

from stag_seg.demo.launch import DEMO_ROUNDS
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.launch import load_tta_config
from stag_seg.methods import EATA, SAR, BNAdapt, Tent
from stag_seg.methods.eata import select_pixels
from stag_seg.methods.fisher import fisher_information, fisher_penalty
from stag_seg.methods.sar import reset_constant, update_ema
from stag_seg.plugins import STAGHook, TTAPlugin
from stag_seg.reports import RESULTS_FILE, load_records
from stag_seg.stag import stag_loss, structural_anchors
from stag_seg.step.context import StepContext
from stag_seg.step.tap import ModuleTap

#: a margin that keeps about half of the random-init tiny model's pixels (entropy ~2.5-2.94)
MARGIN = 2.9
#: a SAR recovery threshold the tiny model's moving average crosses now and then (Adam 1e-2)
RESET = 2.851
#: a SAM radius at which the moved tiny model finds other pixels reliable
RHO = 0.5


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    return (make_acdc_tree(str(root / 'acdc'), size=(128, 64)),
            make_cityscapes_tree(str(root / 'cityscapes'), size=(128, 64)))


@pytest.fixture(scope='module')
def flat_config(tmp_path_factory):
    """The tiny config as one flat file (the same settings, without resolving mmseg:: bases
    at every run) on a two-domain stream."""
    path = tmp_path_factory.mktemp('configs') / 'tiny.py'
    cfg = Config.fromfile(TINY_CONFIG)
    cfg.test_cfg.domains = cfg.test_cfg.domains[:2]
    cfg.dump(str(path))
    return path


@pytest.fixture(scope='module')
def tiny(data, flat_config, tmp_path_factory):
    """The tiny SegFormer (random init, seed 0), its fog batches and a fog loader factory."""
    runner = build_runner(str(tmp_path_factory.mktemp('w')), data[0], config=str(flat_config))
    loader_cfg = runner.cfg.test_dataloader.copy()
    loader_cfg.dataset.condition = 'fog'
    loader = runner.build_dataloader(loader_cfg)
    return runner.model, list(loader), lambda cfg, size=None: loader


class LossSpy(TTAPlugin):
    """Records the loss terms present when the plug-ins are asked (adds none)."""

    name = 'spy'

    def __init__(self) -> None:
        super().__init__(loss_weight=0.0)
        self.calls = []

    def losses(self, ctx):
        self.calls.append({k: v.detach().clone() for k, v in ctx.losses.items()})
        return {}


def _entropy(rows):
    return -(rows.softmax(1) * rows.log_softmax(1)).sum(1)


def _trainable(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# ------------------------------------------------------------------ EATA
def test_eata_pixel_mask_weights_and_loss_equal_a_direct_computation():
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 5, 6, 7, generator=gen) * 3).requires_grad_(True)
    running = torch.softmax(torch.randn(5, generator=gen), 0)
    rows = logits.detach().permute(0, 2, 3, 1).reshape(-1, 5).double().numpy()
    p = np.exp(rows - rows.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ent = -(p * np.log(p)).sum(1)
    e0 = float(np.median(ent))
    cos = p @ running.double().numpy() / np.linalg.norm(p, axis=1) / np.linalg.norm(
        running.double().numpy())
    reliable = ent < e0
    kept = reliable & (np.abs(cos) < 0.8)
    assert 0 < kept.sum() < reliable.sum() < len(ent)      # both filters act
    weights = np.where(kept, 1 / np.exp(ent - e0), 0)

    sel = select_pixels(logits.permute(0, 2, 3, 1).reshape(-1, 5), e0, running, 0.8)
    assert sel.reliable.numpy().tolist() == reliable.tolist()
    assert sel.kept.numpy().tolist() == kept.tolist()
    np.testing.assert_allclose(sel.weights.numpy(), weights, rtol=1e-5)
    np.testing.assert_allclose(sel.running_probs.numpy(),
                               0.9 * running.numpy() + 0.1 * p[kept].mean(0), rtol=1e-5)

    method = EATA(e_margin=e0, d_margin=0.8, fisher_alpha=0)
    method.running_probs = running
    terms = method.loss(StepContext(batch={}, outputs=[], logits=logits))
    assert set(terms) == {'loss_entropy'}
    assert terms['loss_entropy'].item() == pytest.approx(
        (weights * ent)[kept].sum() / kept.sum(), rel=1e-5)
    # the weights are constants: the gradient is that of sum(w * E) / n with w fixed
    grad, = torch.autograd.grad(terms['loss_entropy'], logits)
    flat = logits.permute(0, 2, 3, 1).reshape(-1, 5)
    w = torch.tensor(weights, dtype=torch.float32)
    ref, = torch.autograd.grad((w * _entropy(flat)).sum() / kept.sum(), logits)
    torch.testing.assert_close(grad, ref)


def test_eata_defaults_are_the_papers_constants_for_k_classes():
    # pixels: confident, a 3-way tie (ln 3 = 1.10), a 4-way tie (ln 4 = 1.39), uniform;
    # E0 = 0.4 ln 19 = 1.18 keeps the first two (0.4 ln 1000 = 2.76 would keep three)
    logits = torch.zeros(1, 19, 1, 4)
    logits[0, 0, 0, 0] = 30.0
    logits[0, :3, 0, 1] = 30.0
    logits[0, :4, 0, 2] = 30.0
    method = EATA(fisher_alpha=0)
    sel = method.select(StepContext(batch={}, outputs=[], logits=logits))
    assert sel.reliable.tolist() == [True, True, False, False]
    assert sel.running_probs is None                               # redundancy filter off
    assert method.fisher_alpha == 0 and EATA(fisher_dataset={}).fisher_alpha == 2000.0


def test_redundancy_filter_drops_what_it_has_seen_and_keeps_new_input():
    def confident(classes):
        logits = torch.zeros(len(classes), 19)
        logits[torch.arange(len(classes)), torch.tensor(classes)] = 10.0
        return logits
    seen = confident([0, 1, 0, 1])
    first = select_pixels(seen, 1.0, None, 0.05)
    assert first.kept.all()                    # nothing seen yet
    again = select_pixels(seen, 1.0, first.running_probs, 0.05)
    assert again.reliable.all() and not again.kept.any()
    torch.testing.assert_close(again.running_probs, first.running_probs)  # nothing added
    new = select_pixels(confident([2, 3]), 1.0, first.running_probs, 0.05)
    assert new.kept.all()
    torch.testing.assert_close(
        new.running_probs, 0.9 * first.running_probs + 0.1 * confident([2, 3]).softmax(1).mean(0))


def _fisher_reference(model, batches):
    """Independent: mean over batches of the squared gradient of the pixel-mean CE with the
    argmax, by hand on a configured copy with a tap."""
    model = copy.deepcopy(model)
    Tent().configure_model(model)
    params = Tent().collect_params(model)
    tap = ModuleTap(model.decode_head.conv_seg, keep_inputs=False)
    total = [torch.zeros_like(p) for p in params]
    for batch in batches:
        tap.clear()
        with torch.enable_grad():
            model.test_step(batch)
            logits = tap.logits()
            rows = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
            loss = -rows.log_softmax(1)[torch.arange(len(rows)), rows.argmax(1)].mean()
            grads = torch.autograd.grad(loss, params)
        total = [t + g ** 2 for t, g in zip(total, grads, strict=True)]
    tap.remove()
    return [t / len(batches) for t in total], [p.detach().clone() for p in params]


def test_fisher_is_computed_once_from_the_source_model_and_penalises_drift(tiny):
    model, batches, loader = tiny
    model = copy.deepcopy(model)
    source = _trainable(model)
    spy = LossSpy()
    method = EATA(e_margin=MARGIN, fisher_dataset={}, fisher_size=2)
    adapter = TTAAdapter(model, method, plugins=[spy], optimizer=dict(type='Adam', lr=1e-2),
                         build_loader=loader)
    fisher, anchor = _fisher_reference(tiny[0], batches[:2])
    for batch in batches[:3]:
        adapter.step(batch, adapt=True)
    for mine, ref in zip(method.fisher, fisher, strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-12)
    for mine, ref in zip(method.anchor, anchor, strict=True):
        assert torch.equal(mine, ref)
    assert max(f.abs().max().item() for f in fisher) > 0
    # the term joins the loss: zero at the source (first step), then alpha * F * drift^2
    assert [c['loss_fisher'].item() == 0 for c in spy.calls] == [True, False, False]
    # its value and gradient are the closed forms, and zero at the anchor
    params = adapter.params
    value = fisher_penalty(params, method.fisher, method.anchor, 2000.0)
    drift = [p.detach() - a for p, a in zip(params, anchor, strict=True)]
    expected = 2000.0 * sum((f * d ** 2).sum() for f, d in zip(method.fisher, drift,
                                                                strict=True))
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    grads = torch.autograd.grad(value, params)
    for g, f, d in zip(grads, method.fisher, drift, strict=True):
        torch.testing.assert_close(g, 2 * 2000.0 * f * d)
    assert fisher_penalty(anchor, method.fisher, method.anchor, 2000.0).item() == 0
    assert {name for name, p in model.named_parameters()
            if not torch.equal(p, source.get(name, p))} <= set(source)
    adapter.close()


def test_fisher_of_batches_of_two_is_the_mean_over_batches(tiny):
    """EATA divides the summed squared gradients by the number of batches (each batch's
    gradient is of its pixel-mean CE), not of images: 4 images in 2 batches of 2."""
    model, batches, _ = tiny
    assert len(batches) >= 4
    pairs = [{key: batches[i][key] + batches[i + 1][key] for key in batches[i]}
             for i in (0, 2)]
    assert [len(pair['inputs']) for pair in pairs] == [2, 2]
    adapter = TTAAdapter(copy.deepcopy(model), EATA(fisher_alpha=0),
                         optimizer=dict(type='Adam', lr=1e-3))
    fisher, images = fisher_information(adapter, pairs, max_images=4)
    expected, _ = _fisher_reference(model, pairs)
    assert images == 4
    for mine, ref in zip(fisher, expected, strict=True):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-12)
    adapter.close()


class _NoLoader:
    dataset = [None]

    def __iter__(self):
        raise AssertionError('the Fisher information was recomputed')


def test_fisher_survives_reset_and_resume_without_recomputation(tiny):
    model, batches, loader = tiny
    method = EATA(e_margin=MARGIN, d_margin=0.5, fisher_dataset={}, fisher_size=1)
    adapter = TTAAdapter(copy.deepcopy(model), method, build_loader=loader)
    initial = adapter.snapshot()                            # before the Fisher exists
    adapter.step(batches[0], adapt=True)
    saved = torch.load(_save(adapter.state_dict()), weights_only=True)
    assert saved['method']['fisher'] is not None and saved['method']['running_probs'] is not None
    adapter.load_state_dict(initial)                        # a reset keeps the Fisher
    assert method.fisher is not None and method.running_probs is None
    resumed_method = EATA(e_margin=MARGIN, d_margin=0.5, fisher_dataset={}, fisher_size=1)
    resumed = TTAAdapter(copy.deepcopy(model), resumed_method,
                         build_loader=lambda cfg, size=None: _NoLoader())
    resumed.load_state_dict(saved)
    resumed.step(batches[1], adapt=True)                   # no recomputation
    for a, b in zip(resumed_method.anchor, method.anchor, strict=True):
        assert torch.equal(a, b)


def _save(state):
    import io
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


# ------------------------------------------------------------------ SAR
def _sar_reference(model, batch, margin, rho, lr, stag_weight=None):
    """Independent: SAR's two-pass SAM step by hand (SGD at ``lr``), with STAG in both passes
    if ``stag_weight``; returns the trainable parameters after it and after a plain one-pass
    step, and whether the moved model found reliable pixels that pass 1 did not."""
    model = copy.deepcopy(model)
    Tent().configure_model(model)
    params = dict((n, p) for n, p in model.named_parameters() if p.requires_grad)
    classifier = model.decode_head.conv_seg
    anchors = structural_anchors(classifier.weight, classifier.bias, 1.0, 'classifier')
    tap = ModuleTap(classifier, keep_inputs=True)

    def loss(mask=None):
        tap.clear()
        with torch.enable_grad():
            model.test_step(batch)
            logits = tap.logits()
            ent = _entropy(logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1]))
            keep = ent.detach() < margin
            keep = keep if mask is None else keep & mask
            total = ent[keep].mean()
            if stag_weight is not None:
                total = total + stag_weight * stag_loss(logits, anchors, feats=tap.features())
        return total, keep

    first, reliable = loss()
    g1 = torch.autograd.grad(first, list(params.values()))
    norm = torch.sqrt(sum((g ** 2).sum() for g in g1))
    old = {n: p.detach().clone() for n, p in params.items()}
    with torch.no_grad():
        for p, g in zip(params.values(), g1, strict=True):
            p.add_(rho * g / (norm + 1e-12))
    second, kept = loss(reliable)
    g2 = torch.autograd.grad(second, list(params.values()))
    _, reliable_second = loss()
    tap.remove()
    return ({n: old[n] - lr * g for n, g in zip(params, g2, strict=True)},
            {n: old[n] - lr * g for n, g in zip(params, g1, strict=True)},
            bool((reliable_second & ~reliable).any()))


@pytest.mark.parametrize('stag', [False, True], ids=['sar', 'sar+stag'])
def test_sar_update_equals_a_hand_written_two_pass_sam_step(tiny, stag):
    model, batches, _ = tiny
    lr = 0.5
    spy = LossSpy()
    plugins = ([STAGHook(loss_weight=2.0, grad_space='classifier')] if stag else []) + [spy]
    adapter = TTAAdapter(copy.deepcopy(model), SAR(margin_e0=MARGIN, rho=RHO, reset_constant_em=0),
                         plugins=plugins, optimizer=dict(type='SGD', lr=lr))
    result = adapter.step(batches[0], adapt=True)
    assert result.updated and result.stats['resets'] == 0
    assert len(spy.calls) == 2                        # the plug-ins are asked in both passes
    assert all(('loss_stag' in c) == stag for c in spy.calls)
    expected, one_pass, crossed = _sar_reference(model, batches[0], MARGIN, RHO, lr,
                                                 2.0 if stag else None)
    # with STAG the moved model finds new reliable pixels, which pass 2 must leave out
    assert crossed == stag
    mine = _trainable(adapter.model)
    for name, value in expected.items():
        torch.testing.assert_close(mine[name], value, rtol=1e-5, atol=1e-7)
    # the ascent matters: a plain one-pass step lands elsewhere
    assert max((one_pass[n] - mine[n]).abs().max().item() for n in mine) > 1e-5
    stats = result.stats
    assert stats['pixels'] == 8 * 16 and 0 < stats['kept_pixels'] <= stats['reliable_pixels']


def test_sar_moving_average_and_threshold_are_the_papers_scaled_to_k_classes():
    ema, by_hand = None, []
    for value in [1.0, 0.5, 0.4]:
        ema = update_ema(ema, value)
        by_hand.append(ema)
    assert by_hand == pytest.approx([1.0, 0.95, 0.895])
    assert reset_constant(1000) == pytest.approx(0.2)
    assert reset_constant(19) == pytest.approx(0.2 * math.log(19) / math.log(1000))
    assert reset_constant(19, 0.5) == 0.5


def test_sar_recovers_exactly_when_the_moving_average_crosses_the_threshold(tiny):
    model, batches, _ = tiny

    def run(threshold, steps=4):
        method = SAR(margin_e0=MARGIN, reset_constant_em=threshold)
        spy = LossSpy()
        adapter = TTAAdapter(copy.deepcopy(model), method, plugins=[spy],
                             optimizer=dict(type='Adam', lr=0.05))
        out = []
        for _ in range(steps):                  # one image again and again: entropy falls
            result = adapter.step(batches[0], adapt=True)
            out.append((result.stats['resets'], method.ema, _trainable(adapter.model),
                        copy.deepcopy(adapter.optim_wrapper.state_dict())))
        return out, [c['loss_entropy'].item() for c in spy.calls[1::2]], method
    free, second_losses, _ = run(0)
    emas = [ema for _, ema, _, _ in free]
    expected, ema = [], None
    for value in second_losses:
        ema = value if ema is None else 0.9 * ema + 0.1 * value
        expected.append(ema)
    assert emas == pytest.approx(expected, rel=1e-6)
    assert emas[0] > emas[1] > emas[2] > emas[3]
    threshold = (emas[1] + emas[2]) / 2           # crossed at the third step
    steps, _, method = run(threshold)
    assert [s[0] for s in steps[:3]] == [0, 0, 1] and method.num_resets >= 1
    assert steps[2][1] is None                      # the average restarts
    source = dict(model.named_parameters())
    for name, value in steps[2][2].items():         # back to the source, Adam state too
        assert torch.equal(value, source[name]), name
    assert steps[2][3]['state'] == {}
    for name, value in free[1][2].items():          # the same trajectory until then
        assert torch.equal(steps[1][2][name], value), name


@pytest.mark.parametrize('method', [EATA(e_margin=1e-6, fisher_alpha=0),
                                    SAR(margin_e0=1e-6)], ids=['eata', 'sar'])
def test_a_step_with_no_reliable_pixel_takes_no_update(tiny, method):
    model, batches, _ = tiny
    adapter = TTAAdapter(copy.deepcopy(model), method, plugins=[STAGHook()])
    before = copy.deepcopy(adapter.model.state_dict())
    result = adapter.step(batches[0], adapt=True)
    assert not result.attempted and not result.updated
    assert result.stats['empty_steps'] == 1 and result.stats['kept_pixels'] == 0
    assert result.stats['pixels'] == 8 * 16
    for key, value in adapter.model.state_dict().items():
        assert torch.equal(value, before[key]), key


# ------------------------------------------------------------------ bn-adapt
def _tiny_cnn():
    bn = dict(type='BN', requires_grad=True)
    cfg = Config(dict(model=dict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True, pad_val=0,
                               seg_pad_val=255),
        backbone=dict(type='ResNetV1c', depth=18, stem_channels=8, base_channels=8,
                      num_stages=2, strides=(1, 2), dilations=(1, 1), out_indices=(1, ),
                      norm_cfg=bn),
        decode_head=dict(type='FCNHead', in_channels=16, in_index=0, channels=8, num_convs=1,
                         concat_input=False, num_classes=19, norm_cfg=bn,
                         loss_decode=dict(type='CrossEntropyLoss')),
        test_cfg=dict(mode='whole'))))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    with torch.no_grad():                       # source statistics unlike any test batch
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return model.eval()


def test_bn_adapt_uses_test_batch_statistics_on_a_cnn_and_changes_no_weight(tiny):
    batches = tiny[1]
    model = _tiny_cnn()
    source = copy.deepcopy(model)
    reference = copy.deepcopy(model)
    for m in reference.modules():               # every BN on the batch's own statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.train()
            m.momentum = 0.0
    before = copy.deepcopy(model.state_dict())
    adapter = TTAAdapter(model, BNAdapt())
    assert adapter.optim_wrapper is None and adapter.params == []
    for batch in batches[:2]:
        result = adapter.step(batch, adapt=True)
        assert not result.attempted and result.stats == {}
        mine, _ = adapter.infer(model, batch, grad=False)
        ref, _ = adapter.infer(reference, batch, grad=False)
        src, _ = adapter.infer(source, batch, grad=False)
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-5)
        assert (mine - src).abs().max() > 1e-2
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not any(p.requires_grad for p in model.parameters())


def test_bn_adapt_with_stag_is_refused_with_a_clear_error(tmp_path, data, flat_config):
    model = _tiny_cnn()
    with pytest.raises(ValueError, match='BNAdapt takes no gradient step'):
        TTAAdapter(model, BNAdapt(), plugins=[STAGHook()])
    options = tiny_options(data[0], **{'test_cfg.method': dict(type='bn-adapt'),
                                       'custom_hooks': [dict(type='STAGHook')]})
    with pytest.raises(ValueError, match="method 'bn-adapt' takes no gradient step"):
        load_tta_config(str(flat_config), str(tmp_path / 'w'), options)
    assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('method, message', [
    (dict(type='eata', fisher_dataset=None), 'fisher_alpha=2000 needs fisher_dataset'),
    (dict(type='eata', fisher_alpha=0, d_margin=1.5), 'd_margin must be <= 1'),
    (dict(type='eata', fisher_alpha=0, fisher_size=0), 'fisher_size must be >= 1'),
    (dict(type='eata', fisher_alpha=-1), 'fisher_alpha must be >= 0'),
    (dict(type='sar', rho=0), 'rho must be > 0'),
    (dict(type='sar', margin_e0='high'), 'margin_e0 must be a finite number'),
    (dict(type='sar', lr=1), "unknown option(s) ['lr']"),
])
def test_bad_method_options_are_named(tmp_path, data, flat_config, method, message):
    options = tiny_options(data[0], **{'test_cfg.method': method})
    with pytest.raises(ValueError) as error:
        load_tta_config(str(flat_config), str(tmp_path / 'w'), options)
    assert f"test_cfg.method ({method['type']})" in str(error.value)
    assert message in str(error.value)


def test_demo_configs_are_the_demo_stream_with_each_method(tmp_path):
    for variant in ('bn-adapt', 'eata', 'eata-stag', 'sar', 'sar-stag'):
        path = osp.join(REPO, 'configs', 'demo', f'segformer_mini_demo-acdc_{variant}.py')
        cfg = load_tta_config(path, str(tmp_path / variant)).cfg   # validated as a whole
        assert cfg.test_cfg.method.type == variant.replace('-stag', '')
        assert [h.type for h in cfg.get('custom_hooks', [])] == (
            ['STAGHook'] if variant.endswith('stag') else [])
        assert cfg.test_cfg.num_rounds == DEMO_ROUNDS
        assert cfg.test_cfg.forgetting.name == 'clean_val'
        if variant.startswith('eata'):             # the Fisher set is not the forgetting set
            fisher = cfg.test_cfg.method.fisher_dataset
            assert fisher.data_prefix.img_path == 'leftImg8bit/train'
            assert cfg.test_cfg.forgetting.dataset.data_prefix.img_path == 'leftImg8bit/val'


# ------------------------------------------------------------------ the CLI, killed, resumed
def _test_tta():
    spec = importlib.util.spec_from_file_location('test_tta', osp.join(REPO, 'tools',
                                                                      'test_tta.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


VARIANTS = {
    'bn-adapt': dict(type='bn-adapt'),
    'eata': dict(type='eata', e_margin=MARGIN, d_margin=0.5, fisher_size=2),
    'sar': dict(type='sar', margin_e0=MARGIN, reset_constant_em=RESET),
}


@pytest.mark.parametrize('name, stag', [('bn-adapt', False), ('eata', False), ('eata', True),
                                        ('sar', False), ('sar', True)],
                         ids=['bn-adapt', 'eata', 'eata+stag', 'sar', 'sar+stag'])
def test_method_runs_through_the_cli_and_resumes_byte_identically(tmp_path, data, flat_config,
                                                                   name, stag):
    acdc = make_acdc_tree(str(tmp_path / 'acdc'), size=(128, 64), conditions=('fog', 'night'),
                          frames_per_sequence=1)
    method = dict(VARIANTS[name])
    if name == 'eata':
        method['fisher_dataset'] = dict(
            type='CityscapesDataset', data_root=data[1], serialize_data=False,
            data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
            pipeline=[dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 32)),
                      dict(type='PackSegInputs')])
    hooks = [dict(type='STAGHook', loss_weight=1.0)] if stag else []
    config = tmp_path / 'config.py'
    config.write_text(f'_base_ = [{str(flat_config)!r}]\ntest_cfg = dict(method={method!r})\n'
                      f'custom_hooks = {hooks!r}\n')
    crash = tmp_path / 'crash.py'      # the same run, killed at round 2, night, 1st image
    crash.write_text("_base_ = ['./config.py']\ncustom_hooks = "
                     f"{hooks + [dict(type='CrashAfterItersHook', iters=7)]!r}\n")
    options = [f'{k}={v}'.replace(' ', '') for k, v in tiny_options(acdc).items()
               if k != 'randomness'] + ['test_dataloader.dataset.serialize_data=False',
                                        'test_cfg.optimizer.lr=0.01']
    main = _test_tta()

    def cli(path, work_dir, *extra):
        with pytest.raises(SystemExit) as done:
            main([str(path), '--work-dir', str(tmp_path / work_dir), *extra,
                  '--cfg-options', *options])
        assert done.value.code == 0

    cli(config, 'full')
    with pytest.raises(SystemExit) as stopped:       # Ctrl-C: one line, exit 130
        main([str(crash), '--work-dir', str(tmp_path / 'part'), '--cfg-options', *options])
    assert stopped.value.code == 130
    assert len(load_records(str(tmp_path / 'part'))) == 3
    cli(config, 'part', '--resume')
    full = (tmp_path / 'full' / RESULTS_FILE).read_bytes()
    assert (tmp_path / 'part' / RESULTS_FILE).read_bytes() == full
    records = load_records(str(tmp_path / 'full'))
    assert [(r['round'], r['domain']) for r in records] == [
        (1, 'fog'), (1, 'night'), (2, 'fog'), (2, 'night')]
    assert {r['method'] for r in records} == {name + ('+stag' if stag else '')}
    if name == 'bn-adapt':
        assert all('pixels' not in r for r in records)
        assert [r['mIoU'] for r in records[:2]] == [r['mIoU'] for r in records[2:]]
        return
    for r in records:
        assert r['pixels'] == 2 * 8 * 16
        assert 0 <= r['kept_pixels'] <= r['reliable_pixels'] <= r['pixels']
    assert sum(r['kept_pixels'] for r in records) > 0
    if name == 'eata':
        assert any(r['kept_pixels'] < r['reliable_pixels'] for r in records)
    if name == 'sar':
        resets = [r['resets'] for r in records]
        assert 0 < sum(resets) < sum(r['num_images'] for r in records)
