"""tools/benchmark.py's code path on the tiny model: table, JSON and ratios (not timings)."""
import importlib.util
import json
import os.path as osp
import statistics
import sys

import pytest
import torch
from engine_utils import REPO, TINY_CONFIG

from stag_seg.benchmark import (
    BASELINE,
    MB,
    VARIANTS,
    _BackwardMark,
    run_benchmark,
    step_peak_bytes,
    write_acdc_stream,
)

pytestmark = pytest.mark.filterwarnings('ignore:The draw is False:UserWarning')


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('bench') / 'benchmark.json')
    lines: list[str] = []
    result = run_benchmark([TINY_CONFIG], size=(64, 128), device='cpu', num_steps=2, warmup=1,
                           loop=True, loop_images=2, out=out, print_fn=lines.append)
    return result, out, '\n'.join(lines)


def test_table_lists_every_variant_with_ratios_to_tent(report):
    result, _, text = report
    assert 'median ms/step' in text and 'peak MB' in text
    config = result['configs'][0]
    assert [r['variant'] for r in config['variants']] == [v.name for v in VARIANTS]
    rows = {r['variant']: r for r in config['variants']}
    base = rows[BASELINE]
    for name, row in rows.items():
        assert name in text
        assert len(row['times_ms']) == 2 and all(t > 0 for t in row['times_ms'])
        assert row['median_ms'] == pytest.approx(statistics.median(row['times_ms']))
        assert row['time_ratio'] == pytest.approx(row['median_ms'] / base['median_ms'])
        assert row['peak_mb'] == pytest.approx(row['persistent_mb'] + row['step_mb'])
        assert row['peak_mb'] > 0 and row['step_mb'] > 0
        assert row['memory_ratio'] == pytest.approx(row['peak_mb'] / base['peak_mb'])
    assert base['time_ratio'] == pytest.approx(1.0) and base['memory_ratio'] == 1.0
    # source keeps no autograd graph: less memory than any adapting step
    assert rows['source']['step_mb'] < base['step_mb']
    assert config['classifier']['num_classes'] == 19 and config['classifier']['pixels'] > 0
    assert 'K-space vs naive C-space peak memory' in text
    assert rows['source']['at_backward_mb'] is None
    assert rows['source']['stag_term_ms'] is None and base['stag_term_ms'] is None
    assert all(rows[v.name]['stag_term_ms'] > 0 for v in VARIANTS if v.stag)
    assert 'STAG term alone' in text
    assert all(rows[v.name]['at_backward_mb'] > base['persistent_mb'] for v in VARIANTS[1:])


def test_json_has_the_machine_the_loop_and_the_targets(report):
    result, out, text = report
    with open(out) as f:
        saved = json.load(f)
    assert saved['configs'][0]['variants'] == json.loads(json.dumps(
        result['configs'][0]['variants']))
    machine = saved['machine']
    assert machine['cores'] >= 1 and machine['torch'] == torch.__version__
    assert machine['device'] == 'cpu' and machine['cpu']
    loop = saved['loop']
    assert loop['images'] == 2 and loop['num_workers'] >= 1
    assert loop['ratio'] == pytest.approx(loop['steady_s_per_image'] / loop['bare_step_s'])
    assert loop['bare_step_s'] * 1e3 == pytest.approx(
        {r['variant']: r for r in saved['configs'][0]['variants']}[BASELINE]['median_ms'])
    assert 'engine loop (tent' in text
    assert len(saved['targets']) == 7
    assert sum('[hook default]' in t['target'] for t in saved['targets']) == 2
    assert all(isinstance(t['holds'], bool) for t in saved['targets'])


def test_cpu_peak_counts_the_step_s_tensors_only():
    kept = torch.ones(4 * MB, dtype=torch.uint8)      # allocated before: not counted
    mark = _BackwardMark(torch.device('cpu'))

    def step():
        a = torch.ones(3 * MB, dtype=torch.uint8)
        b = torch.ones(2 * MB, dtype=torch.uint8)
        del a
        mark.after_tta_forward(None)                   # holds b (2 MB) here
        del b
        torch.ones(1 * MB, dtype=torch.uint8)

    peak, at_mark = step_peak_bytes(step, torch.device('cpu'), mark)
    assert 5 * MB <= peak < 5 * MB + 64 * 1024
    assert 2 * MB <= at_mark < 2 * MB + 64 * 1024
    assert step_peak_bytes(step, torch.device('cpu'))[1] is None
    assert kept.numel() == 4 * MB


def test_generated_stream_is_an_acdc_tree(tmp_path):
    root = write_acdc_stream(str(tmp_path / 'acdc'), (32, 64), 2)
    img = osp.join(root, 'rgb_anon', 'fog', 'train', 'GOPR0475', 'GOPR0475_frame_000041'
                   '_rgb_anon.png')
    gt = osp.join(root, 'gt', 'fog', 'train', 'GOPR0475', 'GOPR0475_frame_000042'
                  '_gt_labelTrainIds.png')
    assert osp.isfile(img) and osp.isfile(gt)


def test_help_documents_the_options(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool', osp.join(REPO, 'tools', 'benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setattr(sys, 'argv', ['benchmark.py', '--help'])
    with pytest.raises(SystemExit) as exit_info:
        tool.parse_args()
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ('--device', '--size', '--steps', '--warmup', '--configs', '--skip-loop',
                   '--out'):
        assert option in out
