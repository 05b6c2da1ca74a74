"""The files of a stream run in its work dir: records and reports, the resume state, run.json.

A stage's records are appended to results.jsonl, the reports rewritten, then the resume state
(adapter state, stream position, number of records, config fingerprint) is saved atomically,
then run.json's progress. A crash between two of these steps is repaired on resume: records
beyond the state's count are dropped and that stage is redone.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import os.path as osp
import shutil
import time

import torch

from stag_seg.reports import (
    RESULTS_FILE,
    append_record,
    atomic_write,
    drop_torn_tail,
    load_records,
    rewrite_records,
)
from stag_seg.reports import write_reports as write_report_files

STATE_FILE = 'tta_state.pth'
RUN_FILE = 'run.json'
#: files of an earlier run that a fresh start moves to previous/<time>/
RUN_FILES = (RESULTS_FILE, 'results.csv', 'results.md', 'miou.png', STATE_FILE, RUN_FILE)


#: the fingerprint's keys for the checkpoint's content (its path may change, its bytes not)
CHECKPOINT_KEYS = ('checkpoint.sha256', 'checkpoint.size')
PATH_KEY = 'test_cfg.checkpoint'


@functools.lru_cache(maxsize=4)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def with_checkpoint_identity(fingerprint: dict[str, str],
                             checkpoint: str | None) -> dict[str, str]:
    """``fingerprint`` with the checkpoint's path replaced by its size and sha256 (read once
    per file version), so that --resume accepts the same file by another path and refuses
    another file at the same path."""
    if not checkpoint or not osp.isfile(checkpoint):
        return fingerprint
    out = {k: v for k, v in fingerprint.items() if k != PATH_KEY}
    stat = os.stat(checkpoint)
    out[CHECKPOINT_KEYS[0]] = _sha256(osp.realpath(checkpoint), stat.st_size, stat.st_mtime_ns)
    out[CHECKPOINT_KEYS[1]] = str(stat.st_size)
    return out


def fingerprint_diff(saved: dict[str, str], current: dict[str, str]) -> list[str]:
    """Keys whose values differ (or exist on one side only), sorted."""
    return sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))


def _write_json(path: str, data: dict) -> None:
    with atomic_write(path) as f:
        json.dump(data, f, indent=2)


def move_aside(folder: str, names: list[str], logger: logging.Logger, what: str) -> str | None:
    """Moves ``names`` (files or folders in ``folder``) to a new ``folder/previous/<time>/``
    (nothing is overwritten); returns it, or None if none of them exists."""
    present = [n for n in names if osp.exists(osp.join(folder, n))]
    if not present:
        return None
    target = osp.join(folder, 'previous', time.strftime('%Y%m%d_%H%M%S'))
    suffix, base = 1, target
    while osp.exists(target):
        suffix += 1
        target = f'{base}_{suffix}'
    os.makedirs(target)
    for name in present:
        shutil.move(osp.join(folder, name), osp.join(target, name))
    logger.warning(f'{folder} held {what} ({", ".join(present)}): moved to {target}')
    return target


def archive_rounds(folder: str | None, logger: logging.Logger) -> str | None:
    """An earlier run's ``round_<r>/`` folders in ``--out`` / ``--show-dir`` moved aside on a
    fresh start, so that a shorter run leaves none of them mixed with its own."""
    if not folder or not osp.isdir(folder):
        return None
    rounds = sorted(n for n in os.listdir(folder)
                    if n.startswith('round_') and n[6:].isdigit())
    return move_aside(folder, rounds, logger, "an earlier run's outputs")


class RunDir:
    """One run's files in ``work_dir``."""

    def __init__(self, work_dir: str, logger: logging.Logger) -> None:
        self.work_dir = work_dir
        self.logger = logger
        self.state_path = osp.join(work_dir, STATE_FILE)
        self.results_path = osp.join(work_dir, RESULTS_FILE)
        self.info: dict = {}
        self.num_records = 0

    def archive_previous(self) -> str | None:
        """Moves an earlier run's files to ``previous/<time>/`` (nothing is overwritten)."""
        return move_aside(self.work_dir, list(RUN_FILES), self.logger, 'an earlier run')

    def load_resume_state(self, fingerprint: dict[str, str], num_stages: int | None,
                          checkpoint: str | None = None, mmap: bool = False) -> dict | None:
        """The saved state to resume from, checked against this run's config.

        Returns None when the work dir holds no run at all. A state written for another
        config is an error naming the differing keys (another checkpoint file: naming the
        file ``checkpoint``); records without a state are an error (they cannot be continued
        and are not discarded silently). ``num_stages=None``: the stream's length is not
        checked. ``mmap=True`` maps the state's tensors instead of reading them (a check).
        """
        if not osp.exists(self.state_path):
            if osp.exists(self.results_path):
                raise FileNotFoundError(
                    f'--resume: {self.work_dir} holds {RESULTS_FILE} but no {STATE_FILE} to '
                    'resume from (was test_cfg.save_state off?); run without --resume to start '
                    'over (the earlier files are then moved to previous/), or use another '
                    '--work-dir')
            self.logger.warning(f'--resume: {self.work_dir} holds no run; starting one')
            return None
        try:
            state = torch.load(self.state_path, map_location='cpu', weights_only=True,
                               mmap=mmap)
        except Exception as e:
            raise ValueError(f'--resume: cannot read {self.state_path} ({e}); delete it and '
                             'run without --resume to start over') from e
        saved = state.get('fingerprint', {})
        if PATH_KEY in saved and CHECKPOINT_KEYS[0] not in saved:   # a state of older versions
            fingerprint = {k: v for k, v in fingerprint.items() if k not in CHECKPOINT_KEYS}
            fingerprint[PATH_KEY] = repr(checkpoint)
        diff = fingerprint_diff(saved, fingerprint)
        if checkpoint and set(diff) & set(CHECKPOINT_KEYS):
            raise ValueError(f'--resume: the checkpoint {checkpoint} is not the file this '
                             f'run started from ({self.state_path} holds another sha256); '
                             'resume with that file, or run without --resume to start over')
        if diff:
            shown = ', '.join(diff[:10]) + (' ...' if len(diff) > 10 else '')
            raise ValueError(f'--resume: {self.state_path} was written for another config; '
                             f'these settings differ: {shown}. Resume with the same config, or '
                             'run without --resume to start over in this work dir')
        if num_stages is not None and state['num_stages'] != num_stages:
            raise ValueError(f'--resume: {self.state_path} has {state["num_stages"]} stages, '
                             f'this stream {num_stages}')
        return state

    def keep_records(self, num_records: int) -> None:
        """Drops records written after the saved state (a stage the state does not cover),
        a torn last line included."""
        drop_torn_tail(self.work_dir)
        records = load_records(self.results_path) if osp.exists(self.results_path) else []
        if len(records) < num_records:
            raise ValueError(f'--resume: {self.results_path} has {len(records)} records but the '
                             f'saved state expects {num_records}; the results file was changed')
        if len(records) > num_records:
            self.logger.warning(f'--resume: dropping {len(records) - num_records} record(s) '
                                'written after the last saved state; that stage is redone')
            rewrite_records(self.work_dir, records[:num_records])
        self.num_records = num_records

    def start(self, info: dict) -> None:
        """Writes run.json (status 'running') before the first stage of this process."""
        self.info = {**info, 'status': 'running'}
        _write_json(osp.join(self.work_dir, RUN_FILE), self.info)

    def stage_done(self, records: list[dict], state: dict | None, next_stage: int) -> None:
        """Appends a stage's records, rewrites the reports, saves the resume state."""
        for record in records:
            append_record(self.work_dir, record)
        self.num_records += len(records)
        write_report_files(self.work_dir)
        if state is not None:
            with atomic_write(self.state_path, 'wb') as f:
                torch.save({**state, 'next_stage': next_stage,
                            'num_records': self.num_records}, f)
        self.info.update(stages_done=next_stage,
                         status='complete' if next_stage == self.info['num_stages']
                         else 'running')
        _write_json(osp.join(self.work_dir, RUN_FILE), self.info)

    def failed(self, error: BaseException) -> None:
        """Marks run.json 'failed' with the error's first line, if this process started the
        run (a start that failed before :meth:`start` leaves the work dir as it was)."""
        if not self.info:
            return
        reason = (str(error).strip().splitlines() or [''])[0]
        self.info.update(status='failed', error=f'{type(error).__name__}: {reason}')
        _write_json(osp.join(self.work_dir, RUN_FILE), self.info)
