"""Reports that survive numpy 2 metrics, undefined mIoU, kills mid-write, torn results.jsonl
lines and reruns: what the engine writes is what the tables show."""
import csv
import json
import logging
import os
import os.path as osp
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from mmengine.logging import MMLogger

from stag_seg.reports import (
    append_record,
    comparison_table,
    drop_torn_tail,
    format_comparison,
    format_table,
    load_records,
    plot_miou,
    results_table,
    run_summary,
    truncate_records,
    write_csv,
    write_markdown,
    write_reports,
)
from stag_seg.reports.tables import NA

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def rec(method, rnd, domain, miou, adapted=None):
    r = {'method': method, 'round': rnd, 'domain': domain, 'num_images': 4, 'mIoU': miou,
         'mAcc': 60.0, 'aAcc': 90.0, 'IoU': {'road': 50.0, 'sky': 50.0},
         'skipped_updates': 0}
    if adapted is not None:
        r['adapted'] = adapted
    return r


def strict_loads(line):
    """json.loads that refuses the non-standard NaN / Infinity constants."""
    def refuse(name):
        raise ValueError(f'non-standard JSON constant {name}')
    return json.loads(line, parse_constant=refuse)


def jsonl_lines(work_dir):
    with open(osp.join(work_dir, 'results.jsonl'), encoding='utf-8') as f:
        return f.read().splitlines()


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------- numpy 2 metrics, NaN

def test_numpy2_float32_metrics_are_written_as_rounded_json_numbers(tmp_path):
    # what mmseg's IoUMetric returns under numpy 2 (np.float32), plus other numpy/torch scalars
    record = {'method': 'tent', 'round': np.int64(1), 'domain': 'fog',
              'num_images': np.int64(4), 'mIoU': np.float32(20.51),
              'mAcc': np.float32(30.456), 'aAcc': torch.tensor(90.004),
              'IoU': {'road': np.float32(20.51), 'sky': np.float64(33.335), 'car': None},
              'Acc': {'road': np.float32(1.005)},
              'skipped_updates': torch.tensor(2), 'adapted': np.bool_(True),
              'kept_fraction': np.float32(0.3)}
    assert float(np.float32(20.51)) != 20.51              # why converting is not enough
    written = append_record(str(tmp_path), record)
    [line] = jsonl_lines(tmp_path)
    assert '20.510000228881836' not in line and '"mIoU": 20.51,' in line
    loaded = strict_loads(line)
    assert loaded == written
    assert loaded['round'] == 1 and type(loaded['round']) is int
    assert loaded['num_images'] == 4 and loaded['skipped_updates'] == 2
    assert loaded['mIoU'] == 20.51 and loaded['mAcc'] == round(float(np.float32(30.456)), 2)
    assert loaded['aAcc'] == 90.0
    assert loaded['IoU'] == {'road': 20.51, 'sky': round(33.335, 2), 'car': None}
    assert loaded['Acc'] == {'road': round(float(np.float32(1.005)), 2)}
    assert loaded['adapted'] is True
    # a non-metric float is converted, not rounded
    assert loaded['kept_fraction'] == float(np.float32(0.3)) != 0.3
    assert load_records(str(tmp_path)) == [loaded]


def test_undefined_metric_is_written_as_null(tmp_path):
    nan = np.float32('nan')
    record = rec('tent', 1, 'fog', nan)
    record.update(mAcc=nan, aAcc=np.float64('inf'), IoU={'road': nan, 'sky': 12.0},
                  kept_fraction=float('nan'))
    append_record(str(tmp_path), record)
    [line] = jsonl_lines(tmp_path)
    loaded = strict_loads(line)           # a bare NaN / Infinity would raise here
    assert loaded['mIoU'] is None and loaded['mAcc'] is None and loaded['aAcc'] is None
    assert loaded['IoU'] == {'road': None, 'sky': 12.0} and loaded['kept_fraction'] is None


def test_append_rejects_a_non_numeric_metric(tmp_path):
    with pytest.raises(ValueError, match='mIoU'):
        append_record(str(tmp_path), rec('tent', 1, 'fog', 'high'))
    assert not osp.exists(tmp_path / 'results.jsonl')


def test_old_file_with_bare_nan_loads_as_undefined(tmp_path):
    # numpy 1 (np.float64 is a float) let json.dumps write a bare NaN
    line = json.dumps(rec('tent', 1, 'fog', float('nan')))
    assert 'NaN' in line
    (tmp_path / 'results.jsonl').write_text(line + '\n')
    assert load_records(str(tmp_path))[0]['mIoU'] is None


# round 1: fog 50, night undefined (all labels ignored); round 2: fog 52, night 34.
# By hand: row means 50 (night excluded), 43; column means fog 51, night 34;
# overall (50 + 52 + 34) / 3 = 45.33; clean_val (no update) 70 and undefined -> 70.
WITH_NA = [rec('tent', 1, 'fog', 50.0), rec('tent', 1, 'night', None),
           rec('tent', 1, 'clean_val', 70.0, adapted=False),
           rec('tent', 2, 'fog', 52.0), rec('tent', 2, 'night', 34.0),
           rec('tent', 2, 'clean_val', None, adapted=False)]


def test_undefined_mIoU_is_excluded_from_every_mean():
    header, rows = results_table(WITH_NA)
    assert header == ['round', 'fog', 'night', 'mean', 'clean_val (no update)']
    assert rows == [[1, 50.0, NA, 50.0, 70.0],
                    [2, 52.0, 34.0, 43.0, NA],
                    ['mean', 51.0, 34.0, 45.33, 70.0]]
    # a domain undefined in every round has an undefined mean, not a missing one
    rows = results_table([rec('tent', 1, 'fog', 50.0), rec('tent', 1, 'night', None)])[1]
    assert rows == [[1, 50.0, NA, 50.0], ['mean', 50.0, NA, 50.0]]
    # comparison: per-domain means, overall and last round (52 + 34) / 2 skip the hole
    header, rows = comparison_table({'tent': WITH_NA})
    assert header == ['method', 'fog', 'night', 'mean', 'last round', 'clean_val (no update)']
    assert rows == [['tent', 51.0, 34.0, 45.33, 43.0, 70.0]]
    last_na = WITH_NA[:3] + [rec('tent', 2, 'fog', None)]
    assert comparison_table({'tent': last_na})[1] == [['tent', 50.0, NA, 50.0, NA, 70.0]]


def test_run_summary_matches_the_tables():
    assert run_summary(WITH_NA) == {'mIoU': 45.33, 'last_round_mIoU': 43.0,
                                    'skipped_updates': 0}
    assert run_summary([rec('tent', 1, 'fog', None)]) == {
        'mIoU': None, 'last_round_mIoU': None, 'skipped_updates': 0}
    assert run_summary([]) == {}


def test_undefined_cells_show_na_with_a_note(tmp_path):
    lines = format_table(WITH_NA).splitlines()
    assert lines[1].split() == ['1', '50.00', 'n/a', '50.00', '70.00']
    assert lines[3].split() == ['mean', '51.00', '34.00', '45.33', '70.00']
    assert lines[-1].startswith('n/a: no labelled pixel')
    assert 'excluded from means' in lines[-1]
    comparison = format_comparison({'tent': WITH_NA})
    assert comparison.splitlines()[1].split() == ['tent', '51.00', '34.00', '45.33', '43.00',
                                                  '70.00']
    assert 'n/a: no labelled pixel' not in comparison      # no undefined cell left
    assert 'n/a: no labelled pixel' in format_comparison({'tent': WITH_NA[:2]})

    write_csv(str(tmp_path / 'r.csv'), WITH_NA)
    with open(tmp_path / 'r.csv', newline='') as f:
        table = list(csv.reader(f))
    assert table[1] == ['1', '50.00', '', '50.00', '70.00']
    assert table[2] == ['2', '52.00', '34.00', '43.00', '']
    write_markdown(str(tmp_path / 'r.md'), WITH_NA)
    md = (tmp_path / 'r.md').read_text()
    assert '| 1 | 50.00 | n/a | 50.00 | 70.00 |' in md
    assert '| mean | 51.00 | 34.00 | 45.33 | 70.00 |' in md
    assert 'n/a: no labelled pixel' in md


def test_no_note_without_undefined_cells():
    records = [rec('tent', 1, 'fog', 50.0)]
    assert 'n/a' not in format_table(records) and 'n/a' not in format_comparison({'t': records})


def test_reports_from_a_run_with_undefined_mIoU(tmp_path):
    for r in WITH_NA:
        append_record(str(tmp_path), {**r, 'mIoU': np.float32('nan') if r['mIoU'] is None
                                      else np.float32(r['mIoU'])})
    write_reports(str(tmp_path))
    assert '| 1 | 50.00 | n/a | 50.00 | 70.00 |' in (tmp_path / 'results.md').read_text()
    with open(tmp_path / 'miou.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_plot_leaves_a_gap_for_undefined_mIoU(tmp_path, monkeypatch):
    drawn = {}
    real_savefig = Figure.savefig

    def spy(fig, *args, **kwargs):
        drawn.update((line.get_label(), [float(y) for y in line.get_ydata()])
                     for ax in fig.axes for line in ax.lines
                     if not line.get_label().startswith('_'))   # not the round separators
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, 'savefig', spy)
    plot_miou({'tent': WITH_NA}, str(tmp_path / 'p.png'))
    assert list(drawn) == ['tent', 'tent: clean_val (no update)']
    adapted, forgetting = drawn.values()
    assert adapted[0] == 50.0 and np.isnan(adapted[1]) and adapted[2:] == [52.0, 34.0]
    assert forgetting[0] == 70.0 and np.isnan(forgetting[1])


# ---------------------------------------------------------------- atomic writes

def _fail_fsync(monkeypatch):
    def fsync(fd):
        raise OSError('disk went away')
    monkeypatch.setattr(os, 'fsync', fsync)


RUN = [rec('tent', 1, 'fog', 50.0), rec('tent', 1, 'night', 30.0)]


WRITERS = {'results.csv': write_csv, 'results.md': write_markdown,
           'miou.png': lambda path, records: plot_miou({'tent': records}, path)}


@pytest.mark.parametrize('name', list(WRITERS))
def test_a_failed_report_write_keeps_the_old_report(tmp_path, monkeypatch, name):
    path = str(tmp_path / name)
    WRITERS[name](path, RUN)
    old = (tmp_path / name).read_bytes()
    _fail_fsync(monkeypatch)           # the new content is in the temp file, not yet synced
    with pytest.raises(OSError, match='disk went away'):
        WRITERS[name](path, RUN + [rec('tent', 2, 'fog', 70.0)])
    assert (tmp_path / name).read_bytes() == old
    assert os.listdir(tmp_path) == [name]                      # no temp file left


def test_write_reports_failing_keeps_every_old_report(tmp_path, monkeypatch):
    for r in RUN:
        append_record(str(tmp_path), r)
    write_reports(str(tmp_path))
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)}
    append_record(str(tmp_path), rec('tent', 2, 'fog', 70.0))
    before['results.jsonl'] = (tmp_path / 'results.jsonl').read_bytes()
    _fail_fsync(monkeypatch)
    with pytest.raises(OSError, match='disk went away'):
        write_reports(str(tmp_path))
    assert {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path)} == before


def test_a_kill_while_saving_the_figure_keeps_the_old_png(tmp_path, monkeypatch):
    path = str(tmp_path / 'miou.png')
    plot_miou({'tent': RUN}, path)
    old = (tmp_path / 'miou.png').read_bytes()

    def savefig_dies_midway(fig, fname, **kwargs):
        fname.write(b'\x89PNG partial')
        raise KeyboardInterrupt        # e.g. Ctrl-C / SIGINT while matplotlib writes

    monkeypatch.setattr(Figure, 'savefig', savefig_dies_midway)
    with pytest.raises(KeyboardInterrupt):
        plot_miou({'tent': RUN + [rec('tent', 2, 'fog', 60.0)]}, path)
    assert (tmp_path / 'miou.png').read_bytes() == old
    assert os.listdir(tmp_path) == ['miou.png']


def test_a_failed_rewrite_keeps_results_jsonl(tmp_path, monkeypatch):
    for r in RUN:
        append_record(str(tmp_path), r)
    old = (tmp_path / 'results.jsonl').read_bytes()
    _fail_fsync(monkeypatch)
    with pytest.raises(OSError):
        truncate_records(str(tmp_path), lambda r: False)
    assert (tmp_path / 'results.jsonl').read_bytes() == old
    assert os.listdir(tmp_path) == ['results.jsonl']


# ---------------------------------------------------------------- torn last line

TORN = '{"method": "tent", "round": 2, "domain": "fo'      # cut by a power loss, no newline


def _torn_run(tmp_path):
    for r in RUN:
        append_record(str(tmp_path), r)
    with open(tmp_path / 'results.jsonl', 'a', encoding='utf-8') as f:
        f.write(TORN)
    return str(tmp_path), str(tmp_path / 'results.jsonl')


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_log():
    handler = _Collect()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


def test_torn_last_line_is_an_error_by_default(tmp_path):
    work_dir, path = _torn_run(tmp_path)
    with pytest.raises(ValueError, match=r'results\.jsonl, line 3') as err:
        load_records(work_dir)
    assert path in str(err.value) and '--resume' in str(err.value)


def test_drop_torn_tail_rewrites_the_file(tmp_path, warnings_log):
    work_dir, path = _torn_run(tmp_path)
    os.chmod(path, 0o640)
    dropped = drop_torn_tail(work_dir)
    assert dropped == {'path': path, 'line': 3, 'text': TORN}
    assert load_records(work_dir) == RUN
    assert jsonl_lines(work_dir) == [json.dumps(r) for r in RUN]
    assert (tmp_path / 'results.jsonl').read_text().endswith('}\n')
    assert mode_of(path) == 0o640 and os.listdir(tmp_path) == ['results.jsonl']
    assert any(path in m and 'line 3' in m for m in warnings_log)
    assert drop_torn_tail(work_dir) is None                        # nothing left to drop
    assert drop_torn_tail(str(tmp_path / 'no_run_yet')) is None     # no file: nothing to do
    append_record(work_dir, rec('tent', 2, 'fog', 60.0))
    assert len(load_records(work_dir)) == 3


def test_drop_torn_tail_keeps_a_complete_last_record_without_newline(tmp_path):
    for r in RUN:
        append_record(str(tmp_path), r)
    path = tmp_path / 'results.jsonl'
    path.write_bytes(path.read_bytes()[:-1])          # cut exactly before the newline
    assert drop_torn_tail(str(tmp_path)) is None
    assert path.read_text().endswith('}\n') and load_records(str(tmp_path)) == RUN


def test_torn_tail_drop_option_of_load_and_truncate(tmp_path, warnings_log):
    work_dir, path = _torn_run(tmp_path)
    torn = (tmp_path / 'results.jsonl').read_bytes()
    assert load_records(work_dir, torn_tail='drop') == RUN
    assert (tmp_path / 'results.jsonl').read_bytes() == torn        # loading never rewrites
    assert any(path in m and 'line 3' in m for m in warnings_log)
    truncate_records(work_dir, lambda r: True, torn_tail='drop')
    assert jsonl_lines(work_dir) == [json.dumps(r) for r in RUN]
    with pytest.raises(ValueError, match='torn_tail'):
        load_records(work_dir, torn_tail='ignore')


def test_corrupt_middle_line_stays_an_error(tmp_path):
    for r in RUN:
        append_record(str(tmp_path), r)
    lines = jsonl_lines(tmp_path)
    path = tmp_path / 'results.jsonl'
    path.write_text('\n'.join([lines[0], TORN, lines[1]]) + '\n')
    old = path.read_bytes()
    for call in (lambda: drop_torn_tail(str(tmp_path)),
                 lambda: load_records(str(tmp_path), torn_tail='drop'),
                 lambda: truncate_records(str(tmp_path), lambda r: True, torn_tail='drop')):
        with pytest.raises(ValueError, match=r'results\.jsonl, line 2'):
            call()
    assert path.read_bytes() == old


def test_a_record_that_is_not_torn_but_invalid_is_not_dropped(tmp_path):
    for r in RUN:
        append_record(str(tmp_path), r)
    with open(tmp_path / 'results.jsonl', 'a') as f:
        f.write('{"method": "tent"}\n')                 # parses: a bad record, not a torn one
    with pytest.raises(ValueError, match='line 3.*misses keys'):
        drop_torn_tail(str(tmp_path))


def test_append_after_a_torn_line_refuses(tmp_path):
    work_dir, path = _torn_run(tmp_path)
    with pytest.raises(ValueError, match='drop_torn_tail') as err:
        append_record(work_dir, rec('tent', 2, 'fog', 60.0))
    assert path in str(err.value)
    assert (tmp_path / 'results.jsonl').read_text().endswith(TORN)     # nothing glued on


# ---------------------------------------------------------------- file modes

def test_rewrites_keep_the_file_mode(tmp_path):
    for r in RUN:
        append_record(str(tmp_path), r)
    write_reports(str(tmp_path))
    for name, mode in [('results.jsonl', 0o644), ('results.csv', 0o664),
                       ('results.md', 0o604), ('miou.png', 0o640)]:
        os.chmod(tmp_path / name, mode)
    truncate_records(str(tmp_path), lambda r: True)
    write_reports(str(tmp_path))
    assert {n: mode_of(tmp_path / n) for n in os.listdir(tmp_path)} == {
        'results.jsonl': 0o644, 'results.csv': 0o664, 'results.md': 0o604, 'miou.png': 0o640}


def test_new_reports_get_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        for r in RUN:
            append_record(str(tmp_path), r)
        write_reports(str(tmp_path))
    finally:
        os.umask(old)
    assert {n: mode_of(tmp_path / n) for n in os.listdir(tmp_path)} == dict.fromkeys(
        ['results.jsonl', 'results.csv', 'results.md', 'miou.png'], 0o640)


# ---------------------------------------------------------------- mixed methods, partial runs

def test_one_run_table_refuses_several_methods():
    with pytest.raises(ValueError, match=r"several methods \['tent', 'stag'\]"):
        results_table(RUN + [rec('stag', 1, 'fog', 60.0)])


def test_comparison_notes_an_incomplete_last_round():
    partial = RUN + [rec('tent', 2, 'fog', 54.0)]
    full = [rec('stag', 1, 'fog', 60.0), rec('stag', 1, 'night', 40.0)]
    text = format_comparison({'tent': partial, 'stag': full})
    assert text.splitlines()[1].split() == ['tent', '52.00', '30.00', '44.67', '54.00']
    assert 'tent: round 2 has 1 of 2 domains' in text
    assert 'stag:' not in text
    assert 'has' not in format_comparison({'stag': full})


# ---------------------------------------------------------------- compare_runs default output

def test_compare_runs_writes_next_to_the_first_run(tmp_path):
    runs = []
    for name, base in (('a', 50.0), ('b', 60.0)):
        work_dir = tmp_path / name
        for r in RUN:
            append_record(str(work_dir), {**r, 'mIoU': r['mIoU'] + base - 50.0})
        runs.append(str(work_dir))
    cwd = tmp_path / 'elsewhere'
    cwd.mkdir()
    tool = osp.join(REPO, 'tools', 'compare_runs.py')
    out = subprocess.run([sys.executable, tool, *runs], cwd=cwd, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    figure = osp.join(runs[0], 'compare_miou.png')
    assert osp.isfile(figure) and os.listdir(cwd) == []
    assert f'figure: {figure}' in out.stdout
    help_text = subprocess.run([sys.executable, tool, '--help'], capture_output=True,
                               text=True, timeout=60, check=True).stdout
    assert '<first WORK_DIR>/compare_miou.png' in ' '.join(help_text.split())
    out = subprocess.run([sys.executable, tool, *runs, '--out', 'figs/c.png'], cwd=cwd,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert osp.isfile(cwd / 'figs' / 'c.png')
