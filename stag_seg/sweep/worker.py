"""One sweep run: a ``tools/test_tta.py`` subprocess in its run dir, with the sweep's bookkeeping.

Standard library only: the Ray backend ships these functions to workers by value, so a worker
never imports stag_seg (or mmseg). Files in a run dir:

- ``sweep_run.json``: the run's identity, written at its first launch; a later launch with
  another identity (the spec changed under the same run name) is refused.
- ``sweep.log``: the subprocess's stdout and stderr, after a ``=== sweep launch`` header per
  launch.
- ``sweep.lock``: an exclusive ``flock`` held by the launcher and inherited by the subprocess,
  so an orphaned subprocess of a killed sweep blocks a second launch until it is gone.
- ``sweep_done.json``: the completion marker, written atomically after the subprocess exited 0.
  A run is finished iff it exists; a run dir with the CLI's ``tta_state.pth`` and no marker is
  relaunched with ``--resume``.
"""
from __future__ import annotations

import datetime
import os
import os.path as osp
import shlex
import subprocess
import sys
import threading
import time

from stag_seg.files import LockBusy, hold_lock, read_json, write_json_atomic

DONE_FILE = 'sweep_done.json'
RUN_FILE = 'sweep_run.json'
LOG_FILE = 'sweep.log'
LOCK_FILE = 'sweep.lock'
STATE_FILE = 'tta_state.pth'      # tools/test_tta.py's checkpoint for --resume
LAUNCH_HEADER = '=== sweep launch'


def run_state(work_dir: str) -> str:
    """'done' (marker written), 'interrupted' (a resumable state, no marker) or 'new'."""
    if osp.isfile(osp.join(work_dir, DONE_FILE)):
        return 'done'
    if osp.isfile(osp.join(work_dir, STATE_FILE)):
        return 'interrupted'
    return 'new'


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec='seconds')


def _die_with_parent():
    """A ``preexec_fn`` that has the child SIGKILLed when its launcher dies, or None.

    Linux only (``prctl(PR_SET_PDEATHSIG)``), and only from the main thread: the signal comes
    when the launching *thread* exits.
    """
    if sys.platform != 'linux' or threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes
        prctl = ctypes.CDLL('libc.so.6', use_errno=True).prctl
    except (ImportError, OSError):
        return None

    def preexec() -> None:
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    return preexec


def _lock(work_dir: str, timeout: float) -> int:
    """An exclusive lock on the run dir, waiting up to ``timeout`` s; returns its fd."""
    try:
        return hold_lock(osp.join(work_dir, LOCK_FILE), timeout)
    except LockBusy as e:
        holder = f' (pid {e.pid})' if e.pid else ''
        raise RuntimeError(f'{work_dir} is still in use by another process{holder} after '
                           f'{timeout:.0f} s (an earlier sweep\'s run?)') from None


def _result(payload: dict, status: str, **extra) -> dict:
    return {'name': payload['name'], 'status': status,
            'log': osp.join(payload['work_dir'], LOG_FILE), **extra}


def execute_run(payload: dict) -> dict:
    """Run one sweep run unless it is finished; returns a result dict.

    ``payload``: name, work_dir, identity (a JSON dict), head (argv up to the work dir), tail
    (``--cfg-options ...`` argv), cwd, env (variables added to the environment), lock_timeout.
    The result's status is 'done', 'skipped' (already finished), or 'failed' (with returncode
    or error).
    """
    work_dir = payload['work_dir']
    os.makedirs(work_dir, exist_ok=True)
    start = time.monotonic()
    try:
        lock_fd = _lock(work_dir, payload.get('lock_timeout', 120.0))
    except (OSError, RuntimeError) as e:
        return _result(payload, 'failed', error=str(e))
    try:
        if run_state(work_dir) == 'done':
            return _result(payload, 'skipped')
        run_file = osp.join(work_dir, RUN_FILE)
        known = read_json(run_file)
        if known is not None and known.get('identity') != payload['identity']:
            return _result(payload, 'failed', error=(
                f'{work_dir} holds a run with other settings ({run_file}); delete the run dir '
                'or sweep into another --out'))
        if known is None:
            write_json_atomic(run_file, {'name': payload['name'], 'created': _now(),
                                         'identity': payload['identity']})
        resume = run_state(work_dir) == 'interrupted'
        argv = [*payload['head'], *(['--resume'] if resume else []), *payload['tail']]
        env = {**os.environ, **payload['env']}
        with open(osp.join(work_dir, LOG_FILE), 'a', encoding='utf-8') as log:
            log.write(f'{LAUNCH_HEADER} {_now()} resume={resume} ===\n'
                      f'$ cd {shlex.quote(payload["cwd"])} && {shlex.join(argv)}\n')
            log.flush()
            proc = subprocess.run(argv, cwd=payload['cwd'], env=env, stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT, pass_fds=(lock_fd,),
                                  preexec_fn=_die_with_parent())
        seconds = round(time.monotonic() - start, 1)
        if proc.returncode != 0:
            return _result(payload, 'failed', returncode=proc.returncode, seconds=seconds,
                           resumed=resume)
        write_json_atomic(osp.join(work_dir, DONE_FILE),
                          {'name': payload['name'], 'finished': _now(), 'seconds': seconds,
                           'resumed': resume, 'argv': argv})
        return _result(payload, 'done', seconds=seconds, resumed=resume)
    except OSError as e:
        return _result(payload, 'failed', error=f'{type(e).__name__}: {e}')
    finally:
        os.close(lock_fd)
