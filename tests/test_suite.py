"""The suite itself: it runs pinned to CPU, under pytest-xdist with whole files per worker and
a user cache of each worker's own, and the demo data's rendering pool does not hang in a
process with other threads (an xdist worker's, torch's)."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from engine_utils import REPO
from mmengine.device import get_device

from stag_seg.demo.synth.writer import plan_jobs, run_jobs

#: a rendering through the pool (>= 16 jobs, 2 workers) after warming torch's threads, with
#: another thread holding a lock that every child forked from this process waits for (as a
#: library's at-fork handler waits for its pool's lock)
RENDER = '''
import os, sys, threading, time
import torch
from stag_seg.demo.synth.writer import plan_jobs, run_jobs

torch.set_num_threads(2)
weights = torch.randn(256, 256)
(weights @ weights).sum()                      # torch's intra-op threads are warm
lock = threading.Lock()
held, done = threading.Event(), threading.Event()

def hold():
    with lock:
        held.set()
        while not done.is_set():
            (weights @ weights).sum()
            time.sleep(0.01)

holder = threading.Thread(target=hold)
holder.start()
held.wait()
os.register_at_fork(after_in_child=lock.acquire)
try:
    run_jobs(plan_jobs(sys.argv[1], 4, 2, 3, 1, True), (96, 48), 0, 2)
finally:
    done.set()      # a thread still in torch at exit aborts the interpreter (std::terminate)
    holder.join()
print('rendered')
'''


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = osp.join(folder, name)
            out[osp.relpath(path, root)] = open(path, 'rb').read()
    return out


def test_rendering_pool_beside_other_threads_finishes_and_equals_in_process(tmp_path):
    pooled, serial = str(tmp_path / 'pooled'), str(tmp_path / 'serial')
    env = {**os.environ, 'PYTHONPATH': REPO}
    proc = subprocess.Popen([sys.executable, '-c', RENDER, pooled], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)             # the pool's children too
        proc.communicate()
        pytest.fail('the rendering pool hung (a child forked with another thread\'s lock)')
    assert proc.returncode == 0 and 'rendered' in out, err[-3000:]
    jobs = plan_jobs(serial, 4, 2, 3, 1, True)
    assert len(jobs) >= 16                              # what run_jobs gives to its pool
    run_jobs(jobs, (96, 48), 0, 1)
    rendered = _files(pooled)
    assert len(rendered) == 3 * len(jobs)               # image, label, colour label
    assert rendered == _files(serial)


def test_suite_runs_on_cpu():
    if os.environ.get('STAG_TEST_CUDA') == '1':
        pytest.skip('STAG_TEST_CUDA=1: the CUDA tests run')
    assert os.environ['CUDA_VISIBLE_DEVICES'] == ''
    assert not torch.cuda.is_available() and get_device() == 'cpu'


INNER_TEST = '''
import json, os
import torch
from stag_seg.resources import cache_dir

def _record(request):
    path = os.path.join(os.environ['INNER_OUT'], request.node.nodeid.replace('/', '_') + '.json')
    with open(path, 'w') as f:
        json.dump({'file': request.node.fspath.basename, 'cache': cache_dir(),
                   'worker': os.environ.get('PYTEST_XDIST_WORKER'),
                   'cuda': torch.cuda.is_available()}, f)

def test_one(request):
    _record(request)

def test_two(request):
    _record(request)
'''


def test_xdist_workers_take_whole_files_with_caches_of_their_own(tmp_path):
    pytest.importorskip('xdist')
    inner, out = tmp_path / 'inner', tmp_path / 'out'
    inner.mkdir()
    out.mkdir()
    for name in ('test_a.py', 'test_b.py'):
        (inner / name).write_text(textwrap.dedent(INNER_TEST))
    env = {k: v for k, v in os.environ.items()
           if k not in ('STAG_SEG_CACHE', 'STAG_TEST_CUDA', 'PYTEST_XDIST_WORKER',
                        'PYTEST_ADDOPTS')}
    env.update(PYTHONPATH=os.pathsep.join([osp.join(REPO, 'tests'), REPO]),
               INNER_OUT=str(out))
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-v', '-p', 'no:cacheprovider',
                           '-p', 'conftest', '-n', '2', '--basetemp', str(tmp_path / 'base'),
                           str(inner)], cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(out.iterdir())]
    assert len(records) == 4
    assert 'scheduling tests via LoadFileScheduling' in proc.stdout
    assert not any(r['cuda'] for r in records)
    worker_of = {r['file']: {x['worker'] for x in records if x['file'] == r['file']}
                 for r in records}
    assert all(len(w) == 1 for w in worker_of.values())         # a file stays on its worker
    assert len({r['worker'] for r in records}) == 2
    cache_of = {r['worker']: {x['cache'] for x in records if x['worker'] == r['worker']}
                for r in records}
    assert all(len(c) == 1 for c in cache_of.values())
    caches = {c for cs in cache_of.values() for c in cs}
    assert len(caches) == 2                                      # each worker its own
    assert all(c.startswith(str(tmp_path / 'base')) for c in caches)


#: an inner session's test: a command it starts gets SIGINT (Ctrl-C) as KeyboardInterrupt
INNER_SIGINT = '''
import signal, subprocess, sys

def test_a_command_gets_sigint():
    code = 'import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True).stdout
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert out.strip() == 'True', out
'''


def test_the_suite_started_with_sigint_ignored_still_interrupts_its_commands(tmp_path):
    """A background job of a non-interactive shell starts with SIGINT ignored (its children
    inherit that): the suite takes the default back, so the Ctrl-C tests reach their
    commands."""
    (tmp_path / 'test_inner.py').write_text(INNER_SIGINT)
    env = {k: v for k, v in os.environ.items() if k not in ('PYTEST_XDIST_WORKER',
                                                            'PYTEST_ADDOPTS')}
    env['PYTHONPATH'] = os.pathsep.join([osp.join(REPO, 'tests'), REPO])
    pytest_cmd = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-p',
                  'conftest', '--basetemp', str(tmp_path / 'base'), str(tmp_path)]
    ignored = ('import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); '
               f'os.execv(sys.executable, {pytest_cmd!r})')       # as `cmd &` in a script
    done = subprocess.run([sys.executable, '-c', ignored], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
