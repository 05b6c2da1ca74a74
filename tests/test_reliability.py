"""Issue-9 reliability at the engine level: valid JSON, nothing lost or silently wrong, and
one clear error (naming the culprit) for each bad input."""
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from engine_utils import REPO, TINY_CONFIG, build_runner, snapshot, tiny_options
from fixture_data import make_acdc_tree, make_cityscapes_tree
from mmengine.config import DictAction
from mmengine.runner import save_checkpoint
from mmseg.registry import MODELS

from stag_seg.engine.launch import load_tta_config, run_tta
from stag_seg.reports import load_records

STAG_CONFIG = osp.join(REPO, 'tests', 'configs', 'tiny_segformer_acdc_stag.py')
ONE_DOMAIN = {'test_cfg.domains': [dict(name='fog', dataset=dict(condition='fog'))],
              'test_cfg.num_rounds': 1}


@pytest.fixture
def acdc(tmp_path):
    return make_acdc_tree(str(tmp_path / 'acdc'), size=(128, 64))


def _strict_json(path: str) -> list[dict]:
    def no_constants(name):
        raise ValueError(f'{path}: invalid JSON constant {name}')
    with open(path) as f:
        return [json.loads(line, parse_constant=no_constants) for line in f]


def _tree(work_dir: str) -> set[str]:
    """Every path under ``work_dir`` (the Runner's timestamped log folder included)."""
    return {osp.relpath(osp.join(folder, name), work_dir)
            for folder, dirs, files in os.walk(work_dir) for name in dirs + files}


def _cli(*args, cwd=REPO):
    env = {**os.environ, 'PYTHONPATH': REPO}
    return subprocess.run([sys.executable, osp.join(REPO, 'tools', 'test_tta.py'), *args],
                          capture_output=True, text=True, env=env, cwd=cwd)


def _cli_options(data_root, **extra):
    return [f'{k}={v}'.replace(' ', '') for k, v in tiny_options(data_root, **extra).items()
            if k != 'randomness']


def _checkpoint(tmp_path, name='source.pth', edit=None) -> str:
    run = load_tta_config(TINY_CONFIG, str(tmp_path / 'unused'), tiny_options('x'))
    torch.manual_seed(0)
    state = MODELS.build(run.cfg.model).state_dict()
    if edit is not None:
        state = edit(state)
    path = str(tmp_path / name)
    save_checkpoint({'state_dict': state, 'meta': {}}, path)
    return path


# ---- 1. valid JSON; an undefined mIoU is null, out of the means, marked in the tables ----
def test_all_ignore_domain_writes_null_not_nan(tmp_path, acdc):
    for path in cv2.os.listdir(osp.join(acdc, 'gt', 'night', 'train', 'GOPR0475')):
        if path.endswith('_labelTrainIds.png'):
            full = osp.join(acdc, 'gt', 'night', 'train', 'GOPR0475', path)
            cv2.imwrite(full, np.full((64, 128), 255, np.uint8))
    for path in cv2.os.listdir(osp.join(acdc, 'gt', 'night', 'train', 'GP010476')):
        if path.endswith('_labelTrainIds.png'):
            full = osp.join(acdc, 'gt', 'night', 'train', 'GP010476', path)
            cv2.imwrite(full, np.full((64, 128), 255, np.uint8))
    work_dir = str(tmp_path / 'w')
    build_runner(work_dir, acdc, num_rounds=1).test()
    records = _strict_json(osp.join(work_dir, 'results.jsonl'))
    night = next(r for r in records if r['domain'] == 'night')
    assert night['mIoU'] is None and night['aAcc'] is None
    assert all(v is None for v in night['IoU'].values())
    others = [r['mIoU'] for r in records if r['domain'] != 'night']
    table = open(osp.join(work_dir, 'results.md')).read()
    assert 'n/a' in table and f'{round(sum(others) / 3, 2):.2f}' in table


# ---- 4. a bad option is one error, before anything in the work dir is touched ------------
@pytest.mark.parametrize('option, message', [
    ('custom_hooks.0.tau=0', r'custom_hooks.0 \(STAGHook\).*tau must be > 0'),
    ('custom_hooks.0.grad_space=foo', r'STAGHook.*grad_space must be one of'),
    ('custom_hooks.0.impl=fast', r'STAGHook.*impl must be one of'),
    ('custom_hooks.0.loss_weight=-1', r'STAGHook.*loss_weight must be >= 0'),
    ('custom_hooks.0.conf_thresh=2', r'STAGHook.*conf_thresh must be <= 1'),
    ('custom_hooks.0.lamda=2', r"custom_hooks.0 \(STAGHook\): unknown option\(s\) \['lamda'\]"),
    ('custom_hooks.0.classifier=decode_head', r'test_cfg.classifier'),
    ('test_cfg.method.type=nope', r"test_cfg.method: unknown method 'nope'"),
    ('test_cfg.optimizer.lr=-1', r'test_cfg.optimizer: .*learning rate'),
    ('test_cfg.order=random', r'test_cfg: order must be one of'),
    ('test_cfg.seed=3', r'randomness.seed'),
])
def test_bad_option_on_a_finished_work_dir_keeps_every_result(tmp_path, acdc, option, message):
    work_dir = str(tmp_path / 'w')
    build_runner(work_dir, acdc, config=STAG_CONFIG, **ONE_DOMAIN).test()
    before = snapshot(work_dir)
    assert {'results.jsonl', 'results.md', 'tta_state.pth'} <= before.keys()
    key, value = option.split('=')
    value = DictAction._parse_iterable(value)
    with pytest.raises(ValueError, match=message):
        run = load_tta_config(STAG_CONFIG, work_dir, tiny_options(acdc, **ONE_DOMAIN,
                                                                  **{key: value}))
        run_tta(run)
    assert snapshot(work_dir) == before


def test_cli_bad_option_is_one_line_and_exit_1(tmp_path, acdc):
    work_dir = str(tmp_path / 'w')
    proc = _cli(STAG_CONFIG, '--work-dir', work_dir, '--cfg-options',
                *_cli_options(acdc), 'custom_hooks.0.tau=0')
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith('test_tta: error: custom_hooks.0')
    assert 'Traceback' not in proc.stderr and not osp.exists(osp.join(work_dir, 'results.jsonl'))


# ---- 5. no silent wrong numbers -----------------------------------------------------------
def _drop(prefix):
    return lambda state: {k: v for k, v in state.items() if not k.startswith(prefix)}


@pytest.mark.parametrize('edit, message', [
    (_drop('decode_head.'), r'missing from it \(decode_head\.'),
    (lambda s: {f'model.{k}': v for k, v in s.items()}, r'unexpected key\(s\) \(model\.'),
    (lambda s: {'encoder.weight': torch.zeros(3)}, r'unexpected key\(s\) \(encoder.weight'),
])
def test_checkpoint_that_does_not_match_is_an_error(tmp_path, acdc, edit, message):
    checkpoint = _checkpoint(tmp_path, 'bad.pth', edit)
    run = load_tta_config(TINY_CONFIG, str(tmp_path / 'w'),
                          tiny_options(acdc, **ONE_DOMAIN, **{'test_cfg.random_init': False}))
    with pytest.raises(ValueError, match=message) as error:
        run_tta(run, checkpoint)
    assert 'bad.pth' in str(error.value)
    assert not osp.exists(tmp_path / 'w' / 'results.jsonl')


def test_wrong_architecture_names_shapes_not_class_counts(tmp_path, acdc):
    def wider(state):
        state['decode_head.conv_seg.weight'] = torch.zeros(19, 32, 1, 1)
        return state
    checkpoint = _checkpoint(tmp_path, 'wide.pth', wider)
    run = load_tta_config(TINY_CONFIG, str(tmp_path / 'w'), tiny_options(acdc, **ONE_DOMAIN))
    with pytest.raises(ValueError, match=r'\(19, 32, 1, 1\) in the checkpoint but '
                                         r'\(19, 16, 1, 1\).*another architecture'):
        run_tta(run, checkpoint)


@pytest.mark.parametrize('content', [b'', b'not a checkpoint', b'PK\x03\x04truncated'])
def test_file_that_is_not_a_checkpoint(tmp_path, acdc, content):
    path = tmp_path / 'junk.pth'
    path.write_bytes(content)
    run = load_tta_config(TINY_CONFIG, str(tmp_path / 'w'), tiny_options(acdc, **ONE_DOMAIN))
    with pytest.raises(ValueError, match=r'junk.pth: not a PyTorch checkpoint \([^\n]*\)$'):
        run_tta(run, str(path))


def test_missing_checkpoint_needs_random_init_which_run_json_records(tmp_path, acdc):
    options = tiny_options(acdc, **ONE_DOMAIN, **{'test_cfg.random_init': False})
    run = load_tta_config(TINY_CONFIG, str(tmp_path / 'w'), options)
    with pytest.raises(ValueError, match='no checkpoint.*--random-init'):
        run_tta(run)
    run_tta(run, random_init=True)
    info = json.load(open(tmp_path / 'w' / 'run.json'))
    assert info['random_init'] is True and info['status'] == 'complete'
    run_tta(load_tta_config(TINY_CONFIG, str(tmp_path / 'v'), options),
            _checkpoint(tmp_path))
    info = json.load(open(tmp_path / 'v' / 'run.json'))
    assert info['random_init'] is False and info['checkpoint'].endswith('source.pth')


def test_forgetting_set_named_like_a_domain_is_an_error(tmp_path, acdc):
    forgetting = dict(name='fog', dataset=dict(condition='fog'))
    with pytest.raises(ValueError, match=r"duplicate domain name\(s\) \['fog'\]"):
        load_tta_config(TINY_CONFIG, str(tmp_path / 'w'),
                        tiny_options(acdc, **{'test_cfg.forgetting': forgetting}))


def test_16bit_label_ids_are_rejected_with_their_true_values(tmp_path, acdc):
    folder = osp.join(acdc, 'gt', 'fog', 'train', 'GOPR0475')
    name = sorted(f for f in os.listdir(folder) if f.endswith('_labelTrainIds.png'))[0]
    label = cv2.imread(osp.join(folder, name), cv2.IMREAD_UNCHANGED).astype(np.uint16)
    label[0, :3] = 259
    cv2.imwrite(osp.join(folder, name), label)
    with pytest.raises(ValueError, match=name) as error:
        build_runner(str(tmp_path / 'w'), acdc, **ONE_DOMAIN).test()
    assert '259' in str(error.value) and '[3' not in str(error.value)


def test_source_counts_no_skipped_updates(tmp_path, acdc):
    work_dir = str(tmp_path / 'w')
    build_runner(work_dir, acdc, num_rounds=1, **{'test_cfg.method.type': 'source'}).test()
    assert [r['skipped_updates'] for r in load_records(work_dir)] == [0, 0, 0, 0]


# ---- 6. resume ------------------------------------------------------------------------------
def test_resume_of_a_finished_run_says_so_and_exits_0(tmp_path, acdc):
    work_dir = str(tmp_path / 'w')
    args = [TINY_CONFIG, '--work-dir', work_dir, '--cfg-options', *_cli_options(acdc)]
    assert _cli(*args).returncode == 0
    before = snapshot(work_dir)
    proc = _cli(*args, '--resume')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'already complete' in proc.stdout + proc.stderr
    assert snapshot(work_dir, skip=('run.lock',)) == {        # the lock is taken to read
        k: v for k, v in before.items() if k != 'run.lock'}
    # another config on the finished run: refused before its lock file is rewritten
    os.utime(osp.join(work_dir, 'run.lock'), ns=(0, 0))
    before = snapshot(work_dir)
    proc = _cli(TINY_CONFIG, '--work-dir', work_dir, '--resume', '--cfg-options',
                *_cli_options(acdc, **{'test_cfg.optimizer.lr': 1e-3}))
    assert proc.returncode == 1 and 'test_cfg.optimizer.lr' in proc.stderr, proc.stderr[-2000:]
    assert snapshot(work_dir) == before


def test_resume_with_another_config_names_the_differing_keys(tmp_path, acdc):
    work_dir = str(tmp_path / 'w')
    crash = [dict(type='CrashAfterItersHook', iters=6)]
    with pytest.raises(KeyboardInterrupt):
        build_runner(work_dir, acdc, custom_hooks=crash).test()
    before = snapshot(work_dir)
    with pytest.raises(ValueError, match=r'these settings differ: test_cfg\.optimizer\.lr'):
        build_runner(work_dir, acdc, resume=True, **{'test_cfg.optimizer.lr': 1e-3})
    with pytest.raises(ValueError, match=r'plugins\.0\.type'):
        build_runner(work_dir, acdc, resume=True, config=STAG_CONFIG)
    assert snapshot(work_dir) == before   # before any Runner
    proc = _cli(TINY_CONFIG, '--work-dir', work_dir, '--resume', '--cfg-options',
                *_cli_options(acdc, **{'test_cfg.optimizer.lr': 1e-3}))
    assert proc.returncode == 1 and 'test_cfg.optimizer.lr' in proc.stderr, proc.stderr[-2000:]
    assert snapshot(work_dir) == before


def test_resume_without_a_state_keeps_the_records(tmp_path, acdc):
    work_dir = str(tmp_path / 'w')
    build_runner(work_dir, acdc, num_rounds=1, **{'test_cfg.save_state': False}).test()
    before = snapshot(work_dir)
    with pytest.raises(FileNotFoundError, match='no tta_state.pth to resume from'):
        build_runner(work_dir, acdc, num_rounds=1, resume=True)
    assert snapshot(work_dir) == before


def test_torn_last_line_is_dropped_and_its_stage_redone(tmp_path, acdc):
    build_runner(str(tmp_path / 'full'), acdc).test()
    work_dir = str(tmp_path / 'part')
    with pytest.raises(KeyboardInterrupt):
        build_runner(work_dir, acdc,
                     custom_hooks=[dict(type='CrashAfterItersHook', iters=10)]).test()
    path = osp.join(work_dir, 'results.jsonl')
    with open(path, 'a') as f:
        f.write('{"method": "tent", "round": 1, "dom')       # power loss mid-append
    build_runner(work_dir, acdc, resume=True).test()
    assert open(path).read() == open(tmp_path / 'full' / 'results.jsonl').read()


def test_fresh_start_moves_an_earlier_run_aside(tmp_path, acdc):
    work_dir = str(tmp_path / 'w')
    build_runner(work_dir, acdc, num_rounds=1, **ONE_DOMAIN).test()
    first = open(osp.join(work_dir, 'results.jsonl')).read()
    build_runner(work_dir, acdc, num_rounds=1, **ONE_DOMAIN).test()
    [previous] = os.listdir(osp.join(work_dir, 'previous'))
    assert open(osp.join(work_dir, 'previous', previous, 'results.jsonl')).read() == first


def test_fresh_start_moves_earlier_predictions_aside_a_resume_keeps_them(tmp_path, acdc):
    """--out / --show-dir of a 2-round run, then a 1-round run: its round_2/ would be the
    earlier run's, mixed in; it is moved to previous/<time>/, with that run's round_1/."""
    work_dir, out, show = (str(tmp_path / name) for name in ('w', 'out', 'show'))
    dirs = {'test_cfg.out_dir': out, 'test_cfg.show_dir': show,
            'test_cfg.domains': ONE_DOMAIN['test_cfg.domains']}
    build_runner(work_dir, acdc, num_rounds=2, **dirs).test()
    first = _tree(out)
    assert {'round_1', 'round_2'} <= first
    build_runner(work_dir, acdc, num_rounds=1, **dirs).test()
    for folder in (out, show):
        [previous] = os.listdir(osp.join(folder, 'previous'))
        assert sorted(n for n in os.listdir(folder) if n != 'previous') == ['round_1']
        assert sorted(os.listdir(osp.join(folder, 'previous', previous))) == [
            'round_1', 'round_2']
    moved = osp.join(out, 'previous', os.listdir(osp.join(out, 'previous'))[0])
    assert _tree(moved) == first
    assert _tree(out) - {p for p in _tree(out) if p.startswith('previous')} == {
        p for p in first if not p.startswith('round_2')}
    crash = [dict(type='CrashAfterItersHook', iters=6)]        # in round 2; a resume keeps
    with pytest.raises(KeyboardInterrupt):
        build_runner(work_dir, acdc, num_rounds=2, custom_hooks=crash, **dirs).test()
    kept = _tree(out)
    build_runner(work_dir, acdc, num_rounds=2, resume=True, **dirs).test()
    assert kept <= _tree(out) and len(os.listdir(osp.join(out, 'previous'))) == 2


# ---- 8. errors that name their culprit -----------------------------------------------------
def _forgetting(root, **dataset):
    return dict(name='cityscapes_val', dataset=dict(
        type='CityscapesDataset', data_root=root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='Resize', scale=(64, 32)),
                  dict(type='LoadExactAnnotations'), dict(type='PackSegInputs')], **dataset))


def test_missing_forgetting_label_is_found_before_the_stream(tmp_path, acdc):
    root = make_cityscapes_tree(str(tmp_path / 'cityscapes'), size=(128, 64))
    os.remove(osp.join(root, 'gtFine', 'val', 'lindau',
                       'lindau_000000_000020_gtFine_labelTrainIds.png'))
    work_dir = str(tmp_path / 'w')
    with pytest.raises(FileNotFoundError, match='cityscapes_val.*lindau_000000_000020'):
        build_runner(work_dir, acdc, **{'test_cfg.forgetting': _forgetting(root)}).test()
    assert not osp.exists(osp.join(work_dir, 'results.jsonl'))


def test_empty_forgetting_set_is_named(tmp_path, acdc):
    root = str(tmp_path / 'empty')
    os.makedirs(osp.join(root, 'leftImg8bit', 'val'))
    os.makedirs(osp.join(root, 'gtFine', 'val'))
    with pytest.raises(ValueError, match="domain 'cityscapes_val' is empty"):
        build_runner(str(tmp_path / 'w'), acdc,
                     **{'test_cfg.forgetting': _forgetting(root)}).test()


def test_label_of_another_size_is_named_mid_stream(tmp_path, acdc):
    folder = osp.join(acdc, 'gt', 'night', 'train', 'GOPR0475')
    name = sorted(f for f in os.listdir(folder) if f.endswith('_labelTrainIds.png'))[0]
    cv2.imwrite(osp.join(folder, name), np.zeros((32, 64), np.uint8))
    with pytest.raises(RuntimeError, match=name) as error:
        build_runner(str(tmp_path / 'w'), acdc, num_rounds=1).test()
    assert '32' in str(error.value) and '64' in str(error.value)
    assert [r['domain'] for r in load_records(str(tmp_path / 'w'))] == ['fog']


# ---- 9/10. one seed; a quiet console with the details in the log file ------------------------
def test_randomness_seed_orders_the_mixed_stream(tmp_path, acdc):
    orders = []
    for seed in (0, 1):
        runner = build_runner(str(tmp_path / f's{seed}'), acdc, num_rounds=1,
                              randomness=dict(seed=seed), **{'test_cfg.order': 'mixed'})
        runner.test()
        orders.append(runner.test_loop.loaders['mixed'].sampler.order)
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])


def test_console_shows_a_line_per_stage_and_the_table_the_log_holds_the_rest(tmp_path, acdc):
    work_dir = str(tmp_path / 'w')
    options = [o for o in _cli_options(acdc, num_rounds=1)
               if 'progress' not in o and 'log_level' not in o]
    proc = _cli(TINY_CONFIG, '--work-dir', work_dir, '--cfg-options', *options)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    stage_lines = [line for line in lines if line.startswith('round 1/1 ')]
    assert len(stage_lines) == 4
    assert len(lines) <= 4 + 8 + 2, lines        # stages, the table, the reports line
    assert 'Warning' not in proc.stderr and 'per class results' not in proc.stdout
    log = open(next(osp.join(r, f) for r, _, fs in os.walk(work_dir) for f in fs
                    if f.endswith('.log'))).read()
    assert 'Config:' in log and 'per class results' in log
    verbose = _cli(TINY_CONFIG, '--work-dir', str(tmp_path / 'v'), '--verbose',
                   '--cfg-options', *options)
    assert 'per class results' in verbose.stdout + verbose.stderr
