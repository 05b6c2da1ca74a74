"""CoTTA's Cityscapes->ACDC protocol, point by point, against computations written from its
code: a fresh optimizer at each domain visit, TENT in eval mode, the loss at the label's
resolution, the views resized from the original image, slide inference of the teacher's views."""
import contextlib
import copy
import logging

import cv2
import pytest
import torch
import torch.nn.functional as F
from engine_utils import TINY_CONFIG, build_runner
from fixture_data import make_acdc_tree
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmseg.models.utils import resize
from mmseg.registry import DATASETS, HOOKS, MODELS
from torch import nn

from stag_seg.datasets.tta_views import BASE_VIEW_KEY, MultiScaleFlipViews, split_views
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.config import check_loop_options, run_fingerprint
from stag_seg.methods.cotta import CoTTA
from stag_seg.methods.head_grid import label_resolution_cross_entropy
from stag_seg.methods.tent import TentPseudoLabel
from stag_seg.plugins import TTAPlugin
from stag_seg.reports import load_records
from stag_seg.step.graphed import GraphedInference

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


# ------------------------------------------------------------- CoTTA's views and slide inference
def _imrescale_as_mmcv1(img, scale: tuple[int, int]):
    """mmcv 1.x's ``imrescale(img, scale)`` (mmseg 0.x's ``Resize(keep_ratio=True)``): fit
    (w, h) = ``scale`` keeping the ratio (long side to the long side's bound, short to the
    short's, the smaller factor), sizes rounded half up, cv2 bilinear."""
    h, w = img.shape[:2]
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    size = (int(w * factor + 0.5), int(h * factor + 0.5))
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)


def _views_batch(data_root: str, views: dict, indices=(0, 1)) -> dict:
    """Fog images with CoTTA's views made from the loaded image (no Resize before them)."""
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadExactAnnotations'), views]
    dataset = DATASETS.build(dict(type='ACDCDataset', data_root=data_root, condition='fog',
                                  pipeline=pipeline))
    return pseudo_collate([dataset[i] for i in indices])


def test_cotta_views_are_resized_from_the_original_image(tmp_path):
    """Each view is mmseg 0.x's MultiScaleFlipAug of the loaded image, as CoTTA makes it: the
    original resized to fit (int(w r), int(h r)) (mmcv 1.x's imrescale), then flipped; ratios
    outermost; the base view (ratio 1.0, not flipped) is the image every method sees
    (Resize(scale, keep_ratio=True) of the original), and the label is on it alone, at the
    original resolution."""
    root = make_acdc_tree(str(tmp_path / 'acdc'), conditions=('fog',), size=(150, 85))
    ratios = [0.5, 0.75, 1.0, 1.25, 1.75]
    scale = (64, 36)
    batch = _views_batch(root, dict(type='MultiScaleFlipViews', scale=scale, ratios=ratios))
    views, base = split_views(batch)
    assert len(views) == 2 * len(ratios) and base == 2 * ratios.index(1.0)
    dataset = DATASETS.build(dict(type='ACDCDataset', data_root=root, condition='fog',
                                  pipeline=[dict(type='LoadImageFromFile')]))
    for n in range(2):
        path = dataset[n]['img_path']
        original = cv2.imread(path, cv2.IMREAD_COLOR)                # BGR, as mmcv loads it
        for r, ratio in enumerate(ratios):
            expected = _imrescale_as_mmcv1(original, (int(scale[0] * ratio),
                                                      int(scale[1] * ratio)))
            for f, flipped in enumerate((expected, expected[:, ::-1])):
                view = views[2 * r + f]
                image = view['inputs'][n].permute(1, 2, 0).numpy()
                assert image.shape == flipped.shape, (ratio, f)
                assert (image == flipped).all(), (ratio, f)
                sample = view['data_samples'][n]
                assert sample.img_path == path and sample.ori_shape == (85, 150)
                assert sample.metainfo[BASE_VIEW_KEY] == (2 * r + f == base)
                assert ('gt_sem_seg' in sample) == (2 * r + f == base)
        # the base view is what Resize(scale, keep_ratio=True) gives every other method
        resized = DATASETS.build(dict(type='ACDCDataset', data_root=root, condition='fog',
                                      pipeline=[dict(type='LoadImageFromFile'),
                                                dict(type='Resize', scale=scale,
                                                     keep_ratio=True)]))[n]['img']
        assert (views[base]['inputs'][n].permute(1, 2, 0).numpy() == resized).all()
        label = cv2.imread(path.replace('/rgb_anon/', '/gt/')
                           .replace('_rgb_anon.png', '_gt_labelTrainIds.png'),
                           cv2.IMREAD_UNCHANGED)
        assert label is not None
        assert torch.equal(views[base]['data_samples'][n].gt_sem_seg.data[0],
                           torch.from_numpy(label.astype('int64')))


def test_multi_scale_flip_views_check_their_options():
    assert len(MultiScaleFlipViews(scale=(64, 32), ratios=[0.5, 1.0], flip=False).subroutines) \
        == 2
    with pytest.raises(ValueError, match=r'MultiScaleFlipViews: ratios \[0\.5, 2\.0\] have no '
                                         r'1\.0'):
        MultiScaleFlipViews(scale=(64, 32), ratios=[0.5, 2.0])
    with pytest.raises(ValueError, match=r'MultiScaleFlipViews: scale must be \(w, h\)'):
        MultiScaleFlipViews(scale=(64,), ratios=[1.0])
    with pytest.raises(ValueError, match=r'MultiScaleFlipViews: ratios must be'):
        MultiScaleFlipViews(scale=(64, 32), ratios=[1.0, -1])


class ClassifierCalls:
    """Counts the calls of a module (a hook), e.g. a head's classifier per window."""

    def __init__(self, module: nn.Module) -> None:
        self.count = 0
        module.register_forward_hook(self._hook)

    def _hook(self, *_) -> None:
        self.count += 1


def test_cotta_teacher_views_infer_in_slide_mode_and_the_student_whole(tmp_path):
    """With CoTTA's slide test_cfg, the pseudo-label is made as in CoTTA's code: the anchor's
    base-view confidence, and per view the teacher's mmseg ``slide_inference`` (views larger
    than the crop as several windows), resized to the original, flipped back, softmax, summed
    and divided by the number of views; the student's loss is on one whole-image forward of
    the base view."""
    root = make_acdc_tree(str(tmp_path / 'acdc'), conditions=('fog',), size=(300, 170))
    ratios = [0.5, 1.0, 1.5, 2.0]
    batch = _views_batch(root, dict(type='MultiScaleFlipViews', scale=(128, 72), ratios=ratios))
    model = _tiny_model_with_source_statistics()
    model.test_cfg = Config(dict(mode='slide', crop_size=(80, 80), stride=(60, 60)))
    reference = copy.deepcopy(model).eval()
    recorder = LossRecorder()
    adapter = TTAAdapter(model, CoTTA(threshold=0.2), plugins=[recorder],
                         optimizer=dict(type='Adam', lr=1e-3))
    windows = ClassifierCalls(adapter.method.teacher.decode_head.conv_seg)
    result = adapter.step(copy.deepcopy(batch), adapt=True)

    views, base = split_views(batch)
    grids = [((h - 80 + 59) // 60 + 1) * ((w - 80 + 59) // 60 + 1)
             for h, w in (v['inputs'][0].shape[-2:] for v in views)]
    assert max(grids) > 1 and windows.count == sum(grids)        # slid, one call per window
    with torch.no_grad():
        total, plain = 0, None
        for index, view in enumerate(views):                       # single_gpu_cotta's teacher
            data = reference.data_preprocessor(copy.deepcopy(view), False)
            metas = [s.metainfo for s in data['data_samples']]
            logits = reference.slide_inference(data['inputs'], metas)
            full = resize(logits, size=(170, 300), mode='bilinear', align_corners=False)
            probs = F.softmax(full, dim=1)
            if metas[0]['flip']:
                probs = probs.flip(dims=(3,))
            total = total + probs
            if index == base:
                plain = probs.argmax(1)
        mean = total / len(views)
        data = reference.data_preprocessor(copy.deepcopy(views[base]), False)
        anchor = reference.slide_inference(data['inputs'], [s.metainfo for s in
                                                            data['data_samples']])
        confidence = F.softmax(resize(anchor, size=(170, 300), mode='bilinear',
                                      align_corners=False), dim=1).amax(1)
        expected = torch.where(confidence > 0.2, plain, mean.argmax(1))
        student = reference.decode_head(reference.extract_feat(data['inputs']))
    assert 0 < int((confidence > 0.2).sum()) < confidence.numel()  # both branches are used
    labels = torch.stack([s.pred_sem_seg.data[0] for s in result.outputs])
    assert torch.equal(labels, expected)
    losses, logits = recorder.steps[0]
    torch.testing.assert_close(logits, student)                    # one whole forward
    torch.testing.assert_close(losses['loss_cotta'], adapter.method._student_loss(
        student, list(expected), views[base]['data_samples']))


def test_graphed_inference_leaves_slide_forwards_eager(caplog):
    """A model in slide mode is never captured (its windows are decided per view): None (run
    eager) and one logged line, before anything CUDA is touched."""
    model = _tiny_model_with_source_statistics()
    model.test_cfg = Config(dict(mode='slide', crop_size=(40, 40), stride=(30, 30)))
    graphed = GraphedInference(contextlib.nullcontext, logger=logging.getLogger('graphs'))
    inputs = torch.zeros(1, 3, 36, 64)
    with caplog.at_level(logging.INFO, logger='graphs'):
        for _ in range(2):
            assert graphed(model, inputs, [dict(img_shape=(36, 64))]) is None
    assert [r.getMessage() for r in caplog.records] == [
        "cuda_graph: the forwards of EncoderDecoder run eager (test_cfg mode='slide': windows "
        'decided per view)']
    assert not graphed.graphs
