"""Issue-21 failures from outside: Ctrl-C, a full disk, broken image files. Each is one line
naming what to do or which file, and keeps what was computed."""
import errno
import os
import os.path as osp
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from engine_utils import REPO, build_runner, tiny_options
from fixture_data import make_acdc_tree

from stag_seg.engine import run_dir
from stag_seg.reports import append_record, load_records

PAUSE_CONFIG = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc_pause.py')


@pytest.fixture
def acdc(tmp_path):
    return make_acdc_tree(str(tmp_path / 'acdc'), size=(128, 64))


def _first_image(acdc: str, condition: str) -> str:
    for root, _, files in sorted(os.walk(osp.join(acdc, 'rgb_anon', condition))):
        for name in sorted(files):
            if name.endswith('_rgb_anon.png'):
                return osp.join(root, name)
    raise AssertionError('fixture has no image')


# ---- item 9: Ctrl-C is one line with the command that resumes, exit 130 ----------------------
def test_ctrl_c_prints_the_resume_command_and_exits_130(tmp_path, acdc):
    work_dir = str(tmp_path / 'w')
    pause = str(tmp_path / 'paused')
    options = [f'{k}={v}'.replace(' ', '') for k, v in tiny_options(acdc).items()
               if k != 'randomness']
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([REPO, osp.join(REPO, 'tests')]),
           'STAG_TEST_PAUSE_FILE': pause}
    argv = [PAUSE_CONFIG, '--work-dir', work_dir, '--cfg-options', *options]
    proc = subprocess.Popen([sys.executable, osp.join(REPO, 'tools', 'test_tta.py'), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)
    deadline = time.monotonic() + 120
    while not osp.exists(pause):                          # mid-stream: stage 2 of 8
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    [line] = err.strip().splitlines()
    prefix = 'test_tta: interrupted; resume with: '
    assert line.startswith(prefix)
    command = shlex.split(line[len(prefix):])
    assert command[:2] == ['python', 'tools/test_tta.py'] and command[2:] == [*argv, '--resume']
    assert [r['domain'] for r in load_records(work_dir)] == ['fog']      # the state is kept
    resumed = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True,
                             env=env, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr
    assert len(load_records(work_dir)) == 8


# ---- item 10: a full disk says so and names the file -----------------------------------------
def test_full_disk_while_saving_the_state_names_the_file(tmp_path, acdc, monkeypatch):
    real_save = torch.save

    def save_on_a_full_disk(obj, f, *args, **kwargs):     # the real torch error, from a real
        with open('/dev/full', 'wb') as full:               # ENOSPC
            real_save(obj, full, *args, **kwargs)

    monkeypatch.setattr(run_dir.torch, 'save', save_on_a_full_disk)
    work_dir = str(tmp_path / 'w')
    with pytest.raises(OSError, match=r'no space left on device.*tta_state\.pth') as error:
        build_runner(work_dir, acdc).test()
    assert error.value.errno == errno.ENOSPC and 'enforce fail' not in str(error.value)
    assert [r['domain'] for r in load_records(work_dir)] == ['fog']      # the records kept
    assert not [f for f in os.listdir(work_dir) if f.endswith('.tmp')]


@pytest.mark.skipif(not os.path.exists('/dev/full'), reason='needs /dev/full')
def test_full_disk_while_appending_a_record_names_the_file(tmp_path):
    os.symlink('/dev/full', tmp_path / 'results.jsonl')
    record = dict(method='m', round=1, domain='fog', num_images=1, mIoU=1.0, mAcc=1.0,
                  aAcc=1.0, IoU={'road': 1.0}, skipped_updates=0)
    with pytest.raises(OSError, match=r'no space left on device.*results\.jsonl'):
        append_record(str(tmp_path), record)


# ---- item 13: broken images are named, without libpng's own line -----------------------------
def test_empty_image_is_named(tmp_path, acdc):
    image = _first_image(acdc, 'night')
    open(image, 'wb').close()
    work_dir = str(tmp_path / 'w')
    with pytest.raises(Exception, match=rf'{image}.*empty'):
        build_runner(work_dir, acdc).test()
    assert [r['domain'] for r in load_records(work_dir)] == ['fog']


def test_truncated_png_is_named_without_a_libpng_line(tmp_path, acdc, capfd):
    image = _first_image(acdc, 'night')
    with open(image, 'rb') as f:
        data = f.read()
    with open(image, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(Exception, match=rf'{image}.*truncated'):
        build_runner(str(tmp_path / 'w'), acdc).test()
    assert 'libpng' not in capfd.readouterr().err


def test_resume_command_names_the_command_that_was_run():
    from stag_seg.engine.cli import resume_command

    argv = ['cfg.py', '--cfg-options', 'data_root=/my data']
    tail = "cfg.py --cfg-options 'data_root=/my data' --resume"
    assert resume_command(argv, 'tools/test_tta.py') == f'python tools/test_tta.py {tail}'
    assert resume_command(argv, '/venv/bin/stag-tta') == f'stag-tta {tail}'
    assert resume_command([*argv, '--resume'], '/x/stag_seg/commands/test_tta.py') == \
        f'python -m stag_seg.commands.test_tta {tail}'
