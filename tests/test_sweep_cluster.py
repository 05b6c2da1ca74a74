"""A sweep on a two-node Ray cluster (both nodes on this machine) survives losing a node.

Heavy for a test (two Ray nodes and a driver, about a minute on 2 cores), so the runs are a
stand-in CLI that sleeps: what is tested is the sweep's handling of the cluster, not the runs.
Set STAG_SEG_SKIP_CLUSTER_TEST=1 to leave it out.
"""
import csv
import glob
import json
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from fixture_data import tiny_sweep_options

from stag_seg.sweep import run_sweep
from stag_seg.sweep.worker import DONE_FILE, LAUNCH_HEADER, LOG_FILE

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc.py')
TINY_STAG = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc_stag.py')
HEAD_IP, NODE_IP = '127.0.0.2', '127.0.0.3'

# a run: notes its node, becomes resumable at once, takes RUN_SECONDS, then writes records
# that depend only on its method and seed (so a resumed run's equal an uninterrupted one's)
CLI = '''
import json, os, sys, time
args = sys.argv[1:]
work_dir = args[args.index('--work-dir') + 1]
opts = dict(a.split('=', 1) for a in args[args.index('--cfg-options') + 1:])
seed, method = int(opts['randomness.seed']), os.path.basename(args[0])
with open(os.path.join(work_dir, 'nodes'), 'a') as f:
    f.write(os.environ.get('NODE_TAG', 'here') + '\\n')
open(os.path.join(work_dir, 'tta_state.pth'), 'w').close()
time.sleep(float(os.environ.get('RUN_SECONDS', '0')))
with open(os.path.join(work_dir, 'results.jsonl'), 'w') as f:
    f.write(json.dumps({'method': method, 'round': 1, 'domain': 'fog', 'num_images': 1,
                        'mIoU': 10.0 * seed + len(method), 'mAcc': 0, 'aAcc': 0, 'IoU': {},
                        'skipped_updates': 0}) + '\\n')
with open(os.path.join(work_dir, 'completions'), 'a') as f:
    f.write('1\\n')
'''
DRIVER = '''
import functools, os.path, runpy, sys
import stag_seg.sweep as sweep
sweep.run_sweep = functools.partial(sweep.run_sweep, tool=sys.argv.pop(1))
sys.argv[0] = {tool!r}
sys.path.insert(0, os.path.dirname({tool!r}))   # as `python tools/sweep.py` (its _common)
runpy.run_path({tool!r}, run_name='__main__')
'''

pytestmark = pytest.mark.skipif(os.environ.get('STAG_SEG_SKIP_CLUSTER_TEST') == '1',
                                reason='STAG_SEG_SKIP_CLUSTER_TEST=1')


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _spec(path, run_seconds: str) -> str:
    """The tiny configs on a fixture ACDC tree beside the spec, from random init (the
    sweep's start check reads both)."""
    options, cfg_options = tiny_sweep_options(osp.dirname(path))
    path.write_text(
        f'methods = dict(tent=dict(config={TINY!r}), stag=dict(config={TINY_STAG!r}))\n'
        f'options = {options!r}\ncfg_options = {cfg_options!r}\n'
        f"baseline = 'tent'\nseeds = [0, 1]\nenv = dict(RUN_SECONDS={run_seconds!r})\n")
    return str(path)


def _rows(out) -> list[dict]:
    with open(osp.join(out, 'runs.csv'), newline='') as f:
        return list(csv.DictReader(f))


@pytest.fixture
def cluster():
    """A head (1 CPU) and a second node (1 CPU) on loopback addresses, with token auth; every
    process of theirs is killed afterwards (found by their session folder)."""
    pytest.importorskip('ray')
    if sys.platform != 'linux':
        pytest.skip('cleanup reads /proc')
    from stag_seg.sweep import reaper

    temp = tempfile.mkdtemp(prefix='rt', dir='/tmp')   # short: Ray's socket paths live in it
    port = _free_port(HEAD_IP)
    auth = {'RAY_AUTH_MODE': 'token', 'RAY_AUTH_TOKEN': uuid.uuid4().hex}
    env = {**os.environ, **auth, 'RAY_health_check_period_ms': '500',
           'RAY_health_check_failure_threshold': '4'}
    env.pop('RAY_ADDRESS', None)
    common = ['--num-cpus', '1', '--disable-usage-stats', '--temp-dir', temp]
    tokens = {'head': uuid.uuid4().hex, 'node2': uuid.uuid4().hex}
    try:
        for tag, args in (('head', ['--head', '--port', str(port), '--node-ip-address', HEAD_IP,
                                    '--include-dashboard=false']),
                          ('node2', ['--address', f'{HEAD_IP}:{port}', '--node-ip-address',
                                     NODE_IP])):
            subprocess.run([sys.executable, '-m', 'ray.scripts.scripts', 'start', *args,
                            *common], env={**env, 'NODE_TAG': tag,
                                           reaper.MARKER_ENV: tokens[tag]},
                           check=True, capture_output=True, timeout=120)
        yield {'address': f'{HEAD_IP}:{port}', 'auth': auth, 'tokens': tokens}
    finally:
        for token in tokens.values():
            reaper.kill_marked(token, temp)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_cluster_sweep_survives_losing_a_node(tmp_path, cluster):
    import psutil  # Ray ships it

    from stag_seg.sweep import reaper

    tool = tmp_path / 'cli.py'
    tool.write_text(CLI)
    driver = tmp_path / 'driver.py'
    driver.write_text(DRIVER.format(tool=osp.join(REPO, 'tools', 'sweep.py')))
    spec = _spec(tmp_path / 'cluster_sweep.py', '8')
    out = tmp_path / 'out'
    env = {**os.environ, **cluster['auth'], 'PYTHONPATH': REPO, 'OMP_NUM_THREADS': '1'}
    with open(tmp_path / 'driver.log', 'w') as log:
        proc = subprocess.Popen([sys.executable, str(driver), str(tool), spec, '--out', str(out),
                                 '--address', cluster['address']], stdout=log,
                                stderr=subprocess.STDOUT, env=env)

    def on_node2():
        for nodes in glob.glob(f'{out}/*/nodes'):
            if open(nodes).read().split() == ['node2']:
                return osp.dirname(nodes)
        return None

    deadline = time.monotonic() + 180
    while on_node2() is None:
        assert proc.poll() is None and time.monotonic() < deadline, \
            (tmp_path / 'driver.log').read_text()[-3000:]
        time.sleep(0.2)
    cut = on_node2()                              # a run in flight on the second node
    raylets = [p for p in map(psutil.Process, reaper.marked(cluster['tokens']['node2']))
               if p.name() == 'raylet']
    assert len(raylets) == 1 and not osp.exists(osp.join(cut, 'completions'))
    raylets[0].kill()                             # the node is gone
    assert proc.wait(timeout=300) == 0, (tmp_path / 'driver.log').read_text()[-3000:]
    assert '[4/4] done' in (tmp_path / 'driver.log').read_text()

    runs = sorted(osp.basename(osp.dirname(p)) for p in glob.glob(f'{out}/*/{DONE_FILE}'))
    assert len(runs) == 4
    nodes = {n for r in runs for n in (out / r / 'nodes').read_text().split()}
    assert nodes == {'head', 'node2'}                       # runs landed on both nodes
    for r in runs:                                          # none ran twice to completion
        assert (out / r / 'completions').read_text() == '1\n', r
    launches = [line for line in open(osp.join(cut, LOG_FILE))
                if line.startswith(LAUNCH_HEADER)]
    assert len(launches) == 2 and 'resume=True' in launches[1]
    assert (out / osp.basename(cut) / 'nodes').read_text().split() == ['node2', 'head']
    assert json.load(open(osp.join(cut, DONE_FILE)))['resumed'] is True

    # the records are those of an uninterrupted serial sweep
    serial = tmp_path / 'serial'
    assert run_sweep(_spec(tmp_path / 'cluster_sweep_serial.py', '0'), out_dir=str(serial),
                     backend='serial', tool=str(tool), echo=lambda line: None) == 0
    assert _rows(out) == _rows(serial)
