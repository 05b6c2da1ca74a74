"""Rounds x domains mIoU tables (CoTTA Table 5 layout) and a cross-run comparison table.

A record whose mIoU is null (undefined: no labelled pixel) is a cell shown "n/a" (empty in
csv), left out of every mean, with a note under the table; a missing record is "-".
"""
from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from typing import Union

from stag_seg.reports.atomic import atomic_write
from stag_seg.reports.records import is_adapted


class NotAvailable:
    """The value of an undefined metric (null in results.jsonl); use the singleton ``NA``."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotAvailable)

    def __hash__(self) -> int:
        return hash(NotAvailable)

    def __repr__(self) -> str:
        return 'NA'


NA = NotAvailable()
Cell = Union[str, int, float, NotAvailable, None]
Table = tuple[list[str], list[list[Cell]]]
NO_UPDATE = ' (no update)'
NA_NOTE = ('n/a: no labelled pixel (every label is the ignore index), so the mIoU is '
           'undefined; excluded from means.')


def _mean(values: Sequence[Cell], ndigits: int | None = 2) -> Cell:
    """Mean of the numbers in ``values`` (rounded to ``ndigits``; None: not rounded); NA if
    there are only NA cells, None if there is nothing."""
    vals = [v for v in values if isinstance(v, (int, float))]
    if vals:
        mean = math.fsum(vals) / len(vals)
        return mean if ndigits is None else round(mean, ndigits)
    return NA if any(v == NA for v in values) else None


def _index(records: Sequence[dict]):
    """Domains (adapted, no-update) in order of first appearance, rounds, and mIoU cells."""
    adapted: list[str] = []
    frozen: list[str] = []
    cells: dict[tuple[int, str, bool], Cell] = {}
    for r in records:
        flag = is_adapted(r)
        names = adapted if flag else frozen
        if r['domain'] not in names:
            names.append(r['domain'])
        # a later duplicate wins; null (undefined) is NA
        cells[(r['round'], r['domain'], flag)] = NA if r['mIoU'] is None else r['mIoU']
    rounds = sorted({r['round'] for r in records})
    return adapted, frozen, rounds, cells


def _overall_and_last(cells: dict, ndigits: int | None = 2) -> tuple[Cell, Cell, int | None]:
    """Mean of all adapted cells, mean of the last adapted round's cells, and that round."""
    overall = _mean([v for (_, _, flag), v in cells.items() if flag], ndigits)
    adapted_rounds = [rnd for (rnd, _, flag) in cells if flag]
    if not adapted_rounds:
        return overall, None, None
    last_round = max(adapted_rounds)
    last = _mean([v for (rnd, _, flag), v in cells.items() if flag and rnd == last_round],
                 ndigits)
    return overall, last, last_round


def stream_scores(records: Sequence[dict]) -> tuple[float | None, float | None, float | None]:
    """A run's three scores, not rounded (None where undefined or absent): the mean of all
    adapted cells, the mean of the last adapted round's cells, and the mean of that round's
    no-update (forgetting) cells. A later duplicate record wins; null cells are left out."""
    cells = _index(records)[3]
    overall, last, last_round = _overall_and_last(cells, ndigits=None)
    forgetting = _mean([v for (rnd, _, flag), v in cells.items()
                        if not flag and rnd == last_round], ndigits=None)
    return tuple(None if v == NA else v for v in (overall, last, forgetting))


def _single_method(records: Sequence[dict]) -> None:
    methods = list(dict.fromkeys(r['method'] for r in records))
    if len(methods) > 1:
        raise ValueError(f'records hold several methods {methods}; a results table shows one '
                         'run (split them with group_by_method, or compare them with '
                         'comparison_table)')


def results_table(records: Sequence[dict]) -> Table:
    """Rows = rounds + a "mean" row; columns = domains, row "mean", then no-update columns.

    Means cover adapted domains only; the bottom-right cell is the mean of all adapted cells.
    NA (undefined) cells are left out of the means. Raises ValueError if ``records`` hold
    more than one method.
    """
    _single_method(records)
    domains, frozen, rounds, cells = _index(records)
    header = ['round', *domains, 'mean', *[d + NO_UPDATE for d in frozen]]
    rows: list[list[Cell]] = []
    for rnd in rounds:
        vals = [cells.get((rnd, d, True)) for d in domains]
        rows.append([rnd, *vals, _mean(vals), *[cells.get((rnd, d, False)) for d in frozen]])
    col_means = [_mean([cells.get((rnd, d, True)) for rnd in rounds]) for d in domains]
    overall = _overall_and_last(cells)[0]
    frozen_means = [_mean([cells.get((rnd, d, False)) for rnd in rounds]) for d in frozen]
    rows.append(['mean', *col_means, overall, *frozen_means])
    return header, rows


def comparison_table(records_by_method: dict[str, Sequence[dict]]) -> Table:
    """Rows = methods; columns = per-domain mean over rounds, overall mean, last-round mean,
    then no-update (forgetting) columns. NA (undefined) cells are left out of the means."""
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
        overall, last, _ = _overall_and_last(cells)
        forget = [_mean([cells.get((rnd, d, False)) for rnd in rounds]) for d in frozen]
        rows.append([method, *per_domain, overall, last, *forget])
    return header, rows


def incomplete_last_rounds(records_by_method: dict[str, Sequence[dict]]) -> list[str]:
    """One line per method whose last adapted round lacks some of its adapted domains (a run
    cut off mid-round): its "last round" mean then covers fewer domains than the others'."""
    notes = []
    for method, records in records_by_method.items():
        domains, _, _, cells = _index(records)
        last_round = _overall_and_last(cells)[2]
        if last_round is None:
            continue
        present = sum((last_round, d, True) in cells for d in domains)
        if present < len(domains):
            notes.append(f'{method}: round {last_round} has {present} of {len(domains)} '
                         'domains')
    return notes


def run_summary(records: Sequence[dict]) -> dict:
    """The numbers a run reports at its end, as the tables compute them: ``mIoU`` (mean of all
    adapted cells), ``last_round_mIoU`` and ``skipped_updates`` (sum over adapted records).

    Undefined (null) cells are left out of the means; a mean with nothing left is None. Empty
    dict when there is no adapted record.
    """
    adapted = [r for r in records if is_adapted(r)]
    if not adapted:
        return {}
    overall, last, _ = _overall_and_last(_index(adapted)[3])
    return {'mIoU': None if overall == NA else overall,
            'last_round_mIoU': None if last == NA else last,
            'skipped_updates': int(sum(r['skipped_updates'] for r in adapted))}


def _fmt(value: Cell, missing: str = '-', na: str = 'n/a') -> str:
    if value is None:
        return missing
    if isinstance(value, NotAvailable):
        return na
    if isinstance(value, float):
        return f'{value:.2f}'
    return str(value)


def _has_na(rows: Sequence[Sequence[Cell]]) -> bool:
    return any(isinstance(c, NotAvailable) for row in rows for c in row)


def format_rows(header: Sequence[str], rows: Sequence[Sequence[Cell]],
                notes: Sequence[str] = ()) -> str:
    """Aligned plain text: first column left-aligned, the others right-aligned; then the
    ``notes`` and, if a cell is NA, the n/a note, one per line."""
    text = [list(header)] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(header))]
    lines = []
    for row in text:
        cells = [c.ljust(w) if i == 0 else c.rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=False))]
        lines.append('  '.join(cells).rstrip())
    lines += list(notes)
    if _has_na(rows):
        lines.append(NA_NOTE)
    return '\n'.join(lines)


def format_table(records: Sequence[dict]) -> str:
    """The rounds x domains mIoU table of one run as aligned plain text."""
    return format_rows(*results_table(records))


def stream_shape(records: Sequence[dict]) -> dict:
    """What a run's stream was: its adapted rounds, the images of its first adapted round
    (over the adapted domains), and its adapted domains in order."""
    adapted = [r for r in records if is_adapted(r)]
    rounds = sorted({r['round'] for r in adapted})
    first = {r['domain']: r['num_images'] for r in adapted if rounds and r['round'] == rounds[0]}
    return {'rounds': len(rounds), 'images': sum(first.values()),
            'domains': list(dict.fromkeys(r['domain'] for r in adapted))}


def shape_mismatches(records_by_method: dict[str, Sequence[dict]]) -> list[str]:
    """One line per way in which the runs' streams differ (rounds, images, domains): their
    means then cover different streams."""
    shapes = {m: stream_shape(r) for m, r in records_by_method.items()}
    lines = []
    for key in ('rounds', 'images', 'domains'):
        values = {m: s[key] for m, s in shapes.items()}
        if len({repr(v) for v in values.values()}) > 1:
            shown = ', '.join(f'{m} {"/".join(v) if key == "domains" else v}'
                              for m, v in values.items())
            lines.append(f'the runs differ in {key} ({shown}): their means cover different '
                         'streams')
    return lines


def format_comparison(records_by_method: dict[str, Sequence[dict]],
                      shapes: bool = False) -> str:
    """The methods x domains comparison table as aligned plain text, with a note naming each
    run whose last round is incomplete; ``shapes``: with each run's rounds and images (per
    round) after its name."""
    notes = incomplete_last_rounds(records_by_method)
    if notes:
        notes = ['incomplete last round (its "last round" mean covers fewer domains): '
                 + '; '.join(notes)]
    header, rows = comparison_table(records_by_method)
    if shapes:
        header = [header[0], 'rounds', 'images', *header[1:]]
        rows = [[row[0], *(stream_shape(records_by_method[row[0]])[k]
                           for k in ('rounds', 'images')), *row[1:]] for row in rows]
    return format_rows(header, rows, notes=notes)


def write_csv(path: str, records: Sequence[dict]) -> None:
    """Atomically write the rounds x domains mIoU table as CSV (missing and n/a cells
    empty)."""
    header, rows = results_table(records)
    with atomic_write(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[_fmt(c, missing='', na='') for c in row] for row in rows])


def write_markdown(path: str, records: Sequence[dict], title: str | None = None) -> None:
    """Atomically write the rounds x domains mIoU table as a Markdown document."""
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
    if _has_na(rows):
        lines += ['', NA_NOTE]
    with atomic_write(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(lines) + '\n')
