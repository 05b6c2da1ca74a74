"""CoTTA: EMA teacher, stochastic restore, pseudo-labels from the anchor-gated ensemble, the
student's loss on the head grid, the shipped views, and kill + resume."""
import copy
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from engine_utils import REPO, TINY_CONFIG, build_runner
from fixture_data import make_acdc_tree
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmseg.models import SegTTAModel
from mmseg.registry import DATASETS, MODELS

from stag_seg.datasets import tta_views
from stag_seg.datasets.tta_views import BASE_VIEW_KEY, split_views
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.config import validate_tta_config
from stag_seg.methods.cotta import CoTTA
from stag_seg.methods.head_grid import IGNORE_INDEX, labels_on_head_grid
from stag_seg.plugins import TTAPlugin
from stag_seg.plugins.stag import STAGHook
from stag_seg.reports import load_records

init_default_scope('mmseg')      # pipelines built here resolve mmseg's transforms

B5_CONFIGS = [osp.join(REPO, 'configs', 'segformer', f'segformer_mit-b5{v}_cs2acdc_{m}.py')
              for v in ('', '-nvlabs') for m in ('cotta', 'cotta-stag')]


def tiny_views(scales=(1.0, 1.5)) -> dict:
    return dict(type='TestTimeAugSharedLabel', transforms=[
        [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in scales],
        [dict(type='RandomFlip', prob=p, direction='horizontal') for p in (0.0, 1.0)],
        [dict(type='PackSegInputs')]])


def tiny_pipeline(views: dict | None = None) -> list[dict]:
    """The tiny stream's pipeline (64x32 base view) with CoTTA's views (4 by default)."""
    return [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 32), keep_ratio=True),
            dict(type='LoadExactAnnotations'), views or tiny_views()]


@pytest.fixture(scope='module')
def acdc(tmp_path_factory):
    return make_acdc_tree(str(tmp_path_factory.mktemp('data') / 'acdc'), size=(128, 64))


@pytest.fixture(scope='module')
def batches(acdc):
    """Collated batches of 2 images (4 views each), as the loader gives them."""
    dataset = DATASETS.build(dict(type='ACDCDataset', data_root=acdc, condition='fog',
                                  pipeline=tiny_pipeline()))
    return [pseudo_collate([dataset[i], dataset[i + 1]]) for i in (0, 2)]


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODELS.build(Config.fromfile(TINY_CONFIG).model)


class Recorder(TTAPlugin):
    """Records, at each step, the loss terms and logits (in ``losses``, after the other
    plug-ins) and the student right after the optimizer step (``after_update``, before the
    method's EMA and restore)."""

    name = 'recorder'

    def __init__(self, model):
        super().__init__(loss_weight=0.0)
        self.model = model
        self.steps = []

    def losses(self, ctx):
        self.steps.append({'losses': dict(ctx.losses), 'logits': ctx.logits.detach().clone()})
        return {}

    def after_update(self, ctx):
        self.steps[-1]['student'] = {n: p.detach().clone()
                                     for n, p in self.model.named_parameters()}


def make_adapter(lr=1e-3, plugins=(), **options):
    model = tiny_model()
    recorder = Recorder(model)
    adapter = TTAAdapter(model, CoTTA(**options), plugins=[*plugins, recorder],
                         optimizer=dict(type='Adam', lr=lr))
    return adapter, recorder


def params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_teacher_is_the_ema_of_the_recorded_student_trajectory(batches):
    alpha = 0.7
    adapter, recorder = make_adapter(alpha=alpha, restore_prob=0.2)
    source = params(adapter.model)
    buffers = {n: b.clone() for n, b in adapter.model.named_buffers()}
    for _ in range(2):
        for batch in batches:
            assert adapter.step(batch, adapt=True).updated
    assert len(recorder.steps) == 4
    expected, swapped = dict(source), dict(source)
    for step in recorder.steps:
        expected = {n: alpha * expected[n] + (1 - alpha) * s for n, s in step['student'].items()}
        swapped = {n: (1 - alpha) * swapped[n] + alpha * s for n, s in step['student'].items()}
    teacher = params(adapter.method.teacher)
    for name, value in teacher.items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-7)
    moved = [n for n in teacher if not torch.allclose(teacher[n], source[n], atol=1e-5)]
    assert len(moved) > 0.9 * len(teacher)
    assert any(not torch.allclose(teacher[n], swapped[n], atol=1e-5) for n in teacher)
    # every parameter adapts; eval mode: BN running statistics stay the source's everywhere
    assert {id(p) for p in adapter.params} == {id(p) for p in adapter.model.parameters()}
    assert not adapter.model.training and not adapter.method.teacher.training
    for model in (adapter.model, adapter.method.teacher, adapter.method.anchor):
        for name, value in model.named_buffers():
            assert torch.equal(value, buffers[name]), name
    for name, value in params(adapter.method.anchor).items():
        assert torch.equal(value, source[name]), name
    # the classifier tap stays on the student: the copies carry no hook
    assert adapter.model.decode_head.conv_seg._forward_hooks
    for copy_ in (adapter.method.teacher, adapter.method.anchor):
        assert not any(m._forward_hooks for m in copy_.modules())


def test_restore_puts_back_source_values_at_drawn_positions_and_nowhere_else(batches):
    prob = 0.3
    adapter, recorder = make_adapter(restore_prob=prob)
    source = params(adapter.model)
    generator_state = adapter.method.generator.get_state()
    adapter.step(batches[0], adapt=True)
    before, after = recorder.steps[0]['student'], params(adapter.model)
    replay = torch.Generator().set_state(generator_state)
    restored = changed = total = 0
    for name, value in after.items():
        assert name.endswith(('weight', 'bias')), name     # every tiny-model parameter
        mask = torch.rand(value.shape, generator=replay) < prob
        assert torch.equal(value[mask], source[name][mask]), name
        assert torch.equal(value[~mask], before[name][~mask]), name
        moved = before[name] != source[name]
        restored += int((moved & (value == source[name])).sum())
        changed += int((moved & mask).sum())
        total += int(moved.sum())
    assert total > 100_000 and changed > 0.25 * total
    assert abs(restored / total - prob) < 0.02        # the probability, without the replay


def test_no_restore_when_the_probability_is_zero(batches):
    adapter, recorder = make_adapter(restore_prob=0.0)
    adapter.step(batches[0], adapt=True)
    for name, value in params(adapter.model).items():
        assert torch.equal(value, recorder.steps[0]['student'][name]), name


def _reference(teacher, anchor, batch):
    """Independent pseudo-labels: mmseg's SegTTAModel ensemble of the teacher, its plain
    base-view prediction, and the anchor's base-view confidence."""
    views, base = split_views(batch)
    ensemble = SegTTAModel(module=copy.deepcopy(teacher)).test_step(batch)
    plain = teacher.test_step(views[base])
    conf = [s.seg_logits.data.softmax(0).max(0).values for s in anchor.test_step(views[base])]
    return ([s.pred_sem_seg.data[0] for s in ensemble], [s.pred_sem_seg.data[0] for s in plain],
            conf)


def test_pseudo_labels_come_from_the_ensemble_exactly_where_the_anchor_is_unsure(batches):
    adapter, _ = make_adapter(lr=1e-4, alpha=0.5)
    method = adapter.method
    adapter.step(batches[0], adapt=True)
    adapter.step(batches[1], adapt=True)
    teacher, anchor = copy.deepcopy(method.teacher), copy.deepcopy(method.anchor)
    ensemble, plain, conf = _reference(teacher, anchor, batches[0])
    _, teacher_as_anchor, _ = _reference(anchor, anchor, batches[0])
    assert any(not torch.equal(a, b) for a, b in zip(plain, teacher_as_anchor, strict=True))
    method.threshold = float(torch.cat([c.flatten() for c in conf]).median())
    result = adapter.step(batches[0], adapt=True)
    unsure = confident = 0
    for sample, ens, own, c in zip(result.outputs, ensemble, plain, conf, strict=True):
        label = sample.pred_sem_seg.data[0]
        assert label.shape == sample.gt_sem_seg.data.shape[1:] == (64, 128)
        assert torch.equal(label, torch.where(c > method.threshold, own, ens))
        unsure += int(((c <= method.threshold) & (ens != own)).sum())
        confident += int(((c > method.threshold) & (ens != own)).sum())
    assert unsure > 500 and confident > 500    # both rules decide some pixels
    assert result.stats == {'ensemble_pixels': sum(int((c <= method.threshold).sum())
                                                   for c in conf),
                            'pixels': 2 * 64 * 128}


def test_student_loss_is_cross_entropy_to_the_pseudo_label_on_the_head_grid(batches):
    adapter, recorder = make_adapter()
    result = adapter.step(batches[0], adapt=True)
    step = recorder.steps[0]
    labels = torch.stack([s.pred_sem_seg.data for s in result.outputs]).float()
    logits = step['logits']
    assert logits.shape == (2, 19, 8, 16)             # 64x32 base view, stride 4
    targets = F.interpolate(labels, size=logits.shape[-2:], mode='nearest-exact')[:, 0].long()
    torch.testing.assert_close(step['losses']['loss_cotta'], F.cross_entropy(logits, targets))


def test_labels_on_head_grid_sample_cell_centres_and_ignore_padding():
    label = torch.arange(16).reshape(4, 4)       # the full-resolution label of a 2x2 image
    # the 2x2 image padded to 4x4 (right 2, bottom 2); a 2x2 grid's centres at input (1, 1),
    # (1, 3), (3, 1), (3, 3): only (1, 1) is on the image, at full-resolution pixel (2, 2)
    meta = dict(img_shape=(2, 2), img_padding_size=[0, 2, 0, 2])
    out = labels_on_head_grid(label, (2, 2), meta)
    assert out.tolist() == [[10, IGNORE_INDEX], [IGNORE_INDEX, IGNORE_INDEX]]
    # padding on the left/top (padding_size): the image is the grid's second row/column
    meta = dict(img_shape=(2, 2), padding_size=[2, 0, 2, 0])
    out = labels_on_head_grid(label, (2, 2), meta)
    assert out.tolist() == [[IGNORE_INDEX, IGNORE_INDEX], [IGNORE_INDEX, 10]]
    # no padding: nearest-exact resizing (cell centres), here 6x5 -> 3x2
    label = torch.arange(30).reshape(6, 5)
    out = labels_on_head_grid(label, (3, 2), dict(img_shape=(6, 5)))
    ref = F.interpolate(label[None, None].float(), size=(3, 2), mode='nearest-exact')
    assert out.tolist() == ref[0, 0].long().tolist() == [[6, 8], [16, 18], [26, 28]]


def test_cotta_with_stag_adds_both_terms_on_the_student_forward(batches):
    stag = STAGHook()
    adapter, recorder = make_adapter(plugins=[stag])
    result = adapter.step(batches[0], adapt=True)
    assert result.updated
    losses = recorder.steps[0]['losses']
    assert set(losses) == {'loss_cotta', 'loss_stag'} and losses['loss_stag'].requires_grad


def test_non_adapting_step_scores_the_pseudo_label_and_changes_nothing(batches):
    adapter, recorder = make_adapter()
    state = adapter.snapshot()
    result = adapter.step(batches[0], adapt=False)
    assert not result.attempted and not recorder.steps
    assert result.outputs[0].pred_sem_seg.data.shape == (1, 64, 128)
    after = adapter.state_dict()
    for part in ('model', ):
        for key, value in state[part].items():
            assert torch.equal(value, after[part][key]), key
    assert torch.equal(state['method']['generator'], after['method']['generator'])


def test_restore_generator_is_seeded_by_the_run_seed():
    """The stochastic restore draws from a generator seeded with the run's seed (mmengine's
    ``randomness.seed`` seeds torch before the adapter is built): two seeds, two streams of
    restore masks; the same seed, the same masks."""
    generators = []
    for seed in (123, 7, 123):
        model = tiny_model()
        torch.manual_seed(seed)
        adapter = TTAAdapter(model, CoTTA(restore_prob=0.5), optimizer=dict(type='Adam', lr=1e-3))
        assert adapter.method.generator.initial_seed() == seed
        generators.append(torch.rand(64, generator=adapter.method.generator))
    assert torch.equal(generators[0], generators[2])
    assert not torch.equal(generators[0], generators[1])


def test_reset_restores_teacher_and_generator(batches):
    adapter, _ = make_adapter(alpha=0.5, restore_prob=0.1)
    initial = adapter.snapshot()
    teacher = params(adapter.method.teacher)
    adapter.step(batches[0], adapt=True)
    assert not torch.equal(adapter.method.generator.get_state(), initial['method']['generator'])
    adapter.load_state_dict(initial)
    for name, value in params(adapter.method.teacher).items():
        assert torch.equal(value, teacher[name]), name
    assert torch.equal(adapter.method.generator.get_state(), initial['method']['generator'])
    first = adapter.step(batches[0], adapt=True)
    state = copy.deepcopy(adapter.state_dict())
    adapter.load_state_dict(initial)
    again = adapter.step(batches[0], adapt=True)
    for key, value in adapter.state_dict()['method']['teacher'].items():
        assert torch.equal(value, state['method']['teacher'][key]), key
    assert torch.equal(first.outputs[0].pred_sem_seg.data, again.outputs[0].pred_sem_seg.data)


def test_killed_and_resumed_cotta_stream_gives_byte_identical_results(tmp_path, acdc):
    options = {'test_dataloader.dataset.pipeline': tiny_pipeline(),
               'test_cfg.method': dict(type='cotta', alpha=0.5, restore_prob=0.2),
               'test_cfg.optimizer': dict(type='Adam', lr=1e-2)}
    build_runner(str(tmp_path / 'full'), acdc, **options).test()
    crash = [dict(type='CrashAfterItersHook', iters=22)]     # round 2, night, 2nd image
    runner = build_runner(str(tmp_path / 'part'), acdc, custom_hooks=crash, **options)
    with pytest.raises(KeyboardInterrupt):
        runner.test()
    assert len(load_records(str(tmp_path / 'part'))) == 5
    build_runner(str(tmp_path / 'part'), acdc, resume=True, **options).test()
    full = (tmp_path / 'full' / 'results.jsonl').read_bytes()
    assert (tmp_path / 'part' / 'results.jsonl').read_bytes() == full
    records = load_records(str(tmp_path / 'full'))
    assert len(records) == 8 and records[0]['method'] == 'cotta'
    assert all(0 < r['ensemble_pixels'] <= r['pixels'] == 4 * 64 * 128 for r in records)
    full = torch.load(tmp_path / 'full' / 'tta_state.pth', weights_only=True)['adapter']
    part = torch.load(tmp_path / 'part' / 'tta_state.pth', weights_only=True)['adapter']
    assert torch.equal(full['method']['generator'], part['method']['generator'])
    for key, value in full['method']['teacher'].items():
        assert torch.equal(value, part['method']['teacher'][key]), key


def _write_image_and_label(tmp_path, size=(1920, 1080)):
    rng = np.random.default_rng(0)
    img, label = tmp_path / 'img.png', tmp_path / 'label.png'
    cv2.imwrite(str(img), rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    cv2.imwrite(str(label), rng.integers(0, 19, (size[1], size[0]), dtype=np.uint8))
    return dict(img_path=str(img), seg_map_path=str(label), reduce_zero_label=False,
                seg_fields=[])


@pytest.mark.parametrize('config', B5_CONFIGS, ids=osp.basename)
def test_shipped_b5_configs_build_cotta_with_14_views_in_order(tmp_path, config):
    cfg = Config.fromfile(config)
    validate_tta_config(cfg, require_checkpoint=False)
    assert cfg.test_cfg.method == dict(type='cotta', alpha=0.999, threshold=0.69,
                                       restore_prob=0.01, loss_resolution='label')
    assert cfg.test_cfg.optimizer_reset == 'domain'
    assert cfg.test_cfg.optimizer == dict(type='Adam', lr=6e-5 / 8, betas=(0.9, 0.999))
    hooks = [h['type'] for h in cfg.get('custom_hooks', [])]
    assert hooks == (['STAGHook'] if 'stag' in config else [])
    if 'stag' in config:
        return
    pipeline = cfg.test_dataloader.dataset.pipeline
    results = _write_image_and_label(tmp_path)
    views = Compose(pipeline)(dict(results))
    # the base view is exactly what every other method sees (the TENT config's pipeline)
    tent = Config.fromfile(config.replace('_cotta', '_tent'))
    plain = Compose(tent.test_dataloader.dataset.pipeline)(dict(results))
    scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    expected = [((round(540 * r), round(960 * r)), flip) for r in scales for flip in (False, True)]
    samples = views['data_samples']
    assert [(tuple(s.img_shape), s.flip) for s in samples] == expected
    assert [tuple(x.shape[1:]) for x in views['inputs']] == [shape for shape, _ in expected]
    assert [s.metainfo[BASE_VIEW_KEY] for s in samples] == [i == 4 for i in range(14)]
    assert torch.equal(views['inputs'][4], plain['inputs'])
    assert torch.equal(views['inputs'][5], plain['inputs'].flip(-1))
    assert [hasattr(s, 'gt_sem_seg') for s in samples] == [i == 4 for i in range(14)]
    assert torch.equal(samples[4].gt_sem_seg.data, plain['data_samples'].gt_sem_seg.data)
    assert samples[4].gt_sem_seg.shape == (1080, 1920)


def test_views_without_the_unchanged_input_are_an_error(tmp_path):
    results = _write_image_and_label(tmp_path, size=(64, 32))
    views = tta_views.TestTimeAugSharedLabel(transforms=[
        [dict(type='Resize', scale_factor=1.5, keep_ratio=True)],
        [dict(type='RandomFlip', prob=0.0)], [dict(type='PackSegInputs')]])
    pipeline = Compose([dict(type='LoadImageFromFile'), dict(type='LoadExactAnnotations'), views])
    with pytest.raises(ValueError, match=r'img\.png.*Resize\(scale_factor=1\.0\)'):
        pipeline(results)


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match='CoTTA: alpha must be <= 1'):
        CoTTA(alpha=1.5)
    with pytest.raises(ValueError, match='CoTTA: threshold must be a finite number'):
        CoTTA(threshold='high')
    with pytest.raises(ValueError, match='CoTTA: restore_prob must be >= 0'):
        CoTTA(restore_prob=-0.1)
