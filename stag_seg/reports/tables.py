"""Rounds x domains mIoU tables (CoTTA Table 5 layout) and a cross-run comparison table."""
from __future__ import annotations

import csv
import os
import os.path as osp
from collections.abc import Sequence
from typing import Union

from stag_seg.reports.records import is_adapted

Cell = Union[str, int, float, None]
Table = tuple[list[str], list[list[Cell]]]
NO_UPDATE = ' (no update)'


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(sum(vals) / len(vals), 2) if vals else None


def _index(records: Sequence[dict]):
    """Domains (adapted, no-update) in order of first appearance, rounds, and mIoU cells."""
    adapted: list[str] = []
    frozen: list[str] = []
    cells: dict[tuple[int, str, bool], float] = {}
    for r in records:
        flag = is_adapted(r)
        names = adapted if flag else frozen
        if r['domain'] not in names:
            names.append(r['domain'])
        cells[(r['round'], r['domain'], flag)] = r['mIoU']  # a later duplicate wins
    rounds = sorted({r['round'] for r in records})
    return adapted, frozen, rounds, cells


def results_table(records: Sequence[dict]) -> Table:
    """Rows = rounds + a "mean" row; columns = domains, row "mean", then no-update columns.

    Means cover adapted domains only; the bottom-right cell is the mean of all adapted cells.
    """
    domains, frozen, rounds, cells = _index(records)
    header = ['round', *domains, 'mean', *[d + NO_UPDATE for d in frozen]]
    rows: list[list[Cell]] = []
    for rnd in rounds:
        vals = [cells.get((rnd, d, True)) for d in domains]
        rows.append([rnd, *vals, _mean(vals), *[cells.get((rnd, d, False)) for d in frozen]])
    col_means = [_mean([cells.get((rnd, d, True)) for rnd in rounds]) for d in domains]
    overall = _mean([v for (_, _, flag), v in cells.items() if flag])
    frozen_means = [_mean([cells.get((rnd, d, False)) for rnd in rounds]) for d in frozen]
    rows.append(['mean', *col_means, overall, *frozen_means])
    return header, rows


def comparison_table(records_by_method: dict[str, Sequence[dict]]) -> Table:
    """Rows = methods; columns = per-domain mean over rounds, overall mean, last-round mean,
    then no-update (forgetting) columns."""
    domains: list[str] = []
    frozen: list[str] = []
    indexed = {}
    for method, records in records_by_method.items():
        doms, frz, rounds, cells = _index(records)
        domains += [d for d in doms if d not in domains]
        frozen += [d for d in frz if d not in frozen]
        indexed[method] = (rounds, cells)
    header = ['method', *domains, 'mean', 'last round', *[d + NO_UPDATE for d in frozen]]
    rows: list[list[Cell]] = []
    for method, (rounds, cells) in indexed.items():
        per_domain = [_mean([cells.get((rnd, d, True)) for rnd in rounds]) for d in domains]
        overall = _mean([v for (_, _, flag), v in cells.items() if flag])
        adapted_rounds = [rnd for (rnd, _, flag) in cells if flag]
        last = _mean([v for (rnd, _, flag), v in cells.items()
                      if flag and rnd == max(adapted_rounds)]) if adapted_rounds else None
        forget = [_mean([cells.get((rnd, d, False)) for rnd in rounds]) for d in frozen]
        rows.append([method, *per_domain, overall, last, *forget])
    return header, rows


def _fmt(value: Cell, missing: str = '-') -> str:
    if value is None:
        return missing
    if isinstance(value, float):
        return f'{value:.2f}'
    return str(value)


def format_rows(header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """Aligned plain text: first column left-aligned, the others right-aligned."""
    text = [list(header)] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]
    lines = []
    for row in text:
        cells = [c.ljust(w) if i == 0 else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        lines.append('  '.join(cells).rstrip())
    return '\n'.join(lines)


def format_table(records: Sequence[dict]) -> str:
    """The rounds x domains mIoU table of one run as aligned plain text."""
    return format_rows(*results_table(records))


def format_comparison(records_by_method: dict[str, Sequence[dict]]) -> str:
    """The methods x domains comparison table as aligned plain text."""
    return format_rows(*comparison_table(records_by_method))


def _ensure_parent(path: str) -> None:
    parent = osp.dirname(osp.abspath(path))
    os.makedirs(parent, exist_ok=True)


def write_csv(path: str, records: Sequence[dict]) -> None:
    """Write the rounds x domains mIoU table as CSV (missing cells empty)."""
    header, rows = results_table(records)
    _ensure_parent(path)
    with open(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[_fmt(c, missing='') for c in row] for row in rows])


def write_markdown(path: str, records: Sequence[dict], title: str | None = None) -> None:
    """Write the rounds x domains mIoU table as a Markdown document."""
    header, rows = results_table(records)
    if title is None:
        methods = ', '.join(dict.fromkeys(r['method'] for r in records)) or 'results'
        title = f'{methods}: mIoU (%) per round and domain'
    lines = [f'# {title}', '', '| ' + ' | '.join(header) + ' |',
             '|' + '|'.join([':---'] + ['---:'] * (len(header) - 1)) + '|']
    lines += ['| ' + ' | '.join(_fmt(c) for c in row) + ' |' for row in rows]
    if any(h.endswith(NO_UPDATE) for h in header):
        note = (f'Columns marked "{NO_UPDATE.strip()}" are forgetting checks scored without '
                'updates; they are excluded from the means.')
        lines += ['', note]
    _ensure_parent(path)
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
