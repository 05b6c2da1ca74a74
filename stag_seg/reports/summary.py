"""Regenerate a run's results.csv, results.md and miou.png from its results.jsonl."""
import os.path as osp

from stag_seg.reports.plots import plot_miou
from stag_seg.reports.records import RESULTS_FILE, group_by_method, load_records
from stag_seg.reports.tables import write_csv, write_markdown


def write_reports(work_dir: str) -> None:
    """(Re)write results.csv, results.md and miou.png in ``work_dir`` from results.jsonl."""
    records = load_records(osp.join(work_dir, RESULTS_FILE))
    write_csv(osp.join(work_dir, 'results.csv'), records)
    write_markdown(osp.join(work_dir, 'results.md'), records)
    plot_miou(group_by_method(records), osp.join(work_dir, 'miou.png'))
