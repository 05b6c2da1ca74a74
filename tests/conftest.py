"""Imports stag_seg first: its compat patches must precede any mmseg import in a test. Pins
the suite to CPU, gives it a cache of its own, and keeps each test file on one pytest-xdist
worker."""
import os
import os.path as osp
import signal
import sys

import pytest

# The suite's records are pinned on CPU (bit-exact resume, records equal across runs): it runs
# on CPU also where CUDA is available, unless STAG_TEST_CUDA=1 (for the CUDA tests, e.g.
# `STAG_TEST_CUDA=1 python -m pytest tests/test_fast_step.py -k cuda`). Set before torch and
# mmengine look for devices (mmengine picks its device once, at import); subprocesses and
# pytest-xdist workers inherit it.
if os.environ.get('STAG_TEST_CUDA') != '1':
    os.environ['CUDA_VISIBLE_DEVICES'] = ''

# The tests that interrupt a run (SIGINT, as Ctrl-C) need their commands to receive it: a
# background job of a non-interactive shell (`nohup pytest ... &` in a script) starts with
# SIGINT ignored, and every child inherits that. Take the default back (Ctrl-C then reaches
# pytest too).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import stag_seg  # noqa: E402,F401

# tools/*.py import their shared module (tools/_common.py) by name, as scripts do
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools'))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``-n N`` (pytest-xdist) without ``--dist``: ``--dist loadfile``, each test file on one
    worker, so that a module's fixtures (a benchmark report, rendered demo data) are built
    once, not once per worker. xdist's own hook may run first (it then picked 'load'), so the
    command line decides whether ``--dist`` was given."""
    args = config.invocation_params.args
    explicit = any(str(a) == '--dist' or str(a).startswith('--dist=') for a in args)
    if config.getoption('numprocesses', None) and not explicit:
        config.option.dist = 'loadfile'


@pytest.fixture(scope='session', autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory):
    """The user cache (``stag_seg.resources.cache_dir``: the demo's data outside a clone) in
    this session's temp dir, one per xdist worker, inherited by subprocesses: no test reads
    or writes ~/.cache/stag-seg or shares a cache with a parallel worker."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp('cache')
        patch.setenv('STAG_SEG_CACHE', str(path))
        yield path
