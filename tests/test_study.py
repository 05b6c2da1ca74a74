"""The STAG study's rule for the defaults: best worst-case paired gain, ties by mean gain."""
from stag_seg.sweep.aggregate import PairedSummary
from stag_seg.sweep.stats import Interval
from stag_seg.sweep.study import SettingGains, choose_default, gains_table, setting_gains


def _pair(method, regime, gain):
    return PairedSummary(method, 'tent', regime, {
        'mean_miou': Interval(3, gain, None, None), 'last_round': Interval(3, 0.0, None, None),
        'forgetting': Interval(3, 0.0, None, None)})


def test_the_best_worst_case_wins_not_the_best_mean():
    pairs = [_pair('a', 'r1', 1.0), _pair('a', 'r2', -0.5),      # mean +0.25, worst -0.5
             _pair('b', 'r1', 0.2), _pair('b', 'r2', 0.1),       # mean +0.15, worst +0.1
             _pair('c', 'r1', 0.3)]                              # a regime missing: left out
    settings = setting_gains(pairs)
    assert [s.method for s in settings] == ['a', 'b']
    assert choose_default(settings).method == 'b'


def test_ties_within_005_are_ranked_by_mean_gain():
    settings = [SettingGains('x', {'r1': 0.10, 'r2': 0.90}),    # worst 0.10, mean 0.50
                SettingGains('y', {'r1': 0.14, 'r2': 0.20}),    # worst 0.14, mean 0.17
                SettingGains('z', {'r1': 0.05, 'r2': 2.00})]    # worst 0.05: not a contender
    assert choose_default(settings).method == 'x'
    table = gains_table(settings, choose_default(settings))
    assert table.splitlines()[2].startswith('| y |') and '| **x** |' in table


def make_sweep(tmp_path, baseline="'tent'", skip=(), outlier=False):
    """A finished sweep (tent, stag-a, stag-b x regimes r1, r2 x seeds 0, 1) of synthetic
    records, the same on both seeds: stag-a wins r1 by far but loses r2; stag-b gains a
    little in both, so it has the better worst case. Runs named in ``skip`` never finished;
    ``outlier``: stag-a's r2 seed 0 scores far above the rest."""
    import json
    import os.path as osp

    from stag_seg.sweep import load_spec
    from stag_seg.sweep.worker import DONE_FILE

    repo = osp.dirname(osp.dirname(osp.abspath(__file__)))
    config = osp.join(repo, 'configs', 'demo', 'segformer_mini_demo-acdc_tent-stag.py')
    spec = tmp_path / 'spec.py'
    spec.write_text(
        f"methods = {{m: dict(config={config!r}) for m in ('tent', 'stag-a', 'stag-b')}}\n"
        f"baseline = {baseline}\nregimes = dict(r1=dict(), r2=dict())\nseeds = [0, 1]\n")
    miou = {('tent', 'r1'): 20.0, ('tent', 'r2'): 20.0, ('stag-a', 'r1'): 22.0,
            ('stag-a', 'r2'): 19.5, ('stag-b', 'r1'): 20.3, ('stag-b', 'r2'): 20.1}
    for run in load_spec(str(spec)).runs:
        if run.name in skip:
            continue
        work = tmp_path / 'out' / run.name
        work.mkdir(parents=True)
        (work / DONE_FILE).write_text('{}')
        value = miou[(run.method, run.regime)]
        if outlier and run.name == 'stag-a__r2__seed0':
            value = 30.0               # an outlier that would decide on its own
        records = [dict(method=run.method, round=1, domain=d, num_images=1, mIoU=value,
                        mAcc=0.0, aAcc=0.0, IoU={}, skipped_updates=0) for d in ('fog', 'rain')]
        (work / 'results.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
    return str(spec), str(tmp_path / 'out')


def test_defaults_report_reads_a_finished_sweep_and_applies_the_rule(tmp_path):
    from stag_seg.sweep.study import defaults_report

    spec, out = make_sweep(tmp_path, skip=())
    text = defaults_report(spec, out)
    assert 'Chosen by the rule: **stag-b** (worst case +0.10, mean +0.20)' in text
    assert '+0.30 (n=2)' in text                               # seed pairs per cell
    assert (tmp_path / 'out' / 'defaults.md').read_text() == text


def test_an_incomplete_sweep_is_refused_or_decided_among_complete_settings(tmp_path):
    import pytest

    from stag_seg.sweep.study import defaults_report

    # stag-a's r2 cell has one seed (an outlier) against two of its baseline's: with it,
    # stag-a would win on a single seed
    spec, out = make_sweep(tmp_path, skip=('stag-a__r2__seed1',), outlier=True)
    with pytest.raises(ValueError, match=r'incomplete sweep: 1 of 2 settings .*first: stag-a, '
                       r'r2: seeds \[0\], tent \[0, 1\]'):
        defaults_report(spec, out)
    text = defaults_report(spec, out, partial=True)
    assert 'Chosen by the rule: **stag-b**' in text and '| stag-a |' not in text
    assert 'INCOMPLETE: left out of the choice' in text and '- stag-a: r2: seeds [0]' in text


def test_study_names_each_problem_apart(tmp_path):
    import pytest

    from stag_seg.sweep.study import defaults_report

    spec, out = make_sweep(tmp_path)
    with pytest.raises(ValueError, match="no method name starts with 'tent-stag-'"):
        defaults_report(spec, out, prefix='tent-stag-')
    with pytest.raises(ValueError, match='no such directory'):
        defaults_report(spec, out + '_typo')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='no finished run of the sweep spec'):
        defaults_report(spec, str(tmp_path / 'empty'))
    (tmp_path / 'nb').mkdir()
    spec2, out2 = make_sweep(tmp_path / 'nb', baseline='None')
    with pytest.raises(ValueError, match='stag-a, stag-b have no baseline'):
        defaults_report(spec2, out2)
