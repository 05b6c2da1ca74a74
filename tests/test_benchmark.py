"""tools/benchmark.py's code path on the tiny model: variants from the stream configs, CoTTA's
views, EATA's Fisher before the timed steps, table, JSON, ratios, the loop's split and the
targets (values and their relations, not timings)."""
import copy
import importlib.util
import json
import os
import os.path as osp
import statistics
import sys
import time
from types import SimpleNamespace

import pytest
import torch
from engine_utils import REPO, TINY_CONFIG
from mmengine.config import Config
from mmseg.registry import DATASETS, MODELS

from stag_seg.benchmark import DEFAULT_STAG_METHODS, run_benchmark, step_timing
from stag_seg.benchmark.fixtures import synthetic_batch, write_acdc_stream
from stag_seg.benchmark.isolation import run_in_fresh_process
from stag_seg.benchmark.loop_timing import SPLIT, IterationTimer, iteration_split
from stag_seg.benchmark.memory import MB, BackwardMark, persistent_bytes, step_peak_bytes
from stag_seg.benchmark.method_configs import find_stream_config
from stag_seg.benchmark.report import (
    BF16_TARGET,
    LOOP_TARGET,
    NO_GPU,
    POSTPROCESS_TARGET_MS,
    format_notes,
)
from stag_seg.benchmark.run import DEFAULT_LOOP_SIZE, device_options, loop_input_size
from stag_seg.benchmark.step_timing import (
    AdapterStep,
    build_steps,
    loop_options,
)
from stag_seg.benchmark.timers import PhaseTimers
from stag_seg.benchmark.variants import (
    BASELINE,
    build_variants,
    hook_default_variant,
    speed_name,
    stag_name,
)
from stag_seg.datasets.tta_views import split_views
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.methods.norm import norm_affine_params
from stag_seg.registry import TTA_METHODS
from stag_seg.step.timing import phase, timed

pytestmark = pytest.mark.filterwarnings('ignore:The draw is False:UserWarning')
SIZE, STREAM = (36, 64), (72, 128)          # the stream's 16:9, resized by half
SPEED = ['bf16', 'channels_last']
SHIPPED = osp.join(REPO, 'configs', 'segformer', 'segformer_mit-b5_cs2acdc_{}.py')
#: the methods with a shipped -stag config, in the variants' order (registered order)
STAG_BASES = ['cotta', 'eata', 'sar']
#: a tiny CoTTA stream: the tiny model's stream with 2 views (the base view and x1.5) and an
#: alpha that the shipped config does not have (so that its use is visible)
TINY_COTTA = """_base_ = [{tiny!r}]
views = dict(type='TestTimeAugSharedLabel', transforms=[
    [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (1.0, 1.5)],
    [dict(type='RandomFlip', prob=0.0, direction='horizontal')],
    [dict(type='PackSegInputs')]])
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=(960, 540), keep_ratio=True),
    dict(type='LoadExactAnnotations'), views]))
test_cfg = dict(method=dict(type='cotta', alpha=0.99, threshold=0.69, restore_prob=0.01))
"""


def tiny_cotta_configs(folder) -> dict[str, str]:
    """--method-configs for a 2-view CoTTA (and + STAG) on the tiny model."""
    cotta, stag = folder / 'tiny_cotta.py', folder / 'tiny_cotta-stag.py'
    cotta.write_text(TINY_COTTA.format(tiny=TINY_CONFIG))
    stag.write_text("_base_ = ['./tiny_cotta.py']\ncustom_hooks = [dict(type='STAGHook')]\n")
    return {'cotta': str(cotta), 'cotta-stag': str(stag)}


@pytest.fixture(scope='module')
def cotta_configs(tmp_path_factory):
    return tiny_cotta_configs(tmp_path_factory.mktemp('configs'))


@pytest.fixture(scope='module')
def report(tmp_path_factory, cotta_configs):
    out = str(tmp_path_factory.mktemp('bench') / 'benchmark.json')
    lines: list[str] = []
    result = run_benchmark([TINY_CONFIG], size=SIZE, device='cpu', num_steps=2, warmup=1,
                           speed=SPEED, loop_images=3, stream_size=STREAM, loop_workers=1,
                           startup_reps=1, postprocess_reps=1, out=out,
                           method_configs=cotta_configs, view_steps=1,
                           loop_precisions=('fp32', 'bf16'), stag_methods=['all'],
                           print_fn=lines.append)
    return result, out, '\n'.join(lines)


def test_variants_are_every_method_each_with_stag_stag_forms_and_speed_options(report,
                                                                               cotta_configs):
    result, _, text = report
    rows = result['configs'][0]['variants']
    names = [r['variant'] for r in rows]
    # every registered method with a stream config (one registered by another test has none)
    methods = sorted(m for m in TTA_METHODS.module_dict
                     if find_stream_config(TINY_CONFIG, m, cotta_configs) is not None)
    assert {'source', 'bn-adapt', 'tent', 'tent-pl', 'eata', 'sar', 'cotta'} <= set(methods)
    assert sorted(names[:len(methods)]) == methods and names[:2] == ['source', 'tent']
    assert names[len(methods):] == [
        stag_name('feature, kspace'), stag_name('classifier'), stag_name('feature, naive'),
        *[hook_default_variant(m) for m in STAG_BASES], 'tent [bf16]', 'tent [channels_last]']
    by_name = {r['variant']: r for r in rows}
    assert by_name['tent [bf16]']['options'] == {'amp': 'bf16'}
    assert by_name[stag_name('classifier')]['plugins'] == [dict(type='STAGHook',
                                                                grad_space='classifier')]
    # every method's options are its stream config's test_cfg.method (no bare defaults):
    # the shipped SegFormer-B5 configs (the tiny config has no siblings), CoTTA's given
    for method in methods:
        path = cotta_configs['cotta'] if method == 'cotta' else SHIPPED.format(method)
        expected = Config.fromfile(path).test_cfg.method
        assert by_name[method]['method'] == expected and by_name[method]['base'] is None
        assert by_name[method]['stream_config'] == path
    assert by_name['eata']['method']['fisher_dataset']['type'] == 'CityscapesDataset'
    assert by_name['cotta']['method']['alpha'] == 0.99          # the given config's
    for method in STAG_BASES:       # + STAG: the -stag config's method and STAGHook (defaults)
        row = by_name[hook_default_variant(method)]
        assert row['base'] == method and row['plugins'] == [dict(type='STAGHook')]
        assert row['method'] == by_name[method]['method']
    assert by_name[hook_default_variant('cotta')]['stream_config'] == cotta_configs['cotta-stag']
    assert 'variants on tiny_segformer_acdc.py: source, tent' in text
    for name in names:
        assert name in text


def test_table_ratios_and_memory_relations(report):
    result, _, text = report
    config = result['configs'][0]
    rows = {r['variant']: r for r in config['variants']}
    base = rows[BASELINE]
    assert 'median ms/step' in text and 'peak MB' in text
    assert '1 timed step(s) (the first: no warm-up)' in text
    assert config['clock'] == 'cpu'                  # CPU, one torch thread
    for row in rows.values():
        steps = 1 if row['views'] > 1 else 2             # view_steps=1 for CoTTA's views
        assert row['steps'] == len(row['times_ms']) == steps
        assert row['warmup'] == (0 if row['views'] > 1 else 1)    # CPU: CoTTA's is its first
        assert all(t > 0 for t in row['times_ms'])
        assert row['times_ms'] == row['cpu_times_ms'] and len(row['wall_times_ms']) == steps
        assert row['median_ms'] == pytest.approx(statistics.median(row['times_ms']))
        assert row['wall_median_ms'] == pytest.approx(statistics.median(row['wall_times_ms']))
        assert row['time_ratio'] == pytest.approx(row['median_ms'] / base['median_ms'])
        assert row['peak_mb'] == pytest.approx(row['persistent_mb'] + row['step_mb'])
        assert row['memory_ratio'] == pytest.approx(row['peak_mb'] / base['peak_mb'])
    assert base['time_ratio'] == 1.0 and base['memory_ratio'] == 1.0
    assert rows['source']['step_mb'] < base['step_mb']           # no autograd graph
    no_backward = {'source', 'bn-adapt'}                          # forward-only methods
    assert all(rows[n]['at_backward_mb'] is None for n in no_backward)
    assert all(rows[n]['at_backward_mb'] > base['persistent_mb'] for n in rows
               if n not in no_backward)
    # the step split: on CPU the timed steps themselves, each step's parts sum to its time
    for row in rows.values():
        assert len(row['split_times_ms']) == row['steps']
        for parts, total in zip(row['split_times_ms'], row['times_ms'], strict=True):
            assert sum(parts.values()) == pytest.approx(total, rel=1e-9)
        assert row['split_ms']['forward'] > 0
    assert rows['source']['split_ms']['backward'] == 0.0            # no update: no backward
    assert rows['source']['split_ms']['update'] == 0.0
    assert rows['bn-adapt']['split_ms']['backward'] == 0.0
    assert all(rows[n]['split_ms']['backward'] > 0 for n in rows if n not in no_backward)
    assert rows[stag_name('classifier')]['split_ms']['plugin terms'] > 0
    assert base['split_ms']['plugin terms'] < 0.1          # called, with no plug-in
    assert 'step split (median ms' in text
    # the STAG term alone: only for the rows with the plug-in
    assert {n for n, r in rows.items() if r['stag_term_ms'] is not None} == {
        *(stag_name(f) for f in ('feature, kspace', 'classifier', 'feature, naive')),
        *(hook_default_variant(m) for m in STAG_BASES)}
    assert 'STAG term alone' in text and 'K-space vs naive C-space' in text
    kn = config['kspace_vs_naive']
    assert kn['saved_mb'] == pytest.approx(rows[stag_name('feature, naive')]['peak_mb']
                                           - rows[stag_name('feature, kspace')]['peak_mb'])
    cls = config['classifier']
    assert cls['num_classes'] == 19 and cls['channels'] == 16
    assert cls['logits_shape'] == [1, 19, SIZE[0] // 4, SIZE[1] // 4]


def test_persistent_memory_is_weights_buffers_and_adam_state():
    """Independent count: every parameter and buffer, plus Adam's two moments and its step
    counter for each adapted (norm affine) parameter."""
    variants = build_variants(TINY_CONFIG, ['tent'])[:1]
    step = build_steps(TINY_CONFIG, SIZE, torch.device('cpu'), variants,
                       synthetic_batch(SIZE))['tent']
    step.step()
    model = step.model
    adapted = norm_affine_params(model)
    resize_output = 19 * SIZE[0] * SIZE[1] * 4       # the kept (1, K, H, W) float32 resize
    expected = (sum(t.numel() * t.element_size() for t in [*model.parameters(),
                                                          *model.buffers()])
                + sum(2 * p.numel() * 4 + 4 for p in adapted) + resize_output)
    assert persistent_bytes(step) == expected


def test_benchmark_step_is_the_adapters_step_with_the_configs_optimizer():
    """One benchmark step changes the model exactly as TTAAdapter.step with TENT and the
    config's optimizer does on the same batch (no grafted or fake step)."""
    cfg = Config.fromfile(TINY_CONFIG)
    opt = loop_options(cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    batch = synthetic_batch(SIZE)
    ours = AdapterStep(copy.deepcopy(model), build_variants(TINY_CONFIG, ['tent'])[0],
                       {k: opt[k] for k in ('classifier', 'optimizer', 'optim_wrapper')},
                       batch)
    reference = TTAAdapter(copy.deepcopy(model), TTA_METHODS.build(dict(type='tent')),
                           opt['classifier'], optimizer=opt['optimizer'])
    before = {k: v.clone() for k, v in ours.model.state_dict().items()}
    for _ in range(2):
        result = ours.step()
        reference.step(batch, adapt=True)
    assert result.updated
    changed = [k for k, v in ours.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    for key, value in reference.model.state_dict().items():
        torch.testing.assert_close(ours.model.state_dict()[key], value, rtol=0, atol=0)


def test_json_matches_the_printout_and_records_the_machine(report):
    result, out, text = report
    with open(out) as f:
        saved = json.load(f)
    assert saved == json.loads(json.dumps(result))
    machine = saved['machine']
    assert machine['cores'] >= 1 and machine['torch'] == torch.__version__
    assert machine['device'] == 'cpu' and machine['torch_threads'] == 1
    assert saved['options']['speed'] == SPEED and saved['options']['stream_size'] == list(STREAM)
    assert f'wrote {out}' in text


def test_loop_streams_full_resolution_and_splits_each_image(report):
    result, _, text = report
    fp32, bf16 = result['loop']
    assert fp32['amp'] is None and bf16['amp'] == 'bf16'
    for loop in (fp32, bf16):
        assert loop['images'] == 3 and loop['stream_size'] == list(STREAM)
        assert loop['input_size'] == list(SIZE)         # the config's pipeline resized them
        assert loop['num_workers'] == 1 and loop['instrumented'] and loop['clock'] == 'cpu'
        for clock in ('wall', 'cpu'):
            split = loop['split_s'][clock]
            assert set(split) == set(SPLIT)
            # the split covers each steady image's whole time, nothing twice
            assert sum(split.values()) == pytest.approx(loop['per_image_s'][clock], rel=1e-9)
            assert split['step'] > 0 and split['postprocess'] > 0 and split['scoring'] > 0
        # waiting for a batch is wall time on both clocks
        assert loop['split_s']['cpu']['data_wait'] == loop['split_s']['wall']['data_wait']
    for loop in (fp32, bf16):       # bare steps interleaved with the loop's images
        assert set(loop['bare_step_s']) == {'wall', 'cpu'} and loop['bare_step_s']['cpu'] > 0
        assert loop['ratio'] == pytest.approx(loop['per_image_s']['cpu']
                                              / loop['bare_step_s']['cpu'])
    assert bf16['mIoU_minus_fp32'] == pytest.approx(bf16['mIoU'] - fp32['mIoU'])
    assert 'engine loop (tent, 3 PNGs at 128x72, resized to 64x36' in text
    assert result['options']['loop_size'] == list(SIZE)        # --size given: the loop's too


def test_the_loop_size_is_given_else_the_step_s_given_else_the_device_s():
    assert DEFAULT_LOOP_SIZE == {'cuda': None, 'cpu': (288, 512)}
    assert loop_input_size('cpu', None) == (288, 512)
    assert loop_input_size('cpu', (100, 200)) == (100, 200)
    assert loop_input_size('cuda', None) == (540, 960)
    assert loop_input_size('cpu', (100, 200), loop_size=[72, 128]) == (72, 128)
    assert loop_input_size('cuda', None, loop_size=(270, 480)) == (270, 480)


def test_fresh_process_runs_the_function_apart_and_reports_its_errors():
    assert run_in_fresh_process(os.getpid, threads=1) != os.getpid()
    with pytest.raises(RuntimeError, match=r"(?s)int failed in its benchmark process.*"
                                           r"ValueError: invalid literal"):
        run_in_fresh_process(int, 'x')


def test_targets_have_values_statuses_and_no_gpu_lines(report):
    result, _, text = report
    checks = {c['target']: c for c in result['targets']}
    rows = {r['variant']: r for r in result['configs'][0]['variants']}
    name = osp.basename(TINY_CONFIG)
    assert hook_default_variant() == stag_name('feature, kspace')     # STAG_DEFAULTS' form
    for form in ('feature, kspace', 'classifier'):
        default = ' [hook default]' if stag_name(form) == hook_default_variant() else ''
        row = rows[stag_name(form)]
        time_check = checks[f'{name}: {stag_name(form)}{default} time / tent <= 1.03']
        assert time_check['value'] == row['time_ratio']
        assert time_check['status'] == ('PASS' if row['time_ratio'] <= 1.03 else 'FAIL')
        memory = checks[f'{name}: {stag_name(form)}{default} peak memory / tent <= 1.02']
        assert memory['status'] == ('PASS' if row['memory_ratio'] <= 1.02 else 'FAIL')
    loop_cpu = checks[f'engine loop over the real-resolution stream / bare step on CPU <= '
                      f"{LOOP_TARGET['cpu']}"]
    assert loop_cpu['value'] == result['loop'][0]['ratio']
    assert loop_cpu['status'] == ('PASS' if loop_cpu['value'] <= 1.10 else 'FAIL')
    gpu = [c for c in result['targets'] if 'GPU' in c['target']]
    assert len(gpu) == 2 and all(c['status'] == NO_GPU and c['value'] is None for c in gpu)
    assert any(f'bf16 / fp32 step time on GPU <= {BF16_TARGET}' in c['target'] for c in gpu)
    pp = result['postprocess']
    assert pp['out_size'] == list(STREAM) and pp['input_size'] == list(SIZE)
    assert pp['clock'] == 'cpu' and pp['threads'] == 1
    assert pp['total_ms'] == pytest.approx(pp['postprocess_ms'] + pp['scoring_ms'])
    pp_check = next(c for c in result['targets'] if 'post-processing + scoring' in c['target'])
    assert pp_check['status'] == ('PASS' if pp['total_ms'] <= POSTPROCESS_TARGET_MS else 'FAIL')
    for clock in ('wall', 'cpu'):
        startup = result['startup'][clock]
        assert startup['saved_s'] == pytest.approx(startup['with_yapf_s']
                                                   - startup['without_yapf_s'])
    for check in result['targets']:
        assert f"[{check['status']}] {check['target']}" in text


def _stamp(wall, cpu, step=0.0, post=0.0, scoring=0.0):
    phases = {'step': step, 'postprocess': post, 'scoring': scoring}
    return ({'wall': wall, 'cpu': cpu},
            {'wall': phases, 'cpu': {k: v / 2 for k, v in phases.items()}})


def test_iteration_split_by_hand():
    """Two iterations after the first, each iteration followed by a bare step (the loop goes
    on at ``resumes``); the CPU clock runs at half speed in the phases and differently
    outside them; waits are wall time on both clocks."""
    timer = IterationTimer(torch.device('cpu'), PhaseTimers(torch.device('cpu')))
    timer.starts = [_stamp(0.0, 0.0), _stamp(10.5, 5.0, 9.0, 1.0, 0.5),
                    _stamp(20.0, 10.0, 18.0, 2.5, 1.0)]
    timer.ends = [_stamp(10.0, 4.9, 9.0, 1.0, 0.5), _stamp(19.8, 9.9, 18.0, 2.5, 1.0),
                  _stamp(30.0, 15.0, 27.0, 3.0, 1.25)]
    timer.resumes = [{'wall': 10.2, 'cpu': 5.0}, {'wall': 19.9, 'cpu': 9.95},
                     {'wall': 30.1, 'cpu': 15.1}]
    first, second = iteration_split(timer, 'wall')
    assert first == pytest.approx({'data_wait': 0.3, 'step': 7.5, 'postprocess': 1.5,
                                   'scoring': 0.5, 'other': 9.3 - 9.0 - 0.5})
    assert second == pytest.approx({'data_wait': 0.1, 'step': 8.5, 'postprocess': 0.5,
                                    'scoring': 0.25, 'other': 10.0 - 9.0 - 0.25})
    first, second = iteration_split(timer, 'cpu')
    assert first == pytest.approx({'data_wait': 0.3, 'step': 3.75, 'postprocess': 0.75,
                                   'scoring': 0.25, 'other': 4.9 - 4.5 - 0.25})
    assert second == pytest.approx({'data_wait': 0.1, 'step': 4.25, 'postprocess': 0.25,
                                    'scoring': 0.125, 'other': 5.0 - 4.5 - 0.125})


def test_bare_step_follows_each_iteration_and_is_timed_apart():
    class Bare:
        calls = 0

        def step(self):
            Bare.calls += 1
            time.sleep(0.02)

    timer = IterationTimer(torch.device('cpu'), PhaseTimers(torch.device('cpu')), Bare())
    for i in range(3):
        timer.before_test_iter(None, i)
        timer.after_test_iter(None, i)
    assert Bare.calls == 3 and len(timer.bare_times) == 3
    assert all(t['wall'] >= 0.02 and t['cpu'] < 0.015 for t in timer.bare_times)
    for (end, _), resume, bare in zip(timer.ends, timer.resumes, timer.bare_times,
                                      strict=True):
        assert resume['wall'] - end['wall'] == pytest.approx(bare['wall'])
    # the wait for the next batch starts after the bare step: tiny here
    assert all(s['data_wait'] < 0.015 for s in iteration_split(timer, 'wall'))


def test_phase_timers_time_the_engine_phases_through_the_hook():
    timers = PhaseTimers(torch.device('cpu'))
    with timed(timers):
        with phase('work'):
            time.sleep(0.02)
            with phase('work'):                     # nested in itself: counted once
                time.sleep(0.01)
        with pytest.raises(KeyError), phase('helper'):
            time.sleep(0.01)
            raise KeyError('boom')
    with phase('work'):                             # no timer installed: not counted
        time.sleep(0.02)
    assert 0.03 <= timers.totals['wall']['work'] < 0.05
    assert timers.totals['wall']['helper'] >= 0.01
    assert timers.totals['cpu']['work'] < 0.015        # sleeping costs no CPU time


def test_cpu_peak_counts_the_step_s_tensors_only():
    kept = torch.ones(4 * MB, dtype=torch.uint8)      # allocated before: not counted
    mark = BackwardMark(torch.device('cpu'))

    def step():
        a = torch.ones(3 * MB, dtype=torch.uint8)
        b = torch.ones(2 * MB, dtype=torch.uint8)
        del a
        mark.fire()                                  # holds b (2 MB) here
        mark.fire()                                  # a second backward: not a new mark
        del b
        torch.ones(1 * MB, dtype=torch.uint8)

    peak, at_mark = step_peak_bytes(step, torch.device('cpu'), mark)
    assert 5 * MB <= peak < 5 * MB + 64 * 1024
    assert 2 * MB <= at_mark < 2 * MB + 64 * 1024
    assert step_peak_bytes(step, torch.device('cpu'))[1] is None
    assert kept.numel() == 4 * MB


def test_generated_stream_is_an_acdc_domain(tmp_path):
    root = write_acdc_stream(str(tmp_path / 'acdc'), 2, size=(36, 64))
    dataset = DATASETS.build(dict(type='ACDCDataset', data_root=root, condition='fog',
                                  split='train', pipeline=[dict(type='LoadImageFromFile'),
                                                           dict(type='LoadExactAnnotations')]))
    assert len(dataset) == 2
    item = dataset[1]
    assert item['img'].shape == (36, 64, 3) and item['gt_seg_map'].shape == (36, 64)
    ids = set(item['gt_seg_map'].ravel().tolist())
    assert 255 in ids and ids - {255} <= set(range(19))


def test_unknown_method_or_speed_option_is_one_clear_error():
    with pytest.raises(ValueError, match=r"--methods: unknown method\(s\) \['nope'\]"):
        build_variants(TINY_CONFIG, ['nope'])
    with pytest.raises(ValueError, match=r"--speed: unknown option\(s\) \['fast'\]"):
        build_variants(TINY_CONFIG, ['tent'], ['fast'])
    names = [v.name for v in build_variants(TINY_CONFIG, ['source'], ['tf32'])]
    assert names[:2] == ['source', 'tent'] and names[-1] == speed_name('tf32')


def test_stag_methods_choose_which_methods_are_timed_with_stag(cotta_configs):
    def stag_rows(stag_methods):
        variants = build_variants(TINY_CONFIG, ['eata', 'sar', 'cotta'], (), cotta_configs,
                                  stag_methods)
        return [v.name for v in variants if v.base not in (None, BASELINE)]
    assert stag_rows(None) == [hook_default_variant(m) for m in ('eata', 'sar', 'cotta')]
    assert stag_rows(DEFAULT_STAG_METHODS['cpu']) == [hook_default_variant(m)
                                                      for m in ('eata', 'sar')]
    assert stag_rows(['sar']) == [hook_default_variant('sar')]


@pytest.mark.parametrize('argv, message', [
    (['--stag-methods', 'bogus'], r"--stag-methods: unknown method\(s\) \['bogus'\]"),
    (['--view-warmup', '-1'], r'--view-warmup: expected a number >= 0, got -1'),
    (['--loop-size', '0', '64'], r'--loop-size: expected two sizes >= 1, got \[0, 64\]'),
    (['--quick', '--loop-size', '72', '128'], r'--loop-size does not apply with --quick'),
    (['--quick', '--speed'], r'--speed does not apply with --quick'),
    (['--quick', '--view-warmup', '0'], r'--view-warmup does not apply with --quick'),
    (['--quick', '--stag-methods', 'all'], r'--stag-methods does not apply with --quick'),
    (['--quick', '--loop-precisions', 'fp32'], r'--loop-precisions does not apply with'),
    (['--streams', '1', '2'], r'--streams applies with --quick only'),
])
def test_new_benchmark_flags_are_checked_before_anything_runs(argv, message):
    from stag_seg.commands import benchmark as cli

    with pytest.raises(SystemExit, match=message):
        cli.check_args(cli.parse_args(argv))


def test_quick_accepts_the_options_it_reads():
    from stag_seg.commands import benchmark as cli

    cli.check_args(cli.parse_args(['--quick', '--steps', '3', '--warmup', '1', '--size', '36',
                                   '64', '--loop-images', '4', '--loop-workers', '0',
                                   '--streams', '1', '4', '--out', 'x.json',
                                   '--view-steps', '2']))
    cli.check_args(cli.parse_args(['--loop-size', '72', '128', '--threads', '1']))


def test_device_options_take_each_device_s_defaults():
    cpu = device_options('cpu')
    assert cpu == {'num_steps': 8, 'warmup': 1, 'view_steps': 1, 'view_warmup': 0,
                   'loop_images': 10, 'loop_precisions': ('fp32',), 'speed': ('bf16',),
                   'stag_methods': ('eata', 'sar'), 'later_methods': ('tent',)}
    cuda = device_options('cuda', methods=['tent', 'sar'])
    assert cuda['loop_precisions'] == ('fp32', 'bf16') and cuda['stag_methods'] is None
    assert cuda['view_warmup'] is None and cuda['later_methods'] == ['tent', 'sar']
    given = device_options('cpu', view_warmup=2, loop_precisions=['bf16'], speed=[],
                           stag_methods=['all'], later_methods=['all'])
    assert given['view_warmup'] == 2 and given['loop_precisions'] == ('bf16',)
    assert given['speed'] == () and given['stag_methods'] is None
    assert given['later_methods'] is None
    with pytest.raises(ValueError, match='--view-warmup must be >= 0'):
        device_options('cpu', view_warmup=-1)


def test_each_variant_takes_its_own_warmup_then_its_timed_steps():
    calls = {'tent': 0, 'cotta': 0}

    def fake(name):
        def step():
            calls[name] += 1
            return SimpleNamespace(updated=True, stats={})
        return SimpleNamespace(step=step, adapter=SimpleNamespace(method=object()))

    times = step_timing.time_steps({name: fake(name) for name in calls}, 3, 2,
                                   torch.device('cpu'), counts={'cotta': 1},
                                   warmups={'cotta': 0})
    assert calls == {'tent': 2 + 3, 'cotta': 0 + 1}
    assert {n: len(t) for n, t in times['cpu'].items()} == {'tent': 3, 'cotta': 1}


def test_help_documents_the_options(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool', osp.join(REPO, 'tools', 'benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(sys, 'argv', ['benchmark.py', '--help'])
    with pytest.raises(SystemExit) as exit_info:
        tool.parse_args()
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ('--device', '--size', '--steps', '--warmup', '--configs', '--methods',
                   '--stag-methods', '--view-steps', '--view-warmup', '--later-methods',
                   '--speed', '--skip-loop', '--loop-images', '--loop-precisions',
                   '--loop-size', '--stream-size', '--loop-workers', '--startup-reps',
                   '--threads', '--out', '--quick', '--streams'):
        assert option in out
    args = tool.parse_args(['--speed', '--methods', 'tent'])
    assert args.speed == [] and args.methods == ['tent']


#: CoTTA's protocol on the tiny model: 2 views (x1.0 and x1.5) made from the original image,
#: the teacher sliding with a crop smaller than the x1.5 view
TINY_COTTA_PROTOCOL = """_base_ = [{tiny!r}]
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'), dict(type='LoadExactAnnotations'),
    dict(type='MultiScaleFlipViews', scale=(960, 540), ratios=[1.0, 1.5], flip=False)]))
model = dict(test_cfg=dict(_delete_=True, mode='slide', crop_size=(64, 64), stride=(48, 48)))
test_cfg = dict(method=dict(type='cotta'))
"""


def test_cotta_batch_has_views_from_the_original_and_its_variant_slides(tmp_path):
    """A CoTTA stream config whose views are made from the original image: its batch is made
    from a synthetic original twice the input size (the base view at the input size, the
    label at the original's), its variant's model slides as its config says (one classifier
    call per window), and the notes say both."""
    config = tmp_path / 'tiny_cotta.py'
    config.write_text(TINY_COTTA_PROTOCOL.format(tiny=TINY_CONFIG))
    variants = build_variants(TINY_CONFIG, ['cotta'], method_configs={'cotta': str(config)})
    cotta = next(v for v in variants if v.name == 'cotta')
    assert cotta.model_test_cfg == dict(mode='slide', crop_size=(64, 64), stride=(48, 48))
    assert next(v for v in variants if v.name == BASELINE).model_test_cfg is None
    assert cotta.views_from_original
    assert not next(v for v in variants if v.name == BASELINE).views_from_original
    steps = build_steps(TINY_CONFIG, SIZE, torch.device('cpu'), [cotta], calibrate=False)
    step = steps['cotta']
    views = [v['inputs'][0].shape[-2:] for v in split_views(step.batch)[0]]
    assert views == [SIZE, (54, 96)]
    label = step.base_batch['data_samples'][0]
    assert label.ori_shape == (2 * SIZE[0], 2 * SIZE[1])
    assert label.gt_sem_seg.data.shape[-2:] == (2 * SIZE[0], 2 * SIZE[1])
    assert step.model.test_cfg.mode == 'slide'
    windows = []
    step.adapter.method.teacher.decode_head.conv_seg.register_forward_hook(
        lambda *_: windows.append(1))
    assert step.step().updated
    assert len(windows) == 1 + 2                 # the x1.0 view fits the crop, x1.5 in 2
    row = {'variant': 'cotta', 'views': 2, 'steps': 1, 'views_from_original': True,
           'model_test_cfg': cotta.model_test_cfg}
    notes = '\n'.join(format_notes({'variants': [row]}))
    assert 'views made from an original image twice the input size' in notes
    assert 'slide mode (crop (64, 64), stride (48, 48)' in notes
