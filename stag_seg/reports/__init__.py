"""Per-domain mIoU reports: incremental results.jsonl, tables (csv/md/text) and plots."""
from stag_seg.reports.plots import plot_miou
from stag_seg.reports.records import (
    RESULTS_FILE,
    append_record,
    group_by_method,
    is_adapted,
    load_records,
    load_runs,
    truncate_records,
)
from stag_seg.reports.summary import write_reports
from stag_seg.reports.tables import (
    comparison_table,
    format_comparison,
    format_table,
    results_table,
    write_csv,
    write_markdown,
)

__all__ = [
    'RESULTS_FILE', 'append_record', 'comparison_table', 'format_comparison', 'format_table',
    'group_by_method', 'is_adapted', 'load_records', 'load_runs', 'plot_miou', 'results_table',
    'truncate_records', 'write_csv', 'write_markdown', 'write_reports'
]
