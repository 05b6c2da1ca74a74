"""Guards of a run's work dir, before the Runner touches it: one run at a time (a lock), output
paths that are directories, a saved state that ``--resume`` checks against the config, and a
finished run that ``--resume`` only reads."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import os.path as osp
from collections.abc import Iterator

from mmengine.config import Config
from mmengine.logging import print_log

from stag_seg.engine.config import run_fingerprint
from stag_seg.engine.run_dir import RUN_FILE, STATE_FILE, RunDir, with_checkpoint_identity
from stag_seg.files import LockBusy, hold_lock, release_lock
from stag_seg.reports import RESULTS_FILE, load_records, run_summary

#: the work dir's lock file: held (``flock``) by the run in progress, which writes its pid
LOCK_FILE = 'run.lock'


def check_dir_option(path: str | None, option: str) -> None:
    """``path`` must be a directory or not exist yet (then it is created)."""
    if path and osp.exists(path) and not osp.isdir(path):
        raise NotADirectoryError(f'{option} {path} is a file, not a directory; pass a '
                                 'directory (it is created if missing)')


@contextlib.contextmanager
def locked_work_dir(work_dir: str) -> Iterator[None]:
    """Holds ``work_dir``'s lock for the ``with`` block: a second run on the same dir is
    refused, naming the dir and the holder's pid. A read-only dir without a lock file is
    not locked (no run can write there)."""
    check_dir_option(work_dir, '--work-dir')
    os.makedirs(work_dir, exist_ok=True)
    try:
        fd = hold_lock(osp.join(work_dir, LOCK_FILE))
    except LockBusy as e:
        holder = f'pid {e.pid}' if e.pid else 'pid unknown'
        raise RuntimeError(f'{work_dir} is in use by another run ({holder}); wait for it to '
                           'end, or use another --work-dir') from None
    except (FileNotFoundError, PermissionError):
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            release_lock(fd)


def marked_complete(work_dir: str) -> bool:
    """Whether ``work_dir``'s run.json says its run is complete."""
    try:
        with open(osp.join(work_dir, RUN_FILE), encoding='utf-8') as f:
            return json.load(f).get('status') == 'complete'
    except (OSError, ValueError, AttributeError):
        return False


def checked_resume_state(cfg: Config) -> dict | None:
    """For ``--resume``: the work dir's saved state, checked against this config before a
    Runner writes there (an error names what differs, or the records without a state); None
    without ``--resume``, a seed or an earlier run. Reads only, memory-mapped: the loop loads
    the state it resumes from itself."""
    work_dir, seed = cfg.work_dir, cfg.get('randomness', {}).get('seed')
    if not (cfg.test_cfg.get('resume') and seed is not None
            and (osp.isfile(osp.join(work_dir, STATE_FILE))
                 or osp.isfile(osp.join(work_dir, RESULTS_FILE)))):
        return None
    checkpoint = cfg.test_cfg.get('checkpoint')
    fingerprint = with_checkpoint_identity(run_fingerprint(cfg, seed), checkpoint)
    run_dir = RunDir(work_dir, logging.getLogger(__name__))
    return run_dir.load_resume_state(fingerprint, None, checkpoint, mmap=True)


def finished_run(cfg: Config) -> dict | None:
    """For ``--resume`` of a run that ``run.json`` marks complete: checks its state against
    this config (:func:`checked_resume_state`) and returns its summary metrics, reading
    only; None otherwise (the loop resumes or starts the run)."""
    work_dir = cfg.work_dir
    if not (marked_complete(work_dir) and osp.isfile(osp.join(work_dir, RESULTS_FILE))):
        return None
    state = checked_resume_state(cfg)
    if state is None or state['next_stage'] != state['num_stages']:
        return None
    print_log(f'{work_dir}: the run is already complete; nothing to do', logger='current',
              level=logging.WARNING)
    return run_summary(load_records(work_dir))
