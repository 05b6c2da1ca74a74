"""Per-domain mIoU reports: incremental results.jsonl, tables (csv/md/text) and plots."""
from stag_seg.reports.atomic import atomic_write
from stag_seg.reports.plots import plot_miou
from stag_seg.reports.records import (
    RESULTS_FILE,
    append_record,
    drop_torn_tail,
    group_by_method,
    is_adapted,
    load_records,
    load_runs,
    normalize_record,
    rewrite_records,
    truncate_records,
)
from stag_seg.reports.summary import write_reports
from stag_seg.reports.tables import (
    NA,
    comparison_table,
    format_comparison,
    format_table,
    incomplete_last_rounds,
    results_table,
    run_summary,
    shape_mismatches,
    stream_shape,
    write_csv,
    write_markdown,
)

__all__ = [
    'NA', 'RESULTS_FILE', 'append_record', 'atomic_write', 'comparison_table', 'drop_torn_tail',
    'format_comparison', 'format_table', 'group_by_method', 'incomplete_last_rounds',
    'is_adapted', 'load_records', 'load_runs', 'normalize_record', 'plot_miou',
    'results_table', 'rewrite_records', 'run_summary', 'shape_mismatches', 'stream_shape',
    'truncate_records', 'write_csv', 'write_markdown', 'write_reports'
]
