"""What a step, the loop and start-up cost: the engine's own code timed from outside.

Modules, one job each: ``variants`` (what is compared), ``method_configs`` (each method's
options from its shipped stream config), ``batches`` (each variant's batch through its
config's pipeline: CoTTA's views), ``calibration`` (a random classifier made confident enough
for EATA's and SAR's filters), ``fixtures`` (batches, 1080p samples, an ACDC tree of
full-resolution PNGs), ``paths``, ``timers`` (synchronised timers, phase timers wrapping
engine methods), ``step_timing`` (TTAAdapter.step per variant, interleaved), ``memory``
(persistent bytes, step peak, bytes at backward start), ``stag_term`` (the STAG term alone),
``loop_timing`` (the engine loop over a real-resolution stream, split by phase),
``postprocess_timing`` (full-resolution post-processing + scoring on CPU), ``startup`` (Runner
build with and without yapf), ``report`` (printout and targets), ``run`` (all of it).
"""
from stag_seg.benchmark.run import (
    DEFAULT_CONFIGS,
    DEFAULT_LATER_METHODS,
    DEFAULT_LOOP_IMAGES,
    DEFAULT_LOOP_PRECISIONS,
    DEFAULT_LOOP_SIZE,
    DEFAULT_SIZE,
    DEFAULT_SPEED,
    DEFAULT_STAG_METHODS,
    DEFAULT_STEPS,
    DEFAULT_THREADS,
    DEFAULT_VIEW_STEPS,
    DEFAULT_VIEW_WARMUP,
    DEFAULT_WARMUP,
    run_benchmark,
)

__all__ = ['DEFAULT_CONFIGS', 'DEFAULT_LATER_METHODS', 'DEFAULT_LOOP_IMAGES',
           'DEFAULT_LOOP_PRECISIONS', 'DEFAULT_LOOP_SIZE', 'DEFAULT_SIZE', 'DEFAULT_SPEED',
           'DEFAULT_STAG_METHODS', 'DEFAULT_STEPS', 'DEFAULT_THREADS', 'DEFAULT_VIEW_STEPS',
           'DEFAULT_VIEW_WARMUP', 'DEFAULT_WARMUP', 'run_benchmark']
