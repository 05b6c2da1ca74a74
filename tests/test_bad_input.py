"""Each bad input gets one clear error naming its culprit, and loses no results already written."""
import glob
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch
from engine_utils import TINY_CONFIG, build_runner, tiny_options
from fixture_data import make_acdc_tree
from mmengine.runner import save_checkpoint

from stag_seg.compat.checkpoint import trust_checkpoint
from stag_seg.engine.launch import load_tta_config, run_tta
from stag_seg.reports import load_records


@pytest.fixture
def acdc(tmp_path):
    return make_acdc_tree(str(tmp_path / 'acdc'), size=(128, 64))


@pytest.fixture
def work_dir(tmp_path):
    """A work dir holding the results of an earlier run, which a failed start must keep."""
    path = tmp_path / 'work'
    path.mkdir()
    (path / 'results.jsonl').write_text('{"earlier": "run"}\n')
    return str(path)


def _first(acdc: str, condition: str, kind: str) -> str:
    folder = 'rgb_anon' if kind == 'image' else 'gt'
    suffix = '_rgb_anon.png' if kind == 'image' else '_gt_labelTrainIds.png'
    for root, _, files in sorted(os.walk(osp.join(acdc, folder, condition, 'train'))):
        for name in sorted(files):
            if name.endswith(suffix):
                return osp.join(root, name)
    raise AssertionError('fixture has no such file')


def _earlier_results_kept(work_dir: str) -> None:
    with open(osp.join(work_dir, 'results.jsonl')) as f:
        assert f.read() == '{"earlier": "run"}\n'


def test_missing_data_root(work_dir, tmp_path):
    missing = str(tmp_path / 'no_such_acdc')
    with pytest.raises(FileNotFoundError, match='no_such_acdc'):
        build_runner(work_dir, missing).test()
    _earlier_results_kept(work_dir)


def test_missing_condition_folder(work_dir, acdc):
    shutil.rmtree(osp.join(acdc, 'rgb_anon', 'rain'))
    with pytest.raises(FileNotFoundError, match=r'rgb_anon/rain'):
        build_runner(work_dir, acdc).test()
    _earlier_results_kept(work_dir)


def test_image_without_label(work_dir, acdc):
    label = _first(acdc, 'snow', 'label')
    os.remove(label)
    image = _first(acdc, 'snow', 'image')
    with pytest.raises(FileNotFoundError, match=osp.basename(image)):
        build_runner(work_dir, acdc).test()
    _earlier_results_kept(work_dir)


def test_empty_domain(work_dir, acdc):
    for kind in ('rgb_anon', 'gt'):
        shutil.rmtree(osp.join(acdc, kind, 'night', 'train'))
        os.makedirs(osp.join(acdc, kind, 'night', 'train'))
    with pytest.raises(ValueError, match=r'empty.*night|night.*empty'):
        build_runner(work_dir, acdc).test()
    _earlier_results_kept(work_dir)


def test_unreadable_image_mid_stream(tmp_path, acdc):
    image = _first(acdc, 'rain', 'image')
    with open(image, 'wb') as f:
        f.write(b'not a png')
    work_dir = str(tmp_path / 'w')
    with pytest.raises(Exception, match=osp.basename(image)):
        build_runner(work_dir, acdc).test()
    records = load_records(work_dir)
    assert [r['domain'] for r in records] == ['fog', 'night']
    assert osp.getsize(osp.join(work_dir, 'results.md')) > 0


def test_label_ids_outside_the_classes_mid_stream(tmp_path, acdc):
    label_path = _first(acdc, 'night', 'label')
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    label[0, :5] = 42
    cv2.imwrite(label_path, label)
    work_dir = str(tmp_path / 'w')
    with pytest.raises(ValueError, match=osp.basename(label_path)) as error:
        build_runner(work_dir, acdc).test()
    assert '42' in str(error.value)
    assert [r['domain'] for r in load_records(work_dir)] == ['fog']


def test_checkpoint_with_another_class_count(work_dir, acdc, tmp_path):
    from mmseg.registry import MODELS
    cfg = load_tta_config(TINY_CONFIG, work_dir, tiny_options(acdc)).cfg
    cfg.model.decode_head.num_classes = 10
    model = MODELS.build(cfg.model)
    checkpoint = str(tmp_path / 'ten_classes.pth')
    save_checkpoint({'state_dict': model.state_dict(), 'meta': {'note': 'ten'}}, checkpoint)
    run = load_tta_config(TINY_CONFIG, work_dir, tiny_options(acdc))
    with pytest.raises(ValueError, match='ten_classes.pth') as error:
        run_tta(run, checkpoint)
    assert 'conv_seg' in str(error.value)
    _earlier_results_kept(work_dir)


def test_matching_checkpoint_is_loaded(tmp_path, acdc, capfd):
    from mmseg.registry import MODELS
    run = load_tta_config(TINY_CONFIG, str(tmp_path / 'w'),
                          tiny_options(acdc, **{'test_cfg.method.type': 'source',
                                                'test_cfg.num_rounds': 1}))
    torch.manual_seed(123)
    model = MODELS.build(run.cfg.model)
    model.init_weights()
    checkpoint = str(tmp_path / 'source.pth')
    save_checkpoint({'state_dict': model.state_dict(), 'meta': {'arr': np.arange(3)}},
                    checkpoint)
    trust_checkpoint(checkpoint)      # numpy in its meta: not plain weights (--trust-checkpoint)
    run_tta(run, checkpoint)
    logs = glob.glob(str(tmp_path / 'w' / '*' / '*.log'))
    assert len(logs) == 1             # the full unpickling: once, in the run's own log
    line = 'unpickling it fully, as --trust-checkpoint asks'
    assert open(logs[0]).read().count(line) == 1
    console = capfd.readouterr()
    assert (console.out + console.err).count(line) == 1     # not the start check's load too
    state = torch.load(tmp_path / 'w' / 'tta_state.pth', weights_only=True)['adapter']['model']
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), key
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        run_tta(run, str(tmp_path / 'missing.pth'))


def test_test_tta_refuses_a_pickle_payload_unless_trusted(tmp_path, acdc, capsys):
    import importlib.util

    from test_compat import save_payload

    spec = importlib.util.spec_from_file_location(
        'test_tta_tool', osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools',
                                  'test_tta.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    marker = tmp_path / 'payload_ran'
    checkpoint = save_payload(tmp_path / 'evil.pth', marker)
    from stag_seg.sweep.cli_options import flatten, to_cli
    options = to_cli(flatten(tiny_options(acdc, **{'test_cfg.random_init': False})))
    argv = [TINY_CONFIG, checkpoint, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
            *options]
    with pytest.raises(SystemExit) as code:
        tool.main(argv)
    err = capsys.readouterr().err.strip()
    assert code.value.code == 1 and not marker.exists()
    assert err == (f'test_tta: error: {checkpoint}: refused: not plain weights (unsupported '
                   'global io.open), and unpickling it could run code; if you trust this '
                   'file, pass --trust-checkpoint')
    with pytest.raises(SystemExit) as code:       # vouched for: unpickled (and runs)
        tool.main([*argv[:2], '--trust-checkpoint', *argv[2:]])
    assert code.value.code == 1 and marker.exists()


def _tool(name: str):
    import importlib.util
    path = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'{name}_tool', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.mark.parametrize('argv,expected', [
    (['--images', '0'], 'demo: --images: expected a number >= 1, got 0'),
    (['--images', '-3'], 'demo: --images: expected a number >= 1, got -3'),
    (['--rounds', '0'], 'demo: --rounds: expected a number >= 1, got 0'),
    (['--cfg-options', 'test_cfg.optimzer.lr=1e-3'],
     "demo: --cfg-options: test_cfg: unknown option(s) ['optimzer']; valid options: "),
    (['--cfg-options', 'custom_hooks.0.loss_wieght=1'],
     "demo: --cfg-options: custom_hooks.0 (STAGHook): unknown option(s) ['loss_wieght']"),
    (['--cfg-options', 'tets_cfg.num_rounds=1'],
     "demo: --cfg-options: tets_cfg.num_rounds: no config has a key 'tets_cfg'"),
    (['--cfg-options', 'test_cfg.num_rounds=3'],     # the flag's value used to lose silently
     'demo: --cfg-options: test_cfg.num_rounds is set by the demo from --rounds; use --rounds'),
    (['--cfg-options', 'test_dataloader.dataset.data_root=/elsewhere'],
     'demo: --cfg-options: test_dataloader.dataset.data_root is set by the demo from '
     '--data-root; use --data-root'),
    (['--cfg-options', 'test_cfg.domains.0.dataset.indices=[0]'],
     'demo: --cfg-options: test_cfg.domains.0.dataset.indices is set by the demo from --images'),
])
def test_demo_flags_are_checked_before_any_work(argv, expected, tmp_path):
    data = tmp_path / 'data'
    with pytest.raises(SystemExit) as info:
        _tool('demo').main([*argv, '--data-root', str(data), '--work-dir', str(tmp_path / 'w')])
    message = str(info.value.code)
    assert message.startswith(expected) and '\n' not in message
    assert not data.exists()                                  # nothing rendered


@pytest.mark.parametrize('flag', ['--work-dir', '--data-root'])
def test_demo_dir_flag_that_is_a_file_is_named(flag, tmp_path):
    a_file = tmp_path / 'afile'
    a_file.write_text('')
    argv = {'--work-dir': str(tmp_path / 'w'), '--data-root': str(tmp_path / 'data'),
            flag: str(a_file)}
    with pytest.raises(SystemExit) as info:
        _tool('demo').main([arg for pair in argv.items() for arg in pair])
    assert str(info.value.code) == (f'demo: {flag} {a_file} is a file, not a directory; pass '
                                    'a directory (it is created if missing)')
    assert sorted(os.listdir(tmp_path)) == ['afile']


@pytest.mark.parametrize('argv,expected', [
    (['--steps', '0'], 'benchmark: --steps: expected a number >= 1, got 0'),
    (['--methods', 'tentt'], "benchmark: --methods: unknown method(s) ['tentt']; registered: "),
    (['--later-methods', 'tentt'], "benchmark: --later-methods: unknown method(s) ['tentt']"),
    (['--device', 'cuda'], 'benchmark: --device cuda: CUDA is not available on this machine'),
])
def test_benchmark_flags_are_checked_before_any_work(argv, expected, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    out = tmp_path / 'benchmark.json'
    with pytest.raises(SystemExit) as info:
        _tool('benchmark').main([*argv, '--out', str(out)])
    message = str(info.value.code)
    assert message.startswith(expected) and '\n' not in message
    assert not out.exists()


@pytest.mark.parametrize('seed', ['abc', 1.5, -1, True, 2 ** 32])
def test_bad_seed_is_named_before_the_runner(seed, work_dir, acdc):
    with pytest.raises(ValueError, match=rf'randomness.seed must be an integer from 0 to '
                                         rf'2\*\*32 - 1 .*got {seed!r}'):
        load_tta_config(TINY_CONFIG, work_dir, tiny_options(acdc, randomness=dict(seed=seed)))
    assert sorted(os.listdir(work_dir)) == ['results.jsonl']
    _earlier_results_kept(work_dir)


def test_checkpoint_and_random_init_together_are_refused(work_dir, acdc, tmp_path):
    """Either source is the user's word: both at once is a mistake (the checkpoint used to win
    silently over --random-init). A checkpoint passed alone turns off a config's
    random_init; a directory is named as one."""
    checkpoint = tmp_path / 'source.pth'
    checkpoint.write_bytes(b'not read: refused before loading')
    run = load_tta_config(TINY_CONFIG, work_dir, tiny_options(acdc))
    with pytest.raises(ValueError, match=r'source.pth and --random-init exclude each other'):
        run_tta(run, str(checkpoint), random_init=True)
    both = tiny_options(acdc, **{'test_cfg.checkpoint': str(checkpoint)})
    with pytest.raises(ValueError, match=r'test_cfg.checkpoint=.*source.pth and '
                                         r'test_cfg.random_init=True .*exclude each other'):
        run_tta(load_tta_config(TINY_CONFIG, work_dir, both))
    with pytest.raises(IsADirectoryError, match=rf'checkpoint {tmp_path} is a directory'):
        run_tta(load_tta_config(TINY_CONFIG, work_dir, tiny_options(acdc)), str(tmp_path))
    assert sorted(os.listdir(work_dir)) == ['results.jsonl']
    _earlier_results_kept(work_dir)
    run = load_tta_config(TINY_CONFIG, work_dir, tiny_options(acdc))
    run.set_source(str(checkpoint))
    assert run.setup.options['random_init'] is False and run.cfg.test_cfg.random_init is False
