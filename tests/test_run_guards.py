"""Issue-21 guards of a run's work dir: one run at a time, the checkpoint's content tied to
--resume, paths that must be directories, a finished run that --resume only reads."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
from engine_utils import REPO, TINY_CONFIG, tiny_options
from fixture_data import make_acdc_tree
from mmengine.runner import save_checkpoint
from mmseg.registry import MODELS

from stag_seg.engine.launch import load_tta_config, run_tta
from stag_seg.files import hold_lock, release_lock
from stag_seg.reports import load_records

FOG = [dict(name='fog', dataset=dict(condition='fog'))]


@pytest.fixture
def acdc(tmp_path):
    return make_acdc_tree(str(tmp_path / 'acdc'), size=(128, 64))


def _checkpoint(path, seed=0) -> str:
    cfg = load_tta_config(TINY_CONFIG, '/nonexistent/unused', tiny_options('x'))
    torch.manual_seed(seed)
    save_checkpoint({'state_dict': MODELS.build(cfg.cfg.model).state_dict(), 'meta': {}}, str(path))
    return str(path)


def _cfg(work_dir, acdc, checkpoint=None, resume=False, num_rounds=1, **extra):
    options = tiny_options(acdc, num_rounds, **{'test_cfg.domains': FOG, **extra})
    if checkpoint:
        options['test_cfg.random_init'] = False
    return load_tta_config(TINY_CONFIG, str(work_dir), options, resume=resume,
                           checkpoint=checkpoint)


# ---- item 1: one run per work dir -------------------------------------------------------------
def test_second_run_on_a_locked_work_dir_is_refused_before_touching_it(tmp_path, acdc):
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    fd = hold_lock(str(work_dir / 'run.lock'))          # "run A", in progress
    try:
        with pytest.raises(RuntimeError, match=rf'{work_dir} is in use by another run '
                                               rf'\(pid {os.getpid()}\)'):
            run_tta(_cfg(work_dir, acdc))
        assert os.listdir(work_dir) == ['run.lock']     # no log dir, no report, nothing moved
    finally:
        release_lock(fd)
    run_tta(_cfg(work_dir, acdc))                       # released: runs
    release_lock(hold_lock(str(work_dir / 'run.lock')))  # and released again at its end


def test_cli_refuses_a_locked_work_dir_in_one_line(tmp_path, acdc):
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    fd = hold_lock(str(work_dir / 'run.lock'))
    try:
        proc = subprocess.run(
            [sys.executable, osp.join(REPO, 'tools', 'test_tta.py'), TINY_CONFIG, '--work-dir',
             str(work_dir), '--random-init', '--cfg-options',
             f'test_dataloader.dataset.data_root={acdc}'],
            capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': REPO})
    finally:
        release_lock(fd)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f'test_tta: error: {work_dir} is in use by another run (pid {os.getpid()}); wait for '
        'it to end, or use another --work-dir']


def test_cli_console_holds_no_log_line_of_the_start_checks_load(tmp_path, acdc):
    """The start check loads the checkpoint into a CPU copy before the Runner exists; that
    load must not print mmengine's INFO line on a quiet console. The loop's load logs it once,
    into the run's log."""
    path = _checkpoint(tmp_path / 'source.pth')
    work_dir = tmp_path / 'w'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'test_tta.py'), TINY_CONFIG, path,
         '--work-dir', str(work_dir), '--cfg-options', f'test_dataloader.dataset.data_root={acdc}',
         'test_cfg.num_rounds=1', 'test_cfg.progress=False', 'test_dataloader.num_workers=0',
         'test_dataloader.persistent_workers=False'],
        capture_output=True, text=True, env={**os.environ, 'PYTHONPATH': REPO})
    assert proc.returncode == 0, proc.stderr
    assert 'Loads checkpoint' not in proc.stdout + proc.stderr
    [log] = [osp.join(root, f) for root, _, files in os.walk(work_dir) for f in files
             if f.endswith('.log')]
    with open(log) as f:
        loads = [line for line in f if 'Loads checkpoint' in line]
    assert len(loads) == 1 and path in loads[0]


# ---- item 2: --resume checks the checkpoint's bytes, not its path -----------------------------
def test_resume_refuses_another_checkpoint_at_the_same_path(tmp_path, acdc):
    path = _checkpoint(tmp_path / 'source.pth')
    shutil.copy(path, tmp_path / 'original.pth')
    work_dir = tmp_path / 'w'
    crash = [dict(type='CrashAfterItersHook', iters=6)]
    with pytest.raises(KeyboardInterrupt):               # stopped mid-stream (the loop resumes)
        run_tta(_cfg(work_dir, acdc, path, num_rounds=2, custom_hooks=crash))
    _checkpoint(path, seed=1)                            # another file at the same path
    with pytest.raises(ValueError, match=r'checkpoint .*source\.pth is not the file this run '
                                         'started from'):
        run_tta(_cfg(work_dir, acdc, path, resume=True, num_rounds=2))
    moved = str(tmp_path / 'moved' / 'same.pth')        # the same file by another path
    os.makedirs(osp.dirname(moved))
    shutil.copy(tmp_path / 'original.pth', moved)
    run_tta(_cfg(work_dir, acdc, moved, resume=True, num_rounds=2))
    assert [r['round'] for r in load_records(str(work_dir))] == [1, 2]
    with pytest.raises(ValueError, match='source.pth is not the file'):   # finished run too
        run_tta(_cfg(work_dir, acdc, path, resume=True, num_rounds=2))


# ---- item 20: paths that must be directories; a finished run on a read-only dir --------------
def test_work_dir_or_out_that_is_a_file_is_named_before_the_run(tmp_path, acdc):
    a_file = tmp_path / 'file'
    a_file.write_text('x')
    with pytest.raises(NotADirectoryError, match=rf'--work-dir {a_file} is a file'):
        run_tta(_cfg(a_file, acdc))
    work_dir = tmp_path / 'w'
    with pytest.raises(NotADirectoryError, match=rf'--out {a_file} is a file'):
        run_tta(_cfg(work_dir, acdc, **{'test_cfg.out_dir': str(a_file)}))
    assert not work_dir.exists()


def test_resume_of_a_finished_run_on_a_read_only_dir(tmp_path, acdc, monkeypatch):
    work_dir = str(tmp_path / 'w')
    run_tta(_cfg(work_dir, acdc))
    before = {name: os.stat(osp.join(work_dir, name)).st_mtime_ns
              for name in os.listdir(work_dir)}
    real_open, real_makedirs = os.open, os.makedirs

    def refuse(path):           # what a read-only mount says (chmod does not stop root)
        if str(path).startswith(work_dir):
            raise OSError(30, 'Read-only file system', str(path))

    def ro_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    def ro_makedirs(path, *args, **kwargs):
        if not osp.isdir(path):
            refuse(path)
        return real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, 'open', ro_open)
    monkeypatch.setattr(os, 'makedirs', ro_makedirs)
    metrics = run_tta(_cfg(work_dir, acdc, resume=True))
    monkeypatch.undo()
    assert set(metrics) == {'mIoU', 'last_round_mIoU', 'skipped_updates'}
    assert {name: os.stat(osp.join(work_dir, name)).st_mtime_ns
            for name in os.listdir(work_dir)} == before
