"""Sweeps: many ``tools/test_tta.py`` runs (methods x regimes x grid x seeds) on Ray or serially,
with resumable bookkeeping per run and one aggregated report (seed means, paired differences)."""
from stag_seg.sweep.aggregate import RunScores, paired_differences, run_scores, summarize
from stag_seg.sweep.driver import SweepError, SweepInterrupted, run_sweep
from stag_seg.sweep.spec import Run, SweepSpec, SweepSpecError, load_spec
from stag_seg.sweep.stats import mean_std, t_interval, t_quantile

__all__ = [
    'Run', 'RunScores', 'SweepError', 'SweepInterrupted', 'SweepSpec', 'SweepSpecError',
    'load_spec', 'mean_std', 'paired_differences', 'run_scores', 'run_sweep', 'summarize',
    't_interval', 't_quantile'
]
