"""Sweep aggregation: per-run scores from results.jsonl, then seed statistics per method x regime
and paired differences to the baseline (same seed, same regime)."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stag_seg.reports.tables import stream_scores
from stag_seg.sweep.spec import Run, methods_and_regimes
from stag_seg.sweep.stats import Interval, Stat, mean_std, t_interval

METRICS = ('mean_miou', 'last_round', 'forgetting')
METRIC_TITLES = {'mean_miou': 'mean mIoU', 'last_round': 'last round',
                 'forgetting': 'no-update mIoU after last round'}


@dataclass(frozen=True)
class RunScores:
    """A run's scores (mIoU, %): None where the run has no such (non-null) record.

    mean_miou: mean over all adapted (round, domain) records; last_round: mean over the last
    round's adapted domains; forgetting: mean over the no-update (``adapted: false``) records of
    that last round. records_digest: a hash of all the run's records (every value as stored),
    to tell runs whose results are identical.
    """
    mean_miou: float | None
    last_round: float | None
    forgetting: float | None
    records_digest: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class CellSummary:
    """Seed statistics of one method x regime cell; ``seeds`` = finished runs in the cell."""
    method: str
    regime: str
    seeds: int
    stats: dict[str, Stat]


@dataclass(frozen=True)
class PairedSummary:
    """Mean paired difference ``method - baseline`` over seeds, with a 95% t-interval."""
    method: str
    baseline: str
    regime: str
    diffs: dict[str, Interval]


def run_scores(records: Sequence[dict]) -> RunScores:
    """Scores of one run's records, as its tables compute them (not rounded)."""
    digest = hashlib.sha256(json.dumps(list(records), sort_keys=True).encode()).hexdigest()
    return RunScores(*stream_scores(records), records_digest=digest)


def identical_cells(runs: Sequence[Run], scores: Mapping[str, RunScores]
                    ) -> list[tuple[str, str]]:
    """(regime, method) cells with two or more finished seeds whose records are all identical:
    there the stream seed changed nothing."""
    digests: dict[tuple[str, str], list[str | None]] = {}
    for r in runs:
        if r.name in scores:
            digests.setdefault((r.regime, r.method), []).append(scores[r.name].records_digest)
    return [cell for cell, found in digests.items()
            if len(found) >= 2 and found[0] is not None and len(set(found)) == 1]


def summarize(runs: Sequence[Run], scores: Mapping[str, RunScores]) -> list[CellSummary]:
    """Mean and sample std over seeds per method x regime, from the runs that have scores."""
    methods, regimes = methods_and_regimes(runs)
    out = []
    for regime in regimes:
        for method in methods:
            cell = [scores[r.name] for r in runs
                    if r.method == method and r.regime == regime and r.name in scores]
            out.append(CellSummary(method, regime, len(cell), {
                m: mean_std([getattr(s, m) for s in cell if getattr(s, m) is not None])
                for m in METRICS}))
    return out


def paired_differences(runs: Sequence[Run], scores: Mapping[str, RunScores],
                       baselines: str | Mapping[str, str | None] | None,
                       level: float = 0.95) -> list[PairedSummary]:
    """Per paired method x regime: seeds where both runs have a score, ``level`` t-interval
    of the difference (method - its baseline). ``baselines``: one baseline for every other
    method, or method -> baseline (None: not paired)."""
    methods, regimes = methods_and_regimes(runs)
    if baselines is None:
        return []
    if isinstance(baselines, str):
        baselines = {m: None if m == baselines else baselines for m in methods}
    by_key = {(r.method, r.regime, r.seed): r.name for r in runs}
    out = []
    for regime in regimes:
        for method in methods:
            baseline = baselines.get(method)
            if baseline is None:
                continue
            diffs = {}
            for m in METRICS:
                values = []
                for r in runs:
                    if r.method != method or r.regime != regime:
                        continue
                    base = by_key.get((baseline, regime, r.seed))
                    if r.name in scores and base in scores:
                        a, b = getattr(scores[r.name], m), getattr(scores[base], m)
                        if a is not None and b is not None:
                            values.append(a - b)
                diffs[m] = t_interval(values, level)
            out.append(PairedSummary(method, baseline, regime, diffs))
    return out
