"""results.jsonl round trip, table means, csv/md/png outputs and the compare_runs tool."""
import csv
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest

from stag_seg.reports import (
    append_record,
    comparison_table,
    format_comparison,
    format_table,
    load_records,
    load_runs,
    plot_miou,
    results_table,
    truncate_records,
    write_csv,
    write_markdown,
    write_reports,
)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def rec(method, rnd, domain, miou, adapted=None):
    r = {'method': method, 'round': rnd, 'domain': domain, 'num_images': 4, 'mIoU': miou,
         'mAcc': miou + 10, 'aAcc': 90.0, 'IoU': {'road': miou, 'sky': miou},
         'skipped_updates': 0}
    if adapted is not None:
        r['adapted'] = adapted
    return r


# round 1: fog 50, night 30 (row mean 40); round 2: 52, 34 (43); round 3 (partial): fog 54.
# cityscapes is a forgetting check: 70, 68, -.
TENT = [rec('tent', 1, 'fog', 50.0), rec('tent', 1, 'night', 30.0),
        rec('tent', 1, 'cityscapes', 70.0, adapted=False),
        rec('tent', 2, 'fog', 52.0), rec('tent', 2, 'night', 34.0),
        rec('tent', 2, 'cityscapes', 68.0, adapted=False),
        rec('tent', 3, 'fog', 54.0)]
STAG = [rec('stag', 1, 'fog', 60.0), rec('stag', 1, 'night', 40.0),
        rec('stag', 2, 'fog', 62.0), rec('stag', 2, 'night', 44.0)]


def write_run(work_dir, records):
    for r in records:
        append_record(str(work_dir), r)
    return str(work_dir)


def is_png(path):
    with open(path, 'rb') as f:
        return f.read(8) == PNG_MAGIC and osp.getsize(path) > 100


def test_append_load_round_trip(tmp_path):
    work_dir = write_run(tmp_path / 'run', TENT)
    assert load_records(work_dir) == TENT
    assert load_records(osp.join(work_dir, 'results.jsonl')) == TENT


def test_append_rejects_incomplete_record(tmp_path):
    bad = dict(TENT[0])
    del bad['mAcc']
    with pytest.raises(ValueError, match='mAcc'):
        append_record(str(tmp_path), bad)


def test_corrupt_line_names_file_and_line(tmp_path):
    work_dir = write_run(tmp_path, TENT[:2])
    path = osp.join(work_dir, 'results.jsonl')
    with open(path, 'a') as f:
        f.write('{"method": "tent", "round": 1, "dom\n')
    with pytest.raises(ValueError, match=r'results\.jsonl, line 3') as err:
        load_records(work_dir)
    assert path in str(err.value)


def test_missing_results_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='results.jsonl'):
        load_records(str(tmp_path))


def test_truncate_records(tmp_path):
    work_dir = write_run(tmp_path, TENT)
    truncate_records(work_dir, lambda r: r['round'] == 1)
    assert load_records(work_dir) == TENT[:3]
    assert os.listdir(work_dir) == ['results.jsonl']  # no temp file left behind
    truncate_records(str(tmp_path / 'empty'), lambda r: True)  # no file: no-op


def test_results_table_means():
    header, rows = results_table(TENT)
    assert header == ['round', 'fog', 'night', 'mean', 'cityscapes (no update)']
    assert rows == [[1, 50.0, 30.0, 40.0, 70.0],
                    [2, 52.0, 34.0, 43.0, 68.0],
                    [3, 54.0, None, 54.0, None],
                    ['mean', 52.0, 32.0, 44.0, 69.0]]


def test_forgetting_excluded_from_means():
    with_forget = results_table(TENT[:6])[1]
    without = results_table([r for r in TENT[:6] if r['domain'] != 'cityscapes'])[1]
    assert [row[:4] for row in with_forget] == without
    assert with_forget[-1][3] == 41.5


def test_duplicate_record_last_wins():
    rows = results_table(TENT[:2] + [rec('tent', 1, 'fog', 56.0)])[1]
    assert rows[0] == [1, 56.0, 30.0, 43.0]


def test_format_table_is_aligned():
    text = format_table(TENT)
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[0].split()[:4] == ['round', 'fog', 'night', 'mean']
    assert lines[3].split() == ['3', '54.00', '-', '54.00', '-']
    assert lines[4].split() == ['mean', '52.00', '32.00', '44.00', '69.00']


def test_csv_and_markdown(tmp_path):
    write_csv(str(tmp_path / 'r.csv'), TENT)
    with open(tmp_path / 'r.csv', newline='') as f:
        table = list(csv.reader(f))
    assert table[0] == ['round', 'fog', 'night', 'mean', 'cityscapes (no update)']
    assert table[1] == ['1', '50.00', '30.00', '40.00', '70.00']
    assert table[3] == ['3', '54.00', '', '54.00', '']
    assert table[4] == ['mean', '52.00', '32.00', '44.00', '69.00']

    write_markdown(str(tmp_path / 'r.md'), TENT, title='Tent on ACDC')
    md = (tmp_path / 'r.md').read_text()
    assert md.startswith('# Tent on ACDC\n')
    assert '| 2 | 52.00 | 34.00 | 43.00 | 68.00 |' in md
    assert '| mean | 52.00 | 32.00 | 44.00 | 69.00 |' in md
    assert 'excluded from the means' in md


def test_plot_is_png(tmp_path):
    path = str(tmp_path / 'plots' / 'miou.png')
    plot_miou({'tent': TENT, 'stag': STAG}, path)
    assert is_png(path)


def test_write_reports(tmp_path):
    work_dir = write_run(tmp_path, TENT)
    write_reports(work_dir)
    assert is_png(osp.join(work_dir, 'miou.png'))
    assert '44.00' in (tmp_path / 'results.csv').read_text()
    assert '# tent:' in (tmp_path / 'results.md').read_text()


def test_comparison_table():
    header, rows = comparison_table({'tent': TENT, 'stag': STAG})
    assert header == ['method', 'fog', 'night', 'mean', 'last round', 'cityscapes (no update)']
    assert rows == [['tent', 52.0, 32.0, 44.0, 54.0, 69.0],
                    ['stag', 61.0, 42.0, 51.5, 53.0, None]]
    assert 'stag' in format_comparison({'tent': TENT, 'stag': STAG})


def test_load_runs_disambiguates(tmp_path):
    a = write_run(tmp_path / 'a', STAG)
    b = write_run(tmp_path / 'b', STAG)
    c = write_run(tmp_path / 'c', TENT)
    assert list(load_runs([a, b, c])) == ['stag (a)', 'stag (b)', 'tent']
    assert list(load_runs([a, c], names=['x', 'y'])) == ['x', 'y']


def test_compare_runs_missing_results(tmp_path):
    spec = importlib.util.spec_from_file_location(
        'compare_runs', osp.join(REPO, 'tools', 'compare_runs.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    good = write_run(tmp_path / 'good', STAG)
    empty = str(tmp_path / 'empty_run')
    os.makedirs(empty)
    with pytest.raises(SystemExit) as err:
        tool.main([good, empty])
    assert empty in str(err.value) and 'results.jsonl' in str(err.value)


def test_compare_runs_cli(tmp_path):
    tent = write_run(tmp_path / 'tent_run', TENT)
    stag = write_run(tmp_path / 'stag_run', STAG)
    out = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'compare_runs.py'), tent, stag],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:5] == ['method', 'rounds', 'images', 'fog', 'night']
    assert lines[1].split()[:8] == ['tent', '3', '8', '52.00', '32.00', '44.00', '54.00',
                                    '69.00']
    assert lines[2].split()[:7] == ['stag', '2', '8', '61.00', '42.00', '51.50', '53.00']
    assert 'tent: round 3 has 1 of 2 domains' in lines[3]     # TENT's round 3 is partial
    assert out.stderr.strip() == ('compare_runs: warning: the runs differ in rounds (tent 3, '
                                  'stag 2): their means cover different streams')
    assert is_png(osp.join(tent, 'compare_miou.png'))       # next to the first run


def test_compare_runs_warns_about_other_images_and_domains(tmp_path):
    from stag_seg.reports import shape_mismatches
    fewer = [{**r, 'num_images': 2} for r in STAG]
    other = [{**r, 'domain': 'rain' if r['domain'] == 'night' else r['domain']} for r in STAG]
    assert shape_mismatches({'stag': STAG, 'b': fewer}) == [
        'the runs differ in images (stag 8, b 4): their means cover different streams']
    assert shape_mismatches({'stag': STAG, 'c': other}) == [
        'the runs differ in domains (stag fog/night, c fog/rain): their means cover different '
        'streams']
    assert shape_mismatches({'stag': STAG, 'd': list(STAG)}) == []


def test_the_comparison_legend_is_off_the_data(tmp_path):
    fig = plot_miou({'tent': TENT, 'stag': STAG}, str(tmp_path / 'c.png'))
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1        # right of the axes
    assert is_png(str(tmp_path / 'c.png'))
