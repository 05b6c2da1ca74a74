"""Issue-21 messages: each names the option or file and what to do, in the user's terms."""
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
from engine_utils import REPO, TINY_CONFIG, build_runner, tiny_options
from fixture_data import make_acdc_tree

from stag_seg.engine.launch import load_tta_config

TOOLS = ('benchmark', 'compare_runs', 'convert_segformer_checkpoint', 'demo', 'make_demo_data',
         'study', 'sweep', 'test_tta', 'train_demo_model')


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- item 16: --cfg-options keeps the spaces of a quoted path ---------------------------------
def test_cfg_options_keep_the_spaces_of_a_path(tmp_path):
    args = _tool('test_tta').parse_args([
        TINY_CONFIG, '--cfg-options', 'test_dataloader.dataset.data_root=/data/my acdc',
        "work_dir='/runs/a b'", 'test_dataloader.dataset.pipeline.1.scale=(64, 32)',
        'test_cfg.num_rounds= 2', 'test_cfg.progress=False'])
    assert args.cfg_options == {'test_dataloader.dataset.data_root': '/data/my acdc',
                                'work_dir': '/runs/a b',
                                'test_dataloader.dataset.pipeline.1.scale': (64, 32),
                                'test_cfg.num_rounds': 2, 'test_cfg.progress': False}
    acdc = make_acdc_tree(str(tmp_path / 'my acdc'))
    cfg = load_tta_config(TINY_CONFIG, str(tmp_path / 'w'), {
        **tiny_options('x'), 'test_dataloader.dataset.data_root': acdc})
    assert cfg.cfg.test_dataloader.dataset.data_root == acdc


# ---- item 20 ---------------------------------------------------------------------------------
@pytest.mark.parametrize('tool', TOOLS)
def test_tools_outside_the_environment_say_how_to_set_it_up(tool):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, '-S', osp.join(REPO, 'tools', f'{tool}.py'),
                           '--help'], capture_output=True, text=True, env=env)   # no site-packages
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f'{tool}: ') and 'source scripts/env.sh' in line, line


def test_compare_runs_on_a_torn_file_says_resume(tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'results.jsonl').write_text('{"method": "tent", "round": 1, "dom')
    with pytest.raises(SystemExit) as error:
        _tool('compare_runs').main([str(run)])
    message = str(error.value)
    assert 'results.jsonl, line 1' in message and '--resume' in message
    assert 'drop_torn_tail' not in message


@pytest.mark.parametrize('out, message', [
    ('{run}', r'--out .*run is a directory; give the figure file, e\.g\. .*compare_miou\.png'),
    ('{tmp}/table.txt', r"figure format 'txt' is not supported; use one of .*png"),
    ('{run}/miou.png', r"miou\.png is a compared run's own report file"),
])
def test_compare_runs_checks_out_before_writing(tmp_path, out, message):
    """A directory, a format matplotlib cannot write, or a run's own miou.png: one line, and
    the run's files stay as they were."""
    run = tmp_path / 'run'
    run.mkdir()
    record = ('{"method": "tent", "round": 1, "domain": "fog", "num_images": 1, "mIoU": 10.0, '
              '"mAcc": 0, "aAcc": 0, "IoU": {}, "skipped_updates": 0}\n')
    (run / 'results.jsonl').write_text(record)
    (run / 'miou.png').write_bytes(b'the run\'s own figure')
    with pytest.raises(SystemExit) as error:
        _tool('compare_runs').main([str(run), '--out', out.format(run=run, tmp=tmp_path)])
    assert re.search(message, str(error.value)), str(error.value)
    assert str(error.value).startswith('compare_runs: --out ')
    assert sorted(os.listdir(run)) == ['miou.png', 'results.jsonl']
    assert (run / 'miou.png').read_bytes() == b'the run\'s own figure'
    assert sorted(os.listdir(tmp_path)) == ['run']


def test_cotta_option_error_names_the_method_once():
    with pytest.raises(ValueError) as error:
        load_tta_config(TINY_CONFIG, '/nonexistent/w',
                        {**tiny_options('x'), 'test_cfg.method': dict(type='cotta', alpha=2)})
    assert str(error.value) == 'test_cfg.method (cotta): alpha must be <= 1, got 2'


def test_bad_fisher_dataset_root_names_the_option(tmp_path):
    acdc = make_acdc_tree(str(tmp_path / 'acdc'))
    method = dict(type='eata', fisher_size=2,
                  fisher_dataset=dict(condition='fog', data_root=str(tmp_path / 'missing')))
    with pytest.raises(FileNotFoundError, match=r'^test_cfg\.method\.fisher_dataset: .*missing'):
        build_runner(str(tmp_path / 'w'), acdc, **{'test_cfg.method': method}).test()
    assert not (tmp_path / 'w').exists()        # found by the start check: no Runner yet


def test_a_start_is_checked_again_after_a_failed_check_or_a_new_source(tmp_path):
    from stag_seg.engine import launch

    acdc = make_acdc_tree(str(tmp_path / 'acdc'))
    method = dict(type='eata', fisher_size=2,
                  fisher_dataset=dict(condition='fog', data_root=str(tmp_path / 'missing')))
    run = load_tta_config(TINY_CONFIG, str(tmp_path / 'w'),
                          tiny_options(acdc, **{'test_cfg.method': method}))
    for _ in range(2):                          # the domains were fine: still not "checked"
        with pytest.raises(FileNotFoundError, match=r'^test_cfg\.method\.fisher_dataset'):
            launch.build_runner(run)
    assert run.setup.domains is None
    good = load_tta_config(TINY_CONFIG, str(tmp_path / 'w2'), tiny_options(acdc))
    launch.check_start(good)
    assert good.setup.domains is not None
    good.set_source(random_init=True)           # another source: the check runs again
    assert good.setup.domains is None
