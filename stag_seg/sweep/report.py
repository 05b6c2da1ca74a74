"""The sweep report (report.md, report.csv, runs.csv, report.png; each written atomically) and the
running progress table."""
from __future__ import annotations

import csv
import io
import os.path as osp
from collections.abc import Mapping, Sequence

from stag_seg.files import write_atomic, write_text_atomic
from stag_seg.sweep.aggregate import (
    METRIC_TITLES,
    METRICS,
    CellSummary,
    PairedSummary,
    RunScores,
    identical_cells,
    paired_differences,
    summarize,
)
from stag_seg.sweep.spec import Run, SweepSpec, methods_and_regimes
from stag_seg.sweep.stats import Interval, Stat

REPORT_FILES = ('report.md', 'report.csv', 'runs.csv', 'report.png')
DASH = '–'


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return DASH
    return f'{value:+.2f}' if signed else f'{value:.2f}'


def _stat(stat: Stat, seeds: int) -> str:
    if stat.mean is None:
        return DASH
    text = _num(stat.mean) + ('' if stat.std is None else f' ± {stat.std:.2f}')
    return text if stat.n == seeds else f'{text} (n={stat.n})'


def _interval(iv: Interval, pairs: int) -> str:
    if iv.mean is None:
        return DASH
    text = _num(iv.mean, signed=True)
    if iv.low is not None:
        text += f' [{_num(iv.low, True)}, {_num(iv.high, True)}]'
    return text if iv.n == pairs else f'{text} (n={iv.n})'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return lines + ['| ' + ' | '.join(row) + ' |' for row in rows]


def progress_table(runs: Sequence[Run], scores: Mapping[str, RunScores]) -> str:
    """Plain-text regime x method table of the mean mIoU over finished seeds, ``mean (n)``."""
    methods, regimes = methods_and_regimes(runs)
    cells = {(c.regime, c.method): c for c in summarize(runs, scores)}
    rows = [['regime', *methods]]
    for regime in regimes:
        row = [regime]
        for method in methods:
            stat = cells[(regime, method)].stats['mean_miou']
            row.append(DASH if stat.mean is None else f'{stat.mean:.2f} ({stat.n})')
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ['  '.join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return '\n'.join(line.rstrip() for line in lines)


def markdown(spec: SweepSpec, cells: Sequence[CellSummary], pairs: Sequence[PairedSummary],
             scores: Mapping[str, RunScores], unfinished: Mapping[str, str]) -> str:
    """The report's markdown text; ``unfinished`` maps run names to a status line."""
    lines = [f'# Sweep report: {spec.name}', '',
             f'Spec `{spec.path}`: {len(scores)} of {len(spec.runs)} runs finished. mIoU in %, '
             'mean ± sample std (ddof=1) over stream seeds. *mean mIoU*: all adapted (round, '
             'domain) records; *last round*: the last round\'s adapted domains; *no-update*: '
             'the forgetting check (`adapted: false`) after the last round.', '',
             '## Methods x regimes', '']
    lines += _table(['regime', 'method', 'seeds', *(METRIC_TITLES[m] for m in METRICS)],
                    [[c.regime, c.method, str(c.seeds),
                      *(_stat(c.stats[m], c.seeds) for m in METRICS)] for c in cells])
    if pairs:
        lines += ['', '## Paired difference to the baseline (same seed and regime), '
                  'mean [95% t-interval]', '']
        rows = []
        for p in pairs:
            n = max(iv.n for iv in p.diffs.values())
            rows.append([p.regime, p.method, p.baseline, str(n),
                         *(_interval(p.diffs[m], n) for m in METRICS)])
        lines += _table(['regime', 'method', 'baseline', 'pairs',
                         *(f'Δ {METRIC_TITLES[m]}' for m in METRICS)], rows)
    same = identical_cells(spec.runs, scores)
    if same:
        names = ', '.join(f'{method} ({regime})' for regime, method in same)
        lines += ['', f'Note: identical across seeds (every record of every seed the same): '
                  f'{names}. The stream seed changes nothing in those runs (e.g. a sequential '
                  'stream of a deterministic method), so their seeds are not replicates and '
                  'their intervals carry no evidence.']
    if unfinished:
        lines += ['', '## Runs not finished', '']
        lines += [f'- `{name}`: {status}' for name, status in unfinished.items()]
    return '\n'.join(lines) + '\n'


def _csv(rows: Sequence[Sequence]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator='\n').writerows(rows)
    return buf.getvalue()


def summary_csv(cells: Sequence[CellSummary], pairs: Sequence[PairedSummary]) -> str:
    """Long format: one row per (table, regime, method, metric); blank = undefined."""
    rows: list[list] = [['table', 'regime', 'method', 'baseline', 'metric', 'n', 'mean', 'std',
                         'ci95_low', 'ci95_high']]
    blank = lambda v: '' if v is None else v  # noqa: E731
    for c in cells:
        for m in METRICS:
            s = c.stats[m]
            rows.append(['summary', c.regime, c.method, '', m, s.n, blank(s.mean),
                         blank(s.std), '', ''])
    for p in pairs:
        for m in METRICS:
            iv = p.diffs[m]
            rows.append(['paired_difference', p.regime, p.method, p.baseline, m, iv.n,
                         blank(iv.mean), '', blank(iv.low), blank(iv.high)])
    return _csv(rows)


def runs_csv(runs: Sequence[Run], scores: Mapping[str, RunScores]) -> str:
    rows: list[list] = [['run', 'method', 'regime', 'seed', 'finished', *METRICS]]
    for r in runs:
        s = scores.get(r.name)
        values = ['' if s is None or getattr(s, m) is None else getattr(s, m) for m in METRICS]
        rows.append([r.name, r.method, r.regime, r.seed, int(s is not None), *values])
    return _csv(rows)


def plot(cells: Sequence[CellSummary], path: str) -> None:
    """Bars of the seed mean (error bars: sample std) per regime and method, one panel per
    metric that has values."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    methods = list(dict.fromkeys(c.method for c in cells))
    regimes = list(dict.fromkeys(c.regime for c in cells))
    metrics = [m for m in METRICS if any(c.stats[m].mean is not None for c in cells)] or \
        ['mean_miou']
    fig = Figure(figsize=(max(6.0, 1.2 * len(regimes) * len(metrics) + 2), 4.0))
    FigureCanvasAgg(fig)
    width = 0.8 / max(1, len(methods))
    by_key = {(c.regime, c.method): c for c in cells}
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        for j, method in enumerate(methods):
            stats = [by_key[(r, method)].stats[metric] for r in regimes]
            xs = [k + (j - (len(methods) - 1) / 2) * width for k in range(len(regimes))]
            ax.bar(xs, [s.mean or 0.0 for s in stats], width,
                   yerr=[s.std or 0.0 for s in stats], capsize=3, label=method)
        ax.set_xticks(range(len(regimes)))
        ax.set_xticklabels(regimes, rotation=30, ha='right', fontsize=8)
        ax.set_title(METRIC_TITLES[metric], fontsize=9)
        ax.set_ylabel('mIoU (%)')
        if i == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, format='png', dpi=100))


def write_report(out_dir: str, spec: SweepSpec, scores: Mapping[str, RunScores],
                 unfinished: Mapping[str, str]) -> list[str]:
    """Write report.md, report.csv, runs.csv and report.png under ``out_dir``; their paths."""
    cells = summarize(spec.runs, scores)
    pairs = paired_differences(spec.runs, scores, spec.baselines)
    paths = [osp.join(out_dir, name) for name in REPORT_FILES]
    write_text_atomic(paths[0], markdown(spec, cells, pairs, scores, unfinished))
    write_text_atomic(paths[1], summary_csv(cells, pairs))
    write_text_atomic(paths[2], runs_csv(spec.runs, scores))
    plot(cells, paths[3])
    return paths
