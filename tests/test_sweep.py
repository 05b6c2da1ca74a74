"""Sweeps: spec expansion and errors, t quantiles, aggregation against numpy, run bookkeeping
(serial, with a stand-in CLI), and a real sweep on a local Ray instance killed and rerun."""
import argparse
import csv
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from fixture_data import tiny_sweep_options
from mmengine.config import Config, DictAction

from stag_seg.files import write_atomic
from stag_seg.sweep import SweepError, SweepSpecError, load_spec, run_sweep, t_quantile
from stag_seg.sweep.driver import payload
from stag_seg.sweep.worker import DONE_FILE, LAUNCH_HEADER, LOG_FILE, STATE_FILE, execute_run

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc.py')
TINY_STAG = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc_stag.py')


def write_spec(path, **keys) -> str:
    with open(path, 'w') as f:
        for key, value in keys.items():
            f.write(f'{key} = {value!r}\n')
    return str(path)


def base_spec(**overrides) -> dict:
    spec = dict(methods={'tent': dict(config=TINY), 'stag': dict(config=TINY_STAG)},
                baseline='tent', options=dict(lr='test_cfg.optimizer.lr'), seeds=[0, 1])
    spec.update(overrides)
    return spec


def runnable(spec: dict, root) -> dict:
    """``spec`` with what the sweep's start check needs of the tiny configs
    (``tiny_sweep_options``: a fixture ACDC tree under ``root``, random init)."""
    options, cfg_options = tiny_sweep_options(root)
    return {**spec, 'options': {**spec.get('options', {}), **options},
            'cfg_options': {**spec.get('cfg_options', {}), **cfg_options}}


def launches(run_dir) -> int:
    path = osp.join(run_dir, LOG_FILE)
    if not osp.isfile(path):
        return 0
    with open(path, errors='replace') as f:
        return sum(line.startswith(LAUNCH_HEADER) for line in f)


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- t quantile
@pytest.mark.parametrize('df,expected', [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776),
                                         (5, 2.571), (10, 2.228), (30, 2.042), (120, 1.980)])
def test_t_quantile_matches_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=6e-4)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=6e-4)


def test_t_quantile_closed_forms():
    # df=1 is Cauchy: tan(pi (p - 1/2)); df=2: (2p - 1) / sqrt(2 p (1 - p))
    for p in (0.6, 0.9, 0.99, 0.9995):
        assert t_quantile(p, 1) == pytest.approx(np.tan(np.pi * (p - 0.5)), rel=1e-10)
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / np.sqrt(2 * p * (1 - p)),
                                                 rel=1e-10)
    assert t_quantile(0.5, 7) == pytest.approx(0.0, abs=1e-12)
    z, df = 1.959963984540054, 10000           # Cornish-Fisher: z + (z^3 + z) / (4 df) + ...
    assert t_quantile(0.975, df) == pytest.approx(z + (z ** 3 + z) / (4 * df), abs=1e-7)
    with pytest.raises(ValueError, match='degrees of freedom'):
        t_quantile(0.975, 0)


# ---------------------------------------------------------------- spec expansion
def test_spec_expands_runs_options_and_pairs(tmp_path):
    path = write_spec(
        tmp_path / 'study.py', **base_spec(
            options=dict(lr='test_cfg.optimizer.lr', order='test_cfg.order',
                         shift='test_cfg.label_shift', rounds='test_cfg.num_rounds'),
            cfg_options=dict(rounds=10),
            regimes={'seq': dict(), 'dirichlet': dict(order='mixed',
                                                      shift=dict(type='dirichlet', alpha=0.5))},
            grid=dict(lr=[1e-4, 1e-3]), seeds=[7, 3]))
    spec = load_spec(path)
    assert [r.name for r in spec.runs] == [
        f'{m}__{reg}_lr={lr}__seed{s}' for s in (7, 3) for reg in ('seq', 'dirichlet')
        for lr in ('0.0001', '0.001') for m in ('tent', 'stag')]
    run = next(r for r in spec.runs if r.name == 'stag__dirichlet_lr=0.001__seed3')
    assert (run.method, run.regime, run.seed, run.config, run.checkpoint) == \
        ('stag', 'dirichlet_lr=0.001', 3, TINY_STAG, None)
    assert run.cfg_options == {'test_cfg.num_rounds': 10, 'test_cfg.order': 'mixed',
                               'test_cfg.label_shift.type': 'dirichlet',
                               'test_cfg.label_shift.alpha': 0.5,
                               'test_cfg.optimizer.lr': 0.001, 'randomness.seed': 3}
    assert spec.baseline_run(run).name == 'tent__dirichlet_lr=0.001__seed3'
    assert spec.baseline_run(spec.baseline_run(run)) is None
    assert spec.resources == {'num_cpus': 1, 'num_gpus': 0}

    p = payload(run, str(tmp_path / 'out'), spec)
    assert p['head'][1:] == ['-m', 'stag_seg.commands.test_tta', TINY_STAG, '--work-dir',
                             str(tmp_path / 'out' / run.name)]
    assert p['tail'] == ['--cfg-options', 'test_cfg.num_rounds=10', 'test_cfg.order=mixed',
                         'test_cfg.label_shift.type=dirichlet', 'test_cfg.label_shift.alpha=0.5',
                         'test_cfg.optimizer.lr=0.001', 'randomness.seed=3']
    # what test_tta.py's parser makes of the arguments is the run's options
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    cfg = Config(dict(test_cfg=dict(label_shift=dict(type='none', alpha=1.0))))
    cfg.merge_from_dict(parser.parse_args(p['tail']).cfg_options)
    assert cfg.test_cfg.label_shift == dict(type='dirichlet', alpha=0.5)
    assert cfg.test_cfg.optimizer.lr == 0.001 and cfg.randomness.seed == 3


def test_spec_without_regimes_or_grid_is_one_default_regime(tmp_path):
    spec = load_spec(write_spec(tmp_path / 's.py', **base_spec(baseline=None, seeds=[5])))
    assert [r.name for r in spec.runs] == ['tent__default__seed5', 'stag__default__seed5']
    assert spec.baseline_run(spec.runs[1]) is None


@pytest.mark.parametrize('overrides,key,expected', [
    (dict(gird=dict(lr=[1e-4])), 'gird', 'unknown key'),
    (dict(grid=dict(lr=[])), 'grid.lr', 'non-empty list'),
    (dict(baseline='eata'), 'baseline', "'eata' is not one of the methods"),
    (dict(grid=dict(lrr=[1e-4])), 'grid.lrr', 'unknown option'),
    (dict(regimes=dict(fast=dict(lr='1e-4'))), 'regimes.fast.lr', 'does not survive'),
    (dict(regimes=dict(fast=dict(lr=1e-3)), grid=dict(lr=[1e-4])), 'regimes.fast',
     'grid also sets'),
    (dict(cfg_options={'randomness.seed': 1}), 'cfg_options.randomness.seed', 'seeds='),
    (dict(seeds=[]), 'seeds', 'non-empty list'),
    (dict(methods={'tent': dict(config='nope.py')}), 'methods.tent.config', 'file not found'),
    (dict(methods={'a__b': dict(config=TINY)}), 'methods.a__b', 'not a usable name'),
    (dict(resources=dict(gpus=1)), 'resources.gpus', 'unknown key'),
])
def test_bad_spec_names_file_and_key(tmp_path, overrides, key, expected):
    path = write_spec(tmp_path / 'bad.py', **base_spec(**overrides))
    with pytest.raises(SweepSpecError) as e:
        load_spec(path)
    assert str(e.value).startswith(f'{path}: {key}: ')
    assert expected in str(e.value)


# ---------------------------------------------------------------- aggregation vs numpy
def rec(method, rnd, domain, miou, adapted=True):
    r = {'method': method, 'round': rnd, 'domain': domain, 'num_images': 2, 'mIoU': miou,
         'mAcc': 0.0, 'aAcc': 0.0, 'IoU': {}, 'skipped_updates': 0}
    if not adapted:
        r['adapted'] = False
    return r


def synthetic_run(rng, method):
    """3 rounds x (fog, night) + a no-update 'clean_val' per round; one null mIoU; one
    duplicate record that replaces an earlier one. Returns records and their table."""
    table = rng.uniform(20, 60, size=(3, 3))    # rounds x (fog, night, clean_val)
    records = []
    for i in range(3):
        records += [rec(method, i + 1, 'fog', float(table[i, 0])),
                    rec(method, i + 1, 'night', float(table[i, 1])),
                    rec(method, i + 1, 'clean_val', float(table[i, 2]), adapted=False)]
    records[1]['mIoU'] = None                    # round 1 night: no valid class
    table[0, 1] = np.nan
    table[2, 0] = float(rng.uniform(20, 60))     # a later duplicate of round 3 fog wins
    records.append(rec(method, 3, 'fog', float(table[2, 0])))
    return records, table


def test_report_matches_numpy(tmp_path):
    rng = np.random.default_rng(0)
    spec_path = write_spec(tmp_path / 'agg.py', **base_spec(
        regimes={'a': dict(), 'b': dict(lr=1e-3)}, seeds=[0, 1, 2]))
    spec = load_spec(spec_path)
    out = tmp_path / 'out'
    tables = {}
    for run in spec.runs:
        if run.name == 'stag__b__seed2':
            continue                              # never finished: left out of every mean
        records, tables[run.name] = synthetic_run(rng, run.method)
        os.makedirs(out / run.name)
        with open(out / run.name / 'results.jsonl', 'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in records)
        with open(out / run.name / DONE_FILE, 'w') as f:
            json.dump({'name': run.name}, f)
    lines = []
    assert run_sweep(spec_path, out_dir=str(out), report_only=True, echo=lines.append) == 0

    def scores(name):
        t = tables[name]
        return {'mean_miou': np.nanmean(t[:, :2]), 'last_round': np.nanmean(t[2, :2]),
                'forgetting': t[2, 2]}

    summary = {(r['table'], r['regime'], r['method'], r['metric']): r
               for r in read_csv(out / 'report.csv')}
    t2, t1 = 4.302652729749464, 12.706204736174707   # t_{0.975} for df 2 and 1
    for regime in ('a', 'b'):
        for method in ('tent', 'stag'):
            seeds = [0, 1] if (regime, method) == ('b', 'stag') else [0, 1, 2]
            for metric in ('mean_miou', 'last_round', 'forgetting'):
                values = np.array([scores(f'{method}__{regime}__seed{s}')[metric]
                                   for s in seeds])
                row = summary[('summary', regime, method, metric)]
                assert int(row['n']) == len(seeds)
                assert float(row['mean']) == pytest.approx(values.mean(), rel=1e-12)
                assert float(row['std']) == pytest.approx(values.std(ddof=1), rel=1e-12)
        for metric in ('mean_miou', 'last_round', 'forgetting'):
            seeds = [0, 1] if regime == 'b' else [0, 1, 2]
            d = np.array([scores(f'stag__{regime}__seed{s}')[metric]
                          - scores(f'tent__{regime}__seed{s}')[metric] for s in seeds])
            half = (t1 if len(d) == 2 else t2) * d.std(ddof=1) / np.sqrt(len(d))
            row = summary[('paired_difference', regime, 'stag', metric)]
            assert (row['baseline'], int(row['n'])) == ('tent', len(d))
            assert float(row['mean']) == pytest.approx(d.mean(), rel=1e-12)
            assert float(row['ci95_low']) == pytest.approx(d.mean() - half, rel=1e-12)
            assert float(row['ci95_high']) == pytest.approx(d.mean() + half, rel=1e-12)
    assert ('paired_difference', 'a', 'tent', 'mean_miou') not in summary
    runs = {r['run']: r for r in read_csv(out / 'runs.csv')}
    assert runs['stag__b__seed2']['finished'] == '0'
    assert float(runs['tent__a__seed1']['last_round']) == \
        pytest.approx(scores('tent__a__seed1')['last_round'])
    md = (out / 'report.md').read_text()
    assert '- `stag__b__seed2`: not run' in md and 'identical across seeds' not in md
    assert osp.getsize(out / 'report.png') > 1000


def test_report_flags_seeds_that_change_nothing(tmp_path):
    spec_path = write_spec(tmp_path / 'same.py', **base_spec(baseline=None, seeds=[0, 1, 2]))
    out = tmp_path / 'out'
    for run in load_spec(spec_path).runs:      # every seed the same numbers
        os.makedirs(out / run.name)
        with open(out / run.name / 'results.jsonl', 'w') as f:
            f.write(json.dumps(rec(run.method, 1, 'fog', 0.1 + 0.2)) + '\n')
        (out / run.name / DONE_FILE).write_text('{}')
    assert run_sweep(spec_path, out_dir=str(out), report_only=True, echo=print) == 0
    md = (out / 'report.md').read_text()
    assert '| default | tent | 3 | 0.30 ± 0.00 |' in md and 'identical across seeds' in md


def test_report_does_not_flag_seeds_that_changed_the_stream(tmp_path):
    # the seeds changed the adapted results; only the no-update (forgetting) record and so
    # one metric's std are the same: the note must not claim that the seed changes nothing
    spec_path = write_spec(tmp_path / 'diff.py', **base_spec(baseline=None, seeds=[0, 1]))
    out = tmp_path / 'out'
    for run in load_spec(spec_path).runs:
        os.makedirs(out / run.name)
        records = [rec(run.method, 1, 'fog', 30.0 + run.seed),
                   rec(run.method, 1, 'clean_val', 50.0, adapted=False)]
        with open(out / run.name / 'results.jsonl', 'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in records)
        (out / run.name / DONE_FILE).write_text('{}')
    assert run_sweep(spec_path, out_dir=str(out), report_only=True, echo=print) == 0
    md = (out / 'report.md').read_text()
    assert '50.00 ± 0.00' in md and 'identical across seeds' not in md


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = tmp_path / 'report.md'
    path.write_text('old')

    def broken(tmp):
        with open(tmp, 'w') as f:
            f.write('half')
        raise RuntimeError('disk full')
    with pytest.raises(RuntimeError):
        write_atomic(str(path), broken)
    assert path.read_text() == 'old' and os.listdir(tmp_path) == ['report.md']


# ---------------------------------------------------------------- bookkeeping, stand-in CLI
FAKE_CLI = '''
import json, os, sys
args = sys.argv[1:]
work_dir = args[args.index('--work-dir') + 1]
opts = dict(a.split('=', 1) for a in args[args.index('--cfg-options') + 1:])
seed = int(opts['randomness.seed'])
if os.path.exists(os.path.join(os.path.dirname(work_dir), f'fail_seed{seed}')):
    print('simulated crash'); sys.exit(3)
method = os.path.basename(args[0])
with open(os.path.join(work_dir, 'results.jsonl'), 'a') as f:
    f.write(json.dumps({'method': method, 'round': 1, 'domain': 'fog', 'num_images': 1,
                        'mIoU': 10.0 * seed + ('resume' in str(args)), 'mAcc': 0, 'aAcc': 0,
                        'IoU': {}, 'skipped_updates': 0}) + '\\n')
print('resume' if '--resume' in args else 'fresh')
'''


def test_serial_sweep_bookkeeping(tmp_path):
    tool = tmp_path / 'fake_test_tta.py'
    tool.write_text(FAKE_CLI)
    spec_path = write_spec(tmp_path / 'fake.py', **runnable(base_spec(seeds=[0, 1, 2]), tmp_path))
    out = tmp_path / 'out'
    os.makedirs(out)
    (out / 'fail_seed1').touch()
    # an interrupted run: the CLI's resume state, no completion marker
    os.makedirs(out / 'stag__default__seed2')
    (out / 'stag__default__seed2' / STATE_FILE).touch()
    lines = []
    kw = dict(out_dir=str(out), backend='serial', tool=str(tool), echo=lines.append)
    assert run_sweep(spec_path, **kw) == 1          # two failed runs do not stop the rest
    done = sorted(osp.basename(osp.dirname(p)) for p in glob.glob(f'{out}/*/{DONE_FILE}'))
    assert done == ['stag__default__seed0', 'stag__default__seed2', 'tent__default__seed0',
                    'tent__default__seed2']
    assert 'resume' in (out / 'stag__default__seed2' / LOG_FILE).read_text().splitlines()[-1]
    assert 'fresh' in (out / 'tent__default__seed2' / LOG_FILE).read_text().splitlines()[-1]
    text = '\n'.join(lines)
    assert '2 of 6 runs failed' in text
    for m in ('tent', 'stag'):
        log = out / f'{m}__default__seed1' / LOG_FILE
        assert f'{m}__default__seed1: failed (exit status 3); log: {log}' in text
        assert 'simulated crash' in log.read_text()

    with pytest.raises(SweepError, match='pass --resume'):
        run_sweep(spec_path, **kw)
    os.remove(out / 'fail_seed1')
    lines.clear()
    assert run_sweep(spec_path, resume=True, **kw) == 0
    counts = {osp.basename(d): launches(d) for d in glob.glob(f'{out}/*__*')}
    assert counts == {f'{m}__default__seed{s}': 2 if s == 1 else 1
                      for m in ('tent', 'stag') for s in (0, 1, 2)}
    assert lines[0].endswith('4 finished, 0 to resume, 2 to start')
    assert run_sweep(spec_path, resume=True, **kw) == 0   # idempotent: nothing launched
    assert {osp.basename(d): launches(d) for d in glob.glob(f'{out}/*__*')} == counts
    row = {r['run']: r for r in read_csv(out / 'runs.csv')}['stag__default__seed2']
    assert float(row['mean_miou']) == 21.0                # the resumed run's own result

    # a changed spec under the same run names is refused before anything is launched or
    # reported: its finished runs are not the new spec's results
    report = (out / 'report.md').read_text()
    spec2 = write_spec(tmp_path / 'fake.py', **base_spec(seeds=[0, 1, 2, 3],
                                                         cfg_options={'lr': 0.5}))
    for flags in (dict(resume=True), dict(report_only=True), dict(dry_run=True)):
        with pytest.raises(SweepError, match=rf'^6 run dir\(s\) in {out} were launched with '
                                             r'other settings than this spec \(first: '
                                             r'tent__default__seed0: cfg_options differ'):
            run_sweep(spec2, **flags, **kw)
    assert {osp.basename(d): launches(d) for d in glob.glob(f'{out}/*__*')} == counts
    assert (out / 'report.md').read_text() == report
    # the worker still refuses a run dir of other settings on its own (a racing sweep)
    os.remove(out / 'tent__default__seed0' / DONE_FILE)
    changed = load_spec(spec2)
    [run] = [r for r in changed.runs if r.name == 'tent__default__seed0']
    assert 'holds a run with other settings' in execute_run(
        payload(run, str(out), changed, str(tool)))['error']


def test_a_spec_that_is_not_python_or_an_out_that_is_a_file_is_one_error(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('methods = dict(\n')
    with pytest.raises(SweepSpecError, match=rf'^{bad}:1: not valid Python'):
        run_sweep(str(bad), backend='serial', echo=print)
    a_file = tmp_path / 'afile'
    a_file.write_text('')
    with pytest.raises(SweepError, match=rf'^--out {a_file} is a file, not a directory; '
                                         r'pass a directory \(it is created if missing\)$'):
        run_sweep(write_spec(tmp_path / 'ok.py', **base_spec()), out_dir=str(a_file),
                  backend='serial', echo=print)


def test_run_lock_blocks_a_second_launcher(tmp_path):
    fcntl = pytest.importorskip('fcntl')
    work_dir = tmp_path / 'run'
    os.makedirs(work_dir)
    with open(work_dir / 'sweep.lock', 'w') as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = execute_run({'name': 'run', 'work_dir': str(work_dir), 'identity': {},
                              'head': [sys.executable, '-c', 'pass'], 'tail': [],
                              'cwd': str(tmp_path), 'env': {}, 'lock_timeout': 0.3})
    assert result['status'] == 'failed' and 'still in use' in result['error']
    assert not osp.exists(work_dir / LOG_FILE)


# ---------------------------------------------------------------- Ray, real CLI, killed
def wait_unlocked(run_dir, timeout=60.0):
    """Return once no process holds the run dir's lock (no launcher or CLI still on it)."""
    import fcntl
    path = osp.join(run_dir, 'sweep.lock')
    if not osp.exists(path):
        return
    deadline = time.monotonic() + timeout
    with open(path) as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, f'{run_dir} still locked'
                time.sleep(0.1)


def test_runs_larger_than_the_local_ray_instance_stop_the_sweep_in_one_line(tmp_path):
    """Ray would wait forever (silently) for a task no node can hold."""
    pytest.importorskip('ray')
    from stag_seg.sweep.backends import InfeasibleRuns, check_fits

    check_fits({'num_cpus': 2, 'num_gpus': 0.25}, {'CPU': 2.0, 'GPU': 1.0})
    with pytest.raises(InfeasibleRuns, match=r'CPU=3 \(the instance has 2\), GPU=0.5 \(the '
                                             r'instance has 0\)'):
        check_fits({'num_cpus': 3, 'num_gpus': 0.5}, {'CPU': 2.0})
    tool = tmp_path / 'fake_test_tta.py'
    tool.write_text(FAKE_CLI)
    spec = write_spec(tmp_path / 'big.py', **runnable(base_spec(resources=dict(num_cpus=4)),
                                                   tmp_path))
    with pytest.raises(SweepError, match=r'each run asks for CPU=4 \(the instance has 1\) .*'
                                         'nothing launched$'):
        run_sweep(spec, out_dir=str(tmp_path / 'out'), backend='ray', num_cpus=1,
                  tool=str(tool), echo=print)
    assert not glob.glob(str(tmp_path / 'out' / '*__*'))


def test_ray_sweep_killed_mid_sweep_then_rerun_launches_only_missing_runs(tmp_path):
    pytest.importorskip('ray')
    pytest.importorskip('fcntl')
    from stag_seg.demo import generate_demo_data

    data = generate_demo_data(str(tmp_path / 'demo'), num_train=1, num_val=1,
                              num_per_condition=1, size=(256, 128))  # 4 conditions x 1 image
    demo = osp.join(REPO, 'configs', 'demo', 'segformer_mini_demo-acdc_{}.py')
    checkpoint = osp.join(REPO, 'checkpoints', 'segformer_mini_minicity.pth')
    options = {'test_dataloader.dataset.data_root': data.acdc,
               'test_cfg.forgetting.dataset.data_root': data.cityscapes,
               'test_cfg.num_rounds': 1, 'test_cfg.progress': False, 'log_level': 'WARNING'}
    spec_path = write_spec(tmp_path / 'demo_sweep.py', **base_spec(
        methods={m: dict(config=demo.format(m), checkpoint=checkpoint)
                 for m in ('tent', 'tent-stag')},
        baseline='tent', cfg_options=options, grid=dict(lr=[1e-4, 1e-3]), seeds=[0, 1],
        options=dict(lr='test_cfg.optimizer.lr', log_level='log_level')))
    out = tmp_path / 'out'
    cmd = [sys.executable, osp.join(REPO, 'tools', 'sweep.py'), spec_path, '--out', str(out),
           '--num-cpus', '2']
    env = {**os.environ, 'PYTHONPATH': REPO, 'OMP_NUM_THREADS': '1'}
    with open(tmp_path / 'driver1.log', 'w') as log:
        driver = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
        deadline = time.monotonic() + 240
        while len(glob.glob(f'{out}/*/{DONE_FILE}')) < 3 and driver.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        killed = driver.poll() is None
        if killed:
            os.killpg(driver.pid, signal.SIGKILL)     # the driver and the local Ray instance
        driver.wait()
    assert killed, (f'the driver ended by itself (exit {driver.returncode}) before 3 runs '
                    'finished:\n' + (tmp_path / 'driver1.log').read_text()[-3000:]
                    + ''.join(f'\n--- {p}:\n' + open(p).read()[-1500:]
                              for p in sorted(glob.glob(f'{out}/*/*.log'))[:2]))
    runs = [r.name for r in load_spec(spec_path).runs]
    for n in runs:        # Ray workers outlive the group kill by a moment: wait for them
        wait_unlocked(out / n)
    assert len(runs) == 8
    done = {n for n in runs if osp.isfile(out / n / DONE_FILE)}
    before = {n: launches(out / n) for n in runs}
    resumable = {n for n in runs if n not in done and osp.isfile(out / n / STATE_FILE)}
    assert 3 <= len(done) < 8 and all(before[n] == 1 for n in done)

    rerun = subprocess.run(cmd + ['--resume'], capture_output=True, text=True, env=env,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f'{len(done)} finished' in rerun.stdout.splitlines()[0]
    assert '[8/8] done' in rerun.stdout
    after = {n: launches(out / n) for n in runs}
    assert after == {n: before[n] + (n not in done) for n in runs}   # only the missing ones
    assert all(osp.isfile(out / n / DONE_FILE) for n in runs)
    for n in resumable:
        headers = [line for line in (out / n / LOG_FILE).read_text().splitlines()
                   if line.startswith(LAUNCH_HEADER)]
        assert 'resume=True' in headers[-1]
    cells = [r for r in read_csv(out / 'report.csv') if r['metric'] == 'mean_miou']
    assert len(cells) == 4 + 2 and all(int(r['n']) == 2 for r in cells)


def test_a_bad_config_option_stops_the_sweep_before_any_launch(tmp_path):
    # method.type='tentt' used to launch every run, each failing in its own log
    spec_path = write_spec(tmp_path / 'typo.py', **base_spec(
        options=dict(method='test_cfg.method.type'), cfg_options=dict(method='tentt')))
    with pytest.raises(SweepError, match=r"^4 of 4 runs have an invalid config, nothing "
                       r"launched; first: tent__default__seed0: test_cfg.method: unknown "
                       r"method 'tentt'"):
        run_sweep(spec_path, out_dir=str(tmp_path / 'out'), backend='serial', echo=print)
    assert not osp.exists(tmp_path / 'out')


def test_data_and_checkpoint_are_checked_before_any_launch(tmp_path):
    """As stag-tta's start check: a subset beyond a domain's images, a checkpoint that is not
    one; the runs used to launch and fail one by one."""
    spec = runnable(base_spec(options=dict(subset='test_cfg.subset'),
                              cfg_options=dict(subset=1000)), tmp_path)
    with pytest.raises(SweepError, match=r"^4 of 4 runs have an invalid config, nothing "
                                         r"launched; first: tent__default__seed0: "
                                         r"test_cfg.subset=1000: domain 'fog' has 4 images"):
        run_sweep(write_spec(tmp_path / 'subset.py', **spec), out_dir=str(tmp_path / 'out'),
                  backend='serial', echo=print)
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    spec = runnable(base_spec(), tmp_path)
    spec['cfg_options'].pop('init')
    spec['methods'] = {m: {**base, 'checkpoint': str(empty)}
                       for m, base in spec['methods'].items()}
    with pytest.raises(SweepError, match=rf'nothing launched; first: tent__default__seed0: '
                                         rf'{empty}: not a PyTorch checkpoint'):
        run_sweep(write_spec(tmp_path / 'ckpt.py', **spec), out_dir=str(tmp_path / 'out'),
                  backend='serial', echo=print)
    assert not osp.exists(tmp_path / 'out')


def test_a_method_can_carry_its_own_cfg_options(tmp_path):
    spec = tmp_path / 'variants.py'
    config = osp.join(REPO, 'configs', 'demo', 'segformer_mini_demo-acdc_tent-stag.py')
    spec.write_text(
        f"methods = dict(tent=dict(config={config!r}),\n"
        f"               stag_l05=dict(config={config!r}, cfg_options=dict(weight=0.5)))\n"
        "options = dict(weight='custom_hooks.0.loss_weight', rounds='test_cfg.num_rounds')\n"
        "cfg_options = dict(rounds=1)\nbaseline = 'tent'\nseeds = [0]\n")
    runs = {r.method: r for r in load_spec(str(spec)).runs}
    assert runs['stag_l05'].cfg_options == {'custom_hooks.0.loss_weight': 0.5,
                                            'test_cfg.num_rounds': 1, 'randomness.seed': 0}
    assert 'custom_hooks.0.loss_weight' not in runs['tent'].cfg_options


def test_a_method_can_name_its_own_baseline(tmp_path):
    spec = tmp_path / 'pairs.py'
    config = osp.join(REPO, 'configs', 'demo', 'segformer_mini_demo-acdc_tent.py')
    spec.write_text(
        f"methods = dict(tent=dict(config={config!r}), eata=dict(config={config!r}),\n"
        f"               eata_stag=dict(config={config!r}, baseline='eata'),\n"
        f"               tent_stag=dict(config={config!r}))\n"
        "baseline = 'tent'\nseeds = [0]\n")
    loaded = load_spec(str(spec))
    assert loaded.baselines == {'tent': None, 'eata': None, 'eata_stag': 'eata',
                                'tent_stag': 'tent'}
    runs = {r.method: r for r in loaded.runs}
    assert loaded.baseline_run(runs['eata_stag']) is runs['eata']
    assert loaded.baseline_run(runs['eata']) is None
    bad = tmp_path / 'bad.py'
    bad.write_text(f"methods = dict(a=dict(config={config!r}, baseline='zzz'))\nseeds = [0]\n")
    with pytest.raises(SweepSpecError, match=r"methods\.a\.baseline"):
        load_spec(str(bad))


# ---------------------------------------------------------------- local Ray: sockets, teardown
BLOCKING_CLI = '''
import json, os, sys, time
args = sys.argv[1:]
work_dir = args[args.index('--work-dir') + 1]
opts = dict(a.split('=', 1) for a in args[args.index('--cfg-options') + 1:])
seed = int(opts['randomness.seed'])
open(os.path.join(work_dir, 'started'), 'w').close()
if seed == 1:
    time.sleep(600)                   # in flight until the sweep is stopped
with open(os.path.join(work_dir, 'results.jsonl'), 'a') as f:
    f.write(json.dumps({'method': 'm', 'round': 1, 'domain': 'fog', 'num_images': 1,
                        'mIoU': 1.0, 'mAcc': 0, 'aAcc': 0, 'IoU': {},
                        'skipped_updates': 0}) + '\\n')
'''
# tools/sweep.py with the stand-in CLI above as the run command
DRIVER = '''
import functools, os.path, runpy, sys
import stag_seg.sweep as sweep
sweep.run_sweep = functools.partial(sweep.run_sweep, tool=sys.argv.pop(1))
sys.argv[0] = {tool!r}
sys.path.insert(0, os.path.dirname({tool!r}))   # as `python tools/sweep.py` (its _common)
runpy.run_path({tool!r}, run_name='__main__')
'''


def _alive(procs) -> list[str]:
    import psutil
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f'{p.pid} {p.name()}')
        except psutil.NoSuchProcess:
            pass
    return alive


def _wait_gone(procs, timeout=60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while _alive(procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(procs)


def test_local_ray_sweep_listens_on_loopback_only_and_dies_with_its_driver(tmp_path):
    """A local sweep's Ray processes bind 127.0.0.1 only; a driver killed with SIGKILL takes
    them along (agents included); Ctrl-C is one line, exit 130, finished runs kept."""
    pytest.importorskip('ray')
    if sys.platform != 'linux':
        pytest.skip('the watcher of a killed driver reads /proc')
    import ipaddress

    import psutil  # Ray ships it

    tool = tmp_path / 'blocking_cli.py'
    tool.write_text(BLOCKING_CLI)
    driver = tmp_path / 'driver.py'
    driver.write_text(DRIVER.format(tool=osp.join(REPO, 'tools', 'sweep.py')))
    spec_path = write_spec(tmp_path / 'local.py',                    # 2 methods x seeds 0, 1
                           **runnable(base_spec(), tmp_path))
    out = tmp_path / 'out'
    cmd = [sys.executable, str(driver), str(tool), spec_path, '--out', str(out), '--num-cpus',
           '2']
    env = {**os.environ, 'PYTHONPATH': REPO, 'OMP_NUM_THREADS': '1'}
    env.pop('RAY_ADDRESS', None)
    blocked = [out / f'{m}__default__seed1' for m in ('tent', 'stag')]

    def start(extra, name):
        for d in blocked:
            if osp.exists(d / 'started'):
                os.remove(d / 'started')
        stderr = open(tmp_path / f'{name}.err', 'w')
        proc = subprocess.Popen(cmd + extra, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                                start_new_session=True)
        stderr.close()
        deadline = time.monotonic() + 240
        while not all(osp.exists(d / 'started') for d in blocked):
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / f'{name}.err').read_text()[-3000:]
            time.sleep(0.2)
        return proc, psutil.Process(proc.pid).children(recursive=True)

    # a local sweep: every listening socket of its processes is on the loopback interface
    proc, procs = start([], 'killed')
    listening = []
    for p in procs:
        try:
            listening += [(p.name(), c.laddr.ip, c.laddr.port)
                          for c in p.net_connections('inet') if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            pass
    assert listening, [p.name() for p in procs]

    def loopback(ip):
        addr = ipaddress.ip_address(ip)
        return (getattr(addr, 'ipv4_mapped', None) or addr).is_loopback
    assert [s for s in listening if not loopback(s[1])] == []

    # SIGKILL of the driver: no Python runs, the watcher stops Ray (agents, workers, runs)
    assert any('Agent' in p.name() for p in procs)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_gone(procs) == []

    # the next sweep starts its own instance; Ctrl-C: one line, exit 130, results kept
    proc, procs = start(['--resume'], 'interrupted')
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    err = (tmp_path / 'interrupted.err').read_text().strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f'sweep: interrupted: 2 of 4 runs finished, kept in {out}; continue with: '), err
    assert sorted(osp.basename(osp.dirname(p)) for p in glob.glob(f'{out}/*/{DONE_FILE}')) == \
        ['stag__default__seed0', 'tent__default__seed0']
    assert _wait_gone(procs) == []
    assert 'Token authentication' not in (tmp_path / 'killed.err').read_text()
