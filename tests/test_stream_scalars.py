"""The stream's scalars through the Runner's visualizer (local and TensorBoard backends), and
--show-dir's colourised predictions."""
import glob
import json
import math
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from engine_utils import REPO, TINY_CONFIG, tiny_options
from fixture_data import make_acdc_tree
from mmseg.datasets import CityscapesDataset
from mmseg.registry import HOOKS

from stag_seg.commands.test_tta import parse_args
from stag_seg.engine.launch import build_runner, load_tta_config
from stag_seg.engine.scalars_hook import StreamScalarsHook, with_fractions
from stag_seg.plugins import TTAPlugin
from stag_seg.reports import load_records
from stag_seg.step.context import StepResult

TINY_STAG = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc_stag.py')
IMAGES_PER_DOMAIN = 4           # make_acdc_tree: 2 sequences x 2 frames
INTERVAL = 3


@HOOKS.register_module()
class LossRecorderHook(TTAPlugin):
    """A plug-in with a zero term that records every update's loss terms from the step
    context (the path the terms take to the backward pass, not to the visualizer)."""

    name = 'recorder'

    def __init__(self) -> None:
        super().__init__(loss_weight=1.0)
        self.seen: list[dict[str, float]] = []

    def losses(self, ctx) -> dict:
        return {'loss_recorder': ctx.logits.float().mean() * 0.0}

    def after_update(self, ctx) -> None:
        self.seen.append({k: float(v.detach()) for k, v in ctx.losses.items()})


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    return make_acdc_tree(str(tmp_path_factory.mktemp('acdc')))


def _tensorboard():
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return None
    return EventAccumulator


def _scalars(path: str) -> dict[tuple[str, int], float]:
    """scalars.json (one JSON object per add_scalars call) as {(tag, step): value}."""
    out = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            step = row.pop('step')
            out.update({(tag, step): value for tag, value in row.items()})
    return out


@pytest.fixture(scope='module')
def stream_run(data_root, tmp_path_factory):
    """One round of TENT + STAG + the recorder, step scalars every INTERVAL steps."""
    work_dir = str(tmp_path_factory.mktemp('work'))
    backends = [dict(type='LocalVisBackend')]
    if _tensorboard() is not None:
        backends.append(dict(type='TensorboardVisBackend'))
    options = tiny_options(data_root, num_rounds=1, **{
        'custom_hooks': [dict(type='STAGHook'), dict(type='LossRecorderHook')],
        'default_hooks.stream_scalars.interval': INTERVAL,
        'visualizer.vis_backends': backends, 'log_level': 'INFO'})
    runner = build_runner(load_tta_config(TINY_STAG, work_dir, options))
    runner.test()
    (recorder,) = [h for h in runner.hooks if isinstance(h, LossRecorderHook)]
    (vis_dir,) = glob.glob(osp.join(work_dir, '*', 'vis_data'))
    return dict(work_dir=work_dir, vis_dir=vis_dir, seen=recorder.seen,
                scalars=_scalars(osp.join(vis_dir, 'scalars.json')),
                records=load_records(work_dir))


def test_step_scalars_are_the_update_loss_terms(stream_run):
    seen, scalars = stream_run['seen'], stream_run['scalars']
    assert len(seen) == 4 * IMAGES_PER_DOMAIN                 # one update per image
    written = sorted({step for (tag, step) in scalars if tag.startswith('step/')})
    assert written == list(range(INTERVAL, len(seen) + 1, INTERVAL))
    for step in written:
        terms = seen[step - 1]                                 # batch size 1: step = image
        assert set(terms) == {'loss_entropy', 'loss_stag', 'loss_recorder'}
        got = {tag[len('step/'):]: v for (tag, s), v in scalars.items()
               if s == step and tag.startswith('step/')}
        assert got == pytest.approx({**terms, 'loss': math.fsum(terms.values())}, rel=1e-6)
    log = glob.glob(osp.join(stream_run['work_dir'], '*', '*.log'))[0]
    lines = [ln for ln in open(log) if ': loss_entropy ' in ln]
    assert len(lines) == len(written)
    assert f"loss_stag {seen[INTERVAL - 1]['loss_stag']:.4g}" in lines[0]


def test_domain_and_round_scalars_are_the_records(stream_run):
    scalars, records = stream_run['scalars'], stream_run['records']
    assert [r['domain'] for r in records] == ['fog', 'night', 'rain', 'snow']
    for r in records:
        for key in ('mIoU', 'mAcc', 'aAcc', 'skipped_updates'):
            assert scalars[(f"{r['domain']}/{key}", 1)] == r[key]
    assert scalars[('round/mIoU', 1)] == pytest.approx(np.mean([r['mIoU'] for r in records]))
    assert scalars[('round/mAcc', 1)] == pytest.approx(np.mean([r['mAcc'] for r in records]))


@pytest.mark.skipif(_tensorboard() is None, reason='tensorboard is not installed')
def test_tensorboard_events_hold_the_same_scalars(stream_run):
    events = _tensorboard()(stream_run['vis_dir'])
    events.Reload()
    got = {(tag, e.step): e.value for tag in events.Tags()['scalars']
           for e in events.Scalars(tag)}
    ours = {k: v for k, v in stream_run['scalars'].items()
            if k[0].startswith(('step/', 'round/', 'fog/', 'snow/'))}
    assert ours and set(ours) <= set(got)
    for key, value in ours.items():
        assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-6)   # float32 in events


def test_counters_get_their_fractions():
    assert with_fractions({'pixels': 10, 'kept_pixels': 4, 'reliable_pixels': 5,
                           'empty_steps': 1, 'mIoU': None}) == {
        'pixels': 10.0, 'kept_pixels': 4.0, 'reliable_pixels': 5.0, 'empty_steps': 1.0,
        'kept_pixels_fraction': 0.4, 'reliable_pixels_fraction': 0.5}


@pytest.mark.parametrize('attempted', [True, False, torch.tensor(True), torch.tensor(False)])
def test_a_step_not_attempted_writes_no_loss_terms(attempted):
    """A captured step hands its terms back even when its filter kept nothing (a device
    ``attempted`` False); as for an eager step, only its counters are written then."""
    written = []
    runner = SimpleNamespace(visualizer=SimpleNamespace(
        add_scalars=lambda scalars, step: written.append((scalars, step))))
    hook = StreamScalarsHook(interval=1, log=False)
    hook.steps, hook.images = 0, 0
    result = StepResult([object()], attempted=attempted, updated=attempted,
                        stats={'empty_steps': torch.tensor(0 if bool(attempted) else 1)},
                        losses={'loss_eata': torch.tensor(0.5)})
    hook.after_tta_step(runner, SimpleNamespace(round=1, domains=['fog']), result)
    expected = {'step/empty_steps': 0.0 if bool(attempted) else 1.0}
    if bool(attempted):
        expected.update({'step/loss_eata': 0.5, 'step/loss': 0.5})
    assert written == [(expected, 1)]


def test_command_line_shortcuts_set_the_config():
    args = parse_args(['cfg.py', '--show-dir', 'show', '--show-interval', '2',
                       '--vis-backend', 'tensorboard', 'wandb'])
    assert args.cfg_options == {
        'test_cfg.show_dir': 'show', 'test_cfg.show_interval': 2,
        'visualizer.vis_backends': [dict(type='LocalVisBackend'),
                                    dict(type='TensorboardVisBackend'),
                                    dict(type='WandbVisBackend')]}
    assert parse_args(['cfg.py']).cfg_options is None
    # --show-interval alone sets the option (for a show_dir in the config); without any
    # show_dir the start names both (it was silently dropped)
    assert parse_args(['cfg.py', '--show-interval', '3']).cfg_options == {
        'test_cfg.show_interval': 3}
    with pytest.raises(ValueError, match=r'test_cfg.show_interval=3 \(--show-interval\) '
                                         r'thins the images saved under test_cfg.show_dir'):
        load_tta_config(TINY_CONFIG, None, {'test_cfg.show_interval': 3})


def test_scalars_hook_can_be_turned_off(data_root, tmp_path):
    options = tiny_options(data_root, num_rounds=1, **{'default_hooks.stream_scalars': None})
    runner = build_runner(load_tta_config(TINY_CONFIG, str(tmp_path), options))
    assert not [h for h in runner.hooks if type(h).__name__ == 'StreamScalarsHook']


@pytest.mark.parametrize('interval', [1, 3])
def test_show_dir_writes_the_palette_of_the_predicted_ids(data_root, tmp_path, interval):
    out, show = str(tmp_path / 'out'), str(tmp_path / 'show')
    options = tiny_options(data_root, num_rounds=1, **{'test_cfg.show_dir': show,
                                                       'test_cfg.show_interval': interval})
    run = load_tta_config(TINY_CONFIG, str(tmp_path / 'work'), options, out_dir=out)
    build_runner(run).test()
    palette = np.array(CityscapesDataset.METAINFO['palette'], dtype=np.uint8)
    for domain in ('fog', 'night', 'rain', 'snow'):
        preds = sorted(glob.glob(osp.join(out, 'round_1', domain, '**', '*_labelTrainIds.png'),
                                 recursive=True))
        shown = sorted(glob.glob(osp.join(show, 'round_1', domain, '**', '*.png'),
                                 recursive=True))
        assert len(preds) == IMAGES_PER_DOMAIN
        assert len(shown) == len(range(0, IMAGES_PER_DOMAIN, interval))
        for path in shown:
            rel = osp.relpath(path, osp.join(show, 'round_1', domain))
            ids = cv2.imread(osp.join(out, 'round_1', domain,
                                      rel.replace('.png', '_labelTrainIds.png')),
                             cv2.IMREAD_UNCHANGED)
            image = cv2.imread(osp.join(data_root, rel.replace('.png', '_rgb_anon.png')))
            both = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
            width = ids.shape[1]
            assert both.shape == (ids.shape[0], 2 * width, 3)
            np.testing.assert_array_equal(both[:, width:], palette[ids])
            np.testing.assert_array_equal(both[:, :width], image[..., ::-1])


def test_scalars_figure_reads_the_local_backend(stream_run, tmp_path):
    from stag_seg.reports.scalars import load_scalars, plot_scalars

    loaded = load_scalars(osp.join(stream_run['vis_dir'], 'scalars.json'))
    assert {(tag, s): v for tag, pts in loaded.items() for s, v in pts} == stream_run['scalars']
    out = plot_scalars(stream_run['work_dir'], str(tmp_path / 'scalars.png'))
    assert cv2.imread(out) is not None
    with pytest.raises(FileNotFoundError, match='no .*scalars.json'):
        plot_scalars(str(tmp_path), str(tmp_path / 'none.png'))
