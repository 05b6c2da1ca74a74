"""The fast mode (test_cfg.fast, cuda_graph, fused_attention): the fused MiT attention equals
mmseg's, the captured step equals the eager adapter step (values, updated parameters, the
optimizer's state, a skipped non-finite update), and the options resolve per device."""
import contextlib
import copy
import logging

import pytest
import torch
from engine_utils import TINY_CONFIG
from mmengine.config import Config
from mmseg.models.backbones.mit import EfficientMultiheadAttention
from mmseg.registry import MODELS

from stag_seg.benchmark.fixtures import synthetic_batch
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.config import LOOP_DEFAULTS
from stag_seg.engine.scalars_hook import with_fractions
from stag_seg.engine.scorer import DomainScorer
from stag_seg.engine.speed import resolve_fast
from stag_seg.models.fused_attention import FusedMixVisionTransformer, use_fused_attention
from stag_seg.plugins import STAGHook, TTAPlugin
from stag_seg.registry import TTA_METHODS
from stag_seg.step.graphed import MAX_CAPTURES

CPU, CUDA = torch.device('cpu'), torch.device('cuda')
FUSED_ADAM = dict(type='Adam', lr=1e-3, betas=(0.9, 0.999), fused=True)


def _tiny_model(device=CPU):
    torch.manual_seed(0)
    return MODELS.build(Config.fromfile(TINY_CONFIG).model).to(device)


def _explicit_attention(module: EfficientMultiheadAttention, x, hw):
    """MiT attention written out from the attention formula: softmax(Q K^T / sqrt(d)) V with
    the module's own projections and spatial reduction (an independent reference)."""
    attn = module.attn
    kv = x
    if module.sr_ratio > 1:
        n, _, c = x.shape
        grid = x.transpose(1, 2).reshape(n, c, *hw)
        kv = module.norm(module.sr(grid).flatten(2).transpose(1, 2))
    c = x.shape[-1]
    w, b = attn.in_proj_weight, attn.in_proj_bias
    q = x @ w[:c].T + (b[:c] if b is not None else 0)
    k = kv @ w[c:2 * c].T + (b[c:2 * c] if b is not None else 0)
    v = kv @ w[2 * c:].T + (b[2 * c:] if b is not None else 0)
    h = attn.num_heads

    def heads(t):
        return t.reshape(t.shape[0], t.shape[1], h, c // h).transpose(1, 2)

    weights = (heads(q) @ heads(k).transpose(-1, -2) / (c // h) ** 0.5).softmax(-1)
    out = (weights @ heads(v)).transpose(1, 2).reshape(x.shape)
    return x + attn.out_proj(out)


def test_fused_attention_equals_the_attention_formula_and_keeps_the_weights():
    """Every MiT attention switched; its output and gradients equal the written-out formula;
    the model's output equals mmseg's module's; state-dict keys and values unchanged."""
    model = _tiny_model().eval()
    fused = copy.deepcopy(model)
    count = use_fused_attention(fused)
    assert count == sum(isinstance(m, EfficientMultiheadAttention) for m in model.modules())
    assert count > 0
    assert list(fused.state_dict()) == list(model.state_dict())
    module = next(m for m in fused.modules() if isinstance(m, EfficientMultiheadAttention)
                  and m.sr_ratio > 1)
    x = torch.randn(2, 8 * 16, module.attn.embed_dim, requires_grad=True)
    out = module(x, (8, 16))
    ref = _explicit_attention(module, x, (8, 16))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g_out, = torch.autograd.grad(out.square().sum(), x)
    g_ref, = torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-4, atol=1e-5)
    image = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused.backbone(image)[-1], model.backbone(image)[-1],
                                   rtol=1e-4, atol=1e-5)


def test_fused_backbone_is_registered_and_loads_mmseg_weights():
    cfg = Config.fromfile(TINY_CONFIG).model
    plain = MODELS.build(cfg).backbone
    fused = MODELS.build({**cfg.backbone, 'type': 'FusedMixVisionTransformer'})
    assert isinstance(fused, FusedMixVisionTransformer)
    fused.load_state_dict(plain.state_dict())        # strict: key for key
    assert use_fused_attention(fused) == 0            # already fused


def _adapter(model, cuda_graph, plugins=(), method='tent', optimizer=FUSED_ADAM, amp=None,
             **options):
    return TTAAdapter(model, TTA_METHODS.build(dict(type=method, **options)),
                      plugins=list(plugins), optimizer=dict(optimizer), amp=amp,
                      cuda_graph=cuda_graph)


def _opt_state(adapter):
    return [{k: v.clone() for k, v in s.items()}
            for s in adapter.optim_wrapper.optimizer.state.values()]


def _run_pair(device, plugins_factory, steps=3, method='tent', amp=None):
    """The eager adapter and the captured-step adapter over the same ``steps`` batches."""
    eager = _adapter(_tiny_model(device), False, plugins_factory(), method, amp=amp)
    graphed = _adapter(_tiny_model(device), True, plugins_factory(), method, amp=amp)
    assert graphed.graphed is not None and eager.graphed is None
    results = []
    for i in range(steps):
        batch = synthetic_batch((32, 64), seed=i)
        results.append((eager.step(batch, adapt=True), graphed.step(copy.deepcopy(batch),
                                                                     adapt=True)))
    return eager, graphed, results


def _assert_same_run(eager, graphed, results, rtol, atol):
    for e, g in results:
        assert bool(g.updated) == e.updated
        same = (e.outputs[0].pred_sem_seg.data == g.outputs[0].pred_sem_seg.data).float()
        assert same.mean() >= 0.99
        # the step's loss terms (StreamScalarsHook's), named as eager, as device tensors
        assert list(g.losses) == list(e.losses) and e.losses
        for name, term in g.losses.items():
            assert isinstance(term, torch.Tensor) and term.device == e.losses[name].device
            torch.testing.assert_close(term, e.losses[name], rtol=rtol, atol=atol, msg=name)
    for (key, value), other in zip(eager.model.state_dict().items(),
                                   graphed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(other, value, rtol=rtol, atol=atol, msg=key)
    for e, g in zip(_opt_state(eager), _opt_state(graphed), strict=True):
        assert float(e['step']) == float(g['step'])
        torch.testing.assert_close(g['exp_avg'], e['exp_avg'], rtol=rtol, atol=atol)


@pytest.mark.parametrize('with_stag', [False, True])
def test_captured_step_path_equals_the_eager_step_on_cpu(with_stag):
    """The captured step's body (one forward, losses, backward, device-side finite flag, the
    fused update) after the capture's warm-up and restore, run eagerly on CPU: predictions,
    parameters and Adam's state equal the eager adapter's after 3 steps (the warm-up steps
    left no trace)."""
    plugins = (lambda: [STAGHook()]) if with_stag else list
    eager, graphed, results = _run_pair(CPU, plugins)
    assert graphed.graphed.captures == 1
    _assert_same_run(eager, graphed, results, rtol=1e-5, atol=1e-6)
    source = dict(_tiny_model().named_parameters())
    assert any(not torch.equal(p, source[n]) for n, p in graphed.model.named_parameters()
               if p.requires_grad)                     # it did adapt


class NaNAtStep(TTAPlugin):
    """Adds NaN to the loss at one step (1-based, counted in real steps after the capture)."""

    name = 'nan'
    capturable = True

    def __init__(self, flags: torch.Tensor) -> None:
        super().__init__(1.0)
        self.flags = flags          # a device tensor read inside the step: 1.0 -> NaN

    def losses(self, ctx):
        return {'loss_nan': ctx.logits.sum() * 0.0 + torch.log(1.0 - self.flags)
                * torch.where(self.flags > 0, float('nan'), 0.0)}


def test_non_finite_step_is_skipped_on_device():
    """A NaN loss: the fused update is skipped through ``found_inf`` (parameters, moments and
    the step count unchanged), ``updated`` is a device False, and the scorer counts it as a
    skipped update without a host read per image."""
    flags = torch.zeros(())
    adapter = _adapter(_tiny_model(), True, [NaNAtStep(flags)])
    adapter.step(synthetic_batch((32, 64), seed=0), adapt=True)
    before = copy.deepcopy(adapter.model.state_dict())
    state = _opt_state(adapter)
    flags.fill_(1.0)
    result = adapter.step(synthetic_batch((32, 64), seed=1), adapt=True)
    assert isinstance(result.updated, torch.Tensor) and not bool(result.updated)
    for key, value in adapter.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for s, t in zip(state, _opt_state(adapter), strict=True):
        assert float(s['step']) == float(t['step']) == 1.0
        assert torch.equal(s['exp_avg'], t['exp_avg'])
    flags.fill_(0.0)
    ok = adapter.step(synthetic_batch((32, 64), seed=2), adapt=True)
    assert bool(ok.updated)
    scorer = DomainScorer.__new__(DomainScorer)
    scorer.skipped_updates = 0
    for flag in (result.updated, ok.updated, result.updated):
        scorer.skipped_updates = scorer.skipped_updates + (~flag).long()
    assert int(scorer.skipped_updates) == 2


def test_state_load_invalidates_the_capture():
    """Loading a state (reset, resume) replaces the optimizer's tensors: the next step
    captures again, and the run after the load equals an eager run from the same state."""
    adapter = _adapter(_tiny_model(), True, [STAGHook()])
    initial = adapter.snapshot()
    adapter.step(synthetic_batch((32, 64), seed=0), adapt=True)
    adapter.load_state_dict(initial)
    assert adapter.graphed.key is None
    eager = _adapter(_tiny_model(), False, [STAGHook()])
    for i in range(2):
        batch = synthetic_batch((32, 64), seed=i + 1)
        adapter.step(batch, adapt=True)
        eager.step(copy.deepcopy(batch), adapt=True)
    assert adapter.graphed.captures == 2
    for key, value in eager.model.state_dict().items():
        torch.testing.assert_close(adapter.model.state_dict()[key], value, rtol=1e-5,
                                   atol=1e-6)


def test_shapes_that_keep_changing_fall_back_to_eager(caplog):
    adapter = _adapter(_tiny_model(), True)
    with caplog.at_level(logging.WARNING):
        for i in range(MAX_CAPTURES + 1):
            result = adapter.step(synthetic_batch((32, 64 + 32 * i)), adapt=True)
    assert adapter.graphed.disabled and isinstance(result.updated, bool)
    assert 'runs eager' in caplog.text


class Counting(TTAPlugin):
    """A plug-in with state (SAR's recovery would have to restore it)."""

    name = 'counting'
    capturable = True

    def __init__(self) -> None:
        super().__init__(0.0)
        self.count = 0

    def losses(self, ctx):
        return {'loss_counting': ctx.logits.sum() * 0.0}

    def state_dict(self):
        return {'count': self.count}


@pytest.mark.parametrize('method, options, plugins, reason', [
    ('eata', dict(fisher_alpha=0, d_margin=0.3), list, 'redundancy filter'),
    ('sar', {}, lambda: [Counting()], 'restores the state of Counting'),
    ('tent-pl', dict(loss_resolution='label'), list, "loss_resolution='label'"),
    ('cotta', {}, list, 'teacher'),
], ids=['eata-d_margin', 'sar-stateful-plugin', 'tent-pl-label', 'cotta'])
def test_methods_with_host_decisions_run_eager_with_one_line(method, options, plugins, reason,
                                                             caplog):
    with caplog.at_level(logging.INFO):
        adapter = _adapter(_tiny_model(), True, plugins(), method, **options)
    assert adapter.graphed is None
    lines = [r.message for r in caplog.records if 'cuda_graph' in r.message]
    assert len(lines) == 1 and reason in lines[0] and 'eager' in lines[0]


#: an entropy margin (nats) below which about two pixels in three of the tiny model are reliable
MARGIN = 2.9
FILTERED = {'eata': dict(fisher_alpha=0, e_margin=MARGIN),
            'sar': dict(margin_e0=MARGIN, rho=0.5)}


def _skips(results) -> int:
    """The skipped updates a DomainScorer counts for these step results."""
    scorer = DomainScorer.__new__(DomainScorer)
    scorer.metric = type('NoMetric', (), {'process': lambda *a: None})()
    scorer.num_images = scorer.skipped_updates = 0
    scorer.out_dir = scorer.show_dir = None
    for result in results:
        scorer.add(None, 0, result.attempted, result.updated)
    return int(scorer.skipped_updates)


@pytest.mark.parametrize('method', ['eata', 'sar'])
@pytest.mark.parametrize('with_stag', [False, True], ids=['', 'stag'])
def test_captured_filters_equal_the_eager_step_on_cpu(method, with_stag):
    """EATA's and SAR's captured step (filters, SAR's two passes, the counters and the
    average all on the device) run eagerly on CPU equals their eager step with host
    decisions: predictions, loss terms, counters (device tensors, no host read), the
    method's state, parameters and Adam's state after 4 steps."""
    plugins = (lambda: [STAGHook()]) if with_stag else list
    eager = _adapter(_tiny_model(), False, plugins(), method, **FILTERED[method])
    graphed = _adapter(_tiny_model(), True, plugins(), method, **FILTERED[method])
    assert graphed.graphed is not None
    results = []
    for i in range(4):
        batch = synthetic_batch((32, 64), seed=i)
        results.append((eager.step(batch, adapt=True),
                        graphed.step(copy.deepcopy(batch), adapt=True)))
    _assert_same_run(eager, graphed, results, rtol=1e-5, atol=1e-6)
    for e, g in results:
        assert isinstance(g.attempted, torch.Tensor) and bool(g.attempted) == e.attempted
        assert set(g.stats) == set(e.stats)
        for name, value in g.stats.items():
            assert isinstance(value, torch.Tensor) or name == 'pixels'
            assert float(value) == e.stats[name], name
        assert 0 < e.stats['kept_pixels'] < e.stats['pixels']       # the filters act
        assert with_fractions(g.stats) == with_fractions(e.stats)
    assert graphed.method.state_dict() == eager.method.state_dict()
    if method == 'sar':
        assert graphed.method.ema is not None


def test_sar_step_whose_second_pass_keeps_no_pixel_leaves_the_average_alone():
    """SAR's code updates its moving average only with a finite pass-2 loss, and the mean over
    no pixel is NaN there. Here pass 1 keeps pixels, the SAM ascent (rho=5) leaves none below
    E0 in pass 2: the average stays unset and no recovery follows (an average of the empty
    mean's 0 would be below e_m and recover), eager and captured alike."""
    runs = []
    for cuda_graph in (False, True):
        adapter = _adapter(_tiny_model(), cuda_graph, [], 'sar', margin_e0=MARGIN, rho=5.0)
        result = adapter.step(synthetic_batch((32, 64), seed=0), adapt=True)
        stats = {name: float(value) for name, value in result.stats.items()}
        assert stats['reliable_pixels'] > 0 and stats['kept_pixels'] == 0
        assert stats['resets'] == 0
        assert adapter.method.ema is None and adapter.method.num_resets == 0
        runs.append(stats)
    assert runs[0] == runs[1]


class HostRead(RuntimeError):
    """A tensor read on the host (a CUDA synchronisation) inside the captured step."""


@contextlib.contextmanager
def no_host_reads():
    """Makes every tensor read that synchronises with a CUDA device raise :class:`HostRead`:
    Python conversions (``bool``, ``int``, ``float``, ``item``, indices), transfers, and
    data-dependent shapes (boolean-mask indexing, ``nonzero``, ``masked_select``,
    ``unique``)."""
    tensor = torch.Tensor
    names = ('__bool__', 'item', '__float__', '__int__', '__index__', 'tolist', 'numpy', 'cpu',
             'nonzero', 'masked_select', 'unique')
    saved = {name: getattr(tensor, name) for name in names + ('__getitem__',)}

    def refuse(name):
        def read(self, *args, **kwargs):
            raise HostRead(f'Tensor.{name}')
        return read

    def getitem(self, index):
        items = index if isinstance(index, tuple) else (index,)
        if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items):
            raise HostRead('boolean-mask indexing')
        return saved['__getitem__'](self, index)

    try:
        for name in names:
            setattr(tensor, name, refuse(name))
        tensor.__getitem__ = getitem
        yield
    finally:
        for name, value in saved.items():
            setattr(tensor, name, value)


@pytest.mark.parametrize('method', ['tent', 'eata', 'sar'])
@pytest.mark.parametrize('with_stag', [False, True], ids=['', 'stag'])
def test_captured_step_reads_nothing_on_the_host(method, with_stag):
    """The captured step's body (warm-up, capture and the CPU replays) converts no tensor to
    a Python value and makes no data-dependent shape: what a CUDA graph capture refuses. The
    eager step of the same method does read (the guard is not blind)."""
    plugins = (lambda: [STAGHook()]) if with_stag else list
    adapter = _adapter(_tiny_model(), True, plugins(), method, **FILTERED.get(method, {}))
    body = adapter.graphed.body

    def guarded(*args):
        with no_host_reads():
            return body(*args)

    adapter.graphed.body = guarded
    for i in range(3):
        result = adapter.step(synthetic_batch((32, 64), seed=i), adapt=True)
    assert bool(result.updated)
    eager = _adapter(_tiny_model(), False, plugins(), method, **FILTERED.get(method, {}))
    with no_host_reads(), pytest.raises(HostRead):
        eager.step(synthetic_batch((32, 64), seed=0), adapt=True)


def test_captured_eata_step_that_keeps_no_pixel_is_not_attempted():
    """No pixel below E0: the captured update is skipped on the device and, as eager, not
    attempted (no skipped update counted; ``empty_steps`` counts it); nothing moves."""
    eager = _adapter(_tiny_model(), False, (), 'eata', fisher_alpha=0, e_margin=1e-6)
    graphed = _adapter(_tiny_model(), True, (), 'eata', fisher_alpha=0, e_margin=1e-6)
    source = copy.deepcopy(graphed.model.state_dict())
    results = [(eager.step(synthetic_batch((32, 64), seed=i), adapt=True),
                graphed.step(synthetic_batch((32, 64), seed=i), adapt=True)) for i in range(2)]
    for e, g in results:
        assert not e.attempted and not bool(g.attempted) and not bool(g.updated)
        assert int(g.stats['empty_steps']) == e.stats['empty_steps'] == 1
    assert _skips(g for _, g in results) == _skips(e for e, _ in results) == 0
    for key, value in graphed.model.state_dict().items():
        assert torch.equal(value, source[key]), key
    assert all(float(s['step']) == 0 for s in _opt_state(graphed))


def test_captured_sar_recovers_on_the_device_at_the_eager_step():
    """SAR's recovery inside the captured step: with e_m between the moving average after
    steps 2 and 3 (one image again and again, so the entropy falls), the captured run
    recovers at step 3 as eager does: the source parameters, a zeroed Adam state (the fresh
    one), the average restarted; the runs agree before and after it."""
    batch = synthetic_batch((32, 64), seed=0)
    lr = dict(FUSED_ADAM, lr=0.05)

    def run(cuda_graph, threshold):
        adapter = _adapter(_tiny_model(), cuda_graph, (), 'sar', optimizer=lr,
                           margin_e0=MARGIN, reset_constant_em=threshold)
        out = []
        for _ in range(4):
            result = adapter.step(copy.deepcopy(batch), adapt=True)
            out.append((int(result.stats['resets']), adapter.method.ema,
                        {n: p.detach().clone() for n, p in adapter.model.named_parameters()
                         if p.requires_grad}))
        return adapter, out

    _, free = run(False, 0)
    emas = [ema for _, ema, _ in free]
    assert emas[0] > emas[1] > emas[2]
    threshold = (emas[1] + emas[2]) / 2
    eager, eager_steps = run(False, threshold)
    graphed, graphed_steps = run(True, threshold)
    assert [s[0] for s in graphed_steps] == [s[0] for s in eager_steps]
    assert [s[0] for s in graphed_steps[:3]] == [0, 0, 1]
    assert graphed_steps[2][1] is None and graphed.method.num_resets == eager.method.num_resets
    source = dict(_tiny_model().named_parameters())
    for name, value in graphed_steps[2][2].items():
        assert torch.equal(value, source[name]), name
    for (_, ema, params), (_, eager_ema, eager_params) in zip(graphed_steps, eager_steps,
                                                               strict=True):
        assert ema == eager_ema
        for name, value in params.items():
            torch.testing.assert_close(value, eager_params[name], rtol=1e-5, atol=1e-6)


def test_fast_resolves_per_device(caplog):
    opt = {**LOOP_DEFAULTS, 'fast': True}
    cuda = resolve_fast(opt, CUDA)
    assert cuda['cuda_graph'] and cuda['fused_attention'] and cuda['amp'] == 'bf16'
    assert cuda['optimizer'] == {**LOOP_DEFAULTS['optimizer'], 'fused': True,
                                 'capturable': True}
    assert not cuda['tf32']                         # STAG's math stays float32
    assert resolve_fast({**opt, 'amp': 'fp16'}, CUDA)['amp'] == 'fp16'
    with caplog.at_level(logging.INFO):
        cpu = resolve_fast(opt, CPU)
    assert not cpu['cuda_graph'] and cpu['amp'] is None and cpu['fused_attention']
    assert cpu['optimizer'] == {**LOOP_DEFAULTS['optimizer'], 'fused': True}
    assert 'CPU' in caplog.text
    plain = resolve_fast(dict(LOOP_DEFAULTS), CUDA)
    assert plain == dict(LOOP_DEFAULTS)             # off by default: nothing changes
    sgd = resolve_fast({**opt, 'optimizer': dict(type='SGD', lr=0.1)}, CUDA)
    assert sgd['optimizer'] == dict(type='SGD', lr=0.1)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')


@needs_cuda
@pytest.mark.parametrize('method', ['tent', 'eata', 'sar'])
@pytest.mark.parametrize('with_stag', [False, True])
def test_cuda_graph_step_equals_the_eager_step(with_stag, method):
    """On CUDA: after the capture and two replays, one replayed step and one eager step from
    the same state (model and Adam's moments copied over) give the same prediction, loss
    terms, update and step count. (Runs over several steps drift apart: CUDA's bilinear-resize
    backward adds atomically, and Adam's normalised steps carry that last-bit noise into
    near-zero gradients; one step from one state compares the step itself.)"""
    plugins = (lambda: [STAGHook()]) if with_stag else list
    optimizer = {**FUSED_ADAM, 'capturable': True}
    options = FILTERED.get(method, {})
    graphed = _adapter(_tiny_model(CUDA), True, plugins(), method, optimizer, **options)
    eager = _adapter(_tiny_model(CUDA), False, plugins(), method, optimizer, **options)
    assert graphed.graphed.use_graph
    for i in range(3):
        graphed.step(synthetic_batch((32, 64), seed=i), adapt=True)
    assert graphed.graphed.graph is not None and graphed.graphed.captures == 1
    eager.load_state_dict(graphed.snapshot())
    start = {n: p.detach().clone() for n, p in graphed.model.named_parameters()}
    batch = synthetic_batch((32, 64), seed=3)
    e = eager.step(batch, adapt=True)
    g = graphed.step(copy.deepcopy(batch), adapt=True)
    assert graphed.graphed.captures == 1                    # replayed, not captured again
    assert bool(g.updated) and e.updated
    same = (e.outputs[0].pred_sem_seg.data == g.outputs[0].pred_sem_seg.data).float()
    assert same.mean() >= 0.99
    assert list(g.losses) == list(e.losses) and e.losses
    for name, term in g.losses.items():
        torch.testing.assert_close(term, e.losses[name], rtol=1e-3, atol=1e-5, msg=name)

    def update(adapter):
        return torch.cat([(p - start[n]).flatten()
                          for n, p in adapter.model.named_parameters() if p.requires_grad])

    assert update(eager).norm() > 0
    assert (update(graphed) - update(eager)).norm() / update(eager).norm() < 0.02
    for a, b in zip(_opt_state(eager), _opt_state(graphed), strict=True):
        assert float(a['step']) == float(b['step']) == 4.0


@needs_cuda
def test_cuda_graph_bf16_step_runs_and_stays_close():
    optimizer = {**FUSED_ADAM, 'capturable': True}
    eager = _adapter(_tiny_model(CUDA), False, [STAGHook()], optimizer=optimizer, amp='bf16')
    graphed = _adapter(_tiny_model(CUDA), True, [STAGHook()], optimizer=optimizer, amp='bf16')
    for i in range(3):
        batch = synthetic_batch((32, 64), seed=i)
        e = eager.step(batch, adapt=True)
        g = graphed.step(copy.deepcopy(batch), adapt=True)
        agree = (e.outputs[0].pred_sem_seg.data == g.outputs[0].pred_sem_seg.data).float()
        assert agree.mean() > 0.95 and bool(g.updated)


DEMO_METHODS = ('tent', 'tent+stag', 'eata', 'sar', 'cotta')


@pytest.fixture(scope='module')
def demo_stream(tmp_path_factory):
    from stag_seg.demo.synth import ensure_demo_data

    root = str(tmp_path_factory.mktemp('demo'))
    ensure_demo_data(root, 4, num_train=2, num_val=4, num_per_condition=4)
    return root


@pytest.mark.parametrize('method', DEMO_METHODS)
def test_fast_mode_records_match_eager_on_the_demo_stream(method, demo_stream, tmp_path):
    """The demo stream (4 images per condition, 2 rounds, the shipped demo model): every
    (round, domain) mIoU of the fast mode within 0.2 of eager fp32's, the mean over the
    rounds within 0.1 (on CPU the fast mode is the fused attention and the fused Adam)."""
    from stag_seg.demo import run_method
    from stag_seg.demo.source_model import DEMO_CHECKPOINT

    runs = {}
    for fast in (False, True):
        runs[fast] = run_method(method, demo_stream, str(tmp_path / str(fast)),
                                DEMO_CHECKPOINT, rounds=2,
                                cfg_options={'test_cfg.fast': fast, 'test_cfg.progress': False})
    eager, fast = runs[False], runs[True]
    assert [(r['round'], r['domain']) for r in fast] == [(r['round'], r['domain'])
                                                         for r in eager]
    for e, f in zip(eager, fast, strict=True):
        assert abs(e['mIoU'] - f['mIoU']) <= 0.2, (method, e['round'], e['domain'])
    mean = {k: sum(r['mIoU'] for r in v) / len(v) for k, v in runs.items()}
    assert abs(mean[True] - mean[False]) <= 0.1


def test_quick_targets_read_the_fast_rows():
    """The quick benchmark's targets come from the right rows: fast STAG time, its ratio to
    the fp32 graph, to fast TENT, CoTTA, EATA and SAR ratios, the loop and 4 streams."""
    from stag_seg.benchmark.quick import fast_name, quick_targets
    from stag_seg.benchmark.variants import hook_default_variant

    stag = hook_default_variant()
    ms = {fast_name(stag): 20.0, fast_name(stag, 'graph fp32'): 50.0, fast_name('tent'): 19.9,
          fast_name('cotta'): 200.0, fast_name('eata'): 21.0, fast_name('sar'): 50.0}
    checks = quick_targets(ms, {'ratio': 1.2}, {'counts': [1, 2, 4], 'speedup': [1, 1.5, 2.6]})
    got = {c['target'].split(' <=')[0].split(' >=')[0]: (round(c['value'], 3), c['status'])
           for c in checks}
    assert got[f'{stag} [fast]'] == (20.0, 'PASS')
    assert got[f'bf16 / fp32 step time in the fast mode ({stag})'] == (0.4, 'PASS')
    assert got['cotta [fast]'] == (200.0, 'FAIL')
    assert got['STAG / tent in the fast mode'] == (round(20 / 19.9, 3), 'PASS')
    assert got['eata / tent in the fast mode'] == (round(21 / 19.9, 3), 'PASS')
    assert got['sar / tent in the fast mode'] == (round(50 / 19.9, 3), 'FAIL')
    assert got['engine loop at 1080p / bare step, fast mode'] == (1.2, 'FAIL')
    assert got['4 concurrent fast TENT streams / one stream (images/s)'] == (2.6, 'PASS')


def test_quick_needs_cuda_in_one_line(capsys):
    import importlib.util
    import os.path as osp

    from engine_utils import REPO

    if torch.cuda.is_available():
        pytest.skip('CUDA is available')
    spec = importlib.util.spec_from_file_location('bench', osp.join(REPO, 'tools',
                                                                    'benchmark.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit, match='no CUDA device'):
        bench.main(['--quick'])


def test_cli_fast_flag_is_the_config_switch():
    from stag_seg.commands.test_tta import parse_args

    assert parse_args(['cfg.py', '--fast']).cfg_options == {'test_cfg.fast': True}
    assert parse_args(['cfg.py']).cfg_options is None


def test_sweep_spec_packs_runs_with_a_fractional_gpu(tmp_path):
    """``resources=dict(num_gpus=0.25)`` in a sweep spec reaches Ray's task options as is
    (four runs share a GPU); a negative share is refused naming the key."""
    import os.path as osp

    from engine_utils import REPO

    from stag_seg.sweep.backends import make_backend
    from stag_seg.sweep.spec import SweepSpecError, load_spec

    text = open(osp.join(REPO, 'configs', 'sweeps', 'demo_smoke.py')).read()
    text = text.replace("_checkpoint = 'checkpoints/", f"_checkpoint = '{REPO}/checkpoints/")
    text = text.replace("config='configs/", f"config='{REPO}/configs/")
    packed = tmp_path / 'packed.py'
    packed.write_text(text.replace('resources = dict(num_cpus=1, num_gpus=0)',
                                   'resources = dict(num_cpus=2, num_gpus=0.25)'))
    spec = load_spec(str(packed))
    assert spec.resources == {'num_cpus': 2, 'num_gpus': 0.25}
    assert make_backend('ray', spec.resources).resources == {'num_cpus': 2, 'num_gpus': 0.25}
    bad = tmp_path / 'bad.py'
    bad.write_text(text.replace('num_gpus=0)', 'num_gpus=-0.5)'))
    with pytest.raises(SweepSpecError, match='resources.num_gpus'):
        load_spec(str(bad))
