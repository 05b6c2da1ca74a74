"""The STAG study's rule for the defaults: best worst-case paired gain, ties by mean gain."""
from stag_seg.demo.study import SettingGains, choose_default, gains_table, setting_gains
from stag_seg.sweep.aggregate import PairedSummary
from stag_seg.sweep.stats import Interval


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
