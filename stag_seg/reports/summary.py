"""Regenerate a run's results.csv, results.md and miou.png from its results.jsonl."""
from __future__ import annotations

import os.path as osp

from stag_seg.reports.plots import plot_miou
from stag_seg.reports.records import RESULTS_FILE, group_by_method, load_records
from stag_seg.reports.tables import write_csv, write_markdown


def write_reports(work_dir: str) -> None:
    """(Re)write results.csv, results.md and miou.png in ``work_dir`` from results.jsonl.

    Each file is replaced atomically: a kill leaves the previous complete version. Raises
    ValueError naming the file if it holds records of several methods.
    """
    path = osp.join(work_dir, RESULTS_FILE)
    records = load_records(path)
    methods = list(group_by_method(records))
    if len(methods) > 1:
        raise ValueError(f'{path} holds records of several methods {methods}; a work dir '
                         'holds one run (use a fresh work dir per method)')
    write_csv(osp.join(work_dir, 'results.csv'), records)
    write_markdown(osp.join(work_dir, 'results.md'), records)
    plot_miou(group_by_method(records), osp.join(work_dir, 'miou.png'))
