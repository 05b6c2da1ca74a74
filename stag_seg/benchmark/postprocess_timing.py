"""Full-resolution post-processing and scoring of one image on CPU threads: the engine's own
``TTAAdapter.postprocess`` and ``DomainScorer.add``."""
from __future__ import annotations

import statistics
from types import SimpleNamespace

import torch

from stag_seg.benchmark.fixtures import FULL_RESOLUTION, scored_sample
from stag_seg.benchmark.timers import elapsed, stamp
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.iou_metric import StreamIoUMetric
from stag_seg.engine.scorer import DomainScorer
from stag_seg.step.postprocess import ResizeBuffer


def time_postprocess_and_scoring(input_size: tuple[int, int],
                                 out_size: tuple[int, int] = FULL_RESOLUTION,
                                 num_classes: int = 19, reps: int = 5, threads: int = 1,
                                 align_corners: bool = False) -> dict:
    """Median ms, after one warm-up, of turning (1, K, h, w) logits at ``input_size`` into
    the prediction at ``out_size`` (crop, resize, argmax: ``TTAAdapter.postprocess``) and of
    scoring it against a label of that size (label check and areas: ``DomainScorer.add``),
    with ``threads`` torch threads on CPU. Read on the process's CPU clock when ``threads``
    is 1 (the work done, whatever the machine's load), else on the wall clock; the wall
    total is kept too."""
    clock = 'cpu' if threads == 1 else 'wall'
    device = torch.device('cpu')
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        logits = torch.randn(1, num_classes, *input_size, generator=gen)
        model = SimpleNamespace(align_corners=align_corners)   # all postprocess reads
        metric = StreamIoUMetric()
        metric.dataset_meta = dict(classes=[f'class{k}' for k in range(num_classes)])
        scorer = DomainScorer('benchmark', None, metric)
        buffer = ResizeBuffer()                                 # kept, as the learner's
        post, score, wall = [], [], []
        for _ in range(reps + 1):
            sample = scored_sample(out_size, num_classes)
            start = stamp(device)
            outputs = TTAAdapter.postprocess(model, logits, [sample], buffer)
            middle = stamp(device)
            scorer.add(outputs[0], 1, True, True)
            end = stamp(device)
            post.append(elapsed(start, middle)[clock])
            score.append(elapsed(middle, end)[clock])
            wall.append(elapsed(start, end)['wall'])
    finally:
        torch.set_num_threads(saved)
    post, score, wall = post[1:], score[1:], wall[1:]
    return {'input_size': list(input_size), 'out_size': list(out_size),
            'num_classes': num_classes, 'threads': threads, 'reps': reps, 'clock': clock,
            'postprocess_ms': statistics.median(post) * 1e3,
            'scoring_ms': statistics.median(score) * 1e3,
            'total_ms': statistics.median(p + s for p, s in zip(post, score,
                                                                strict=True)) * 1e3,
            'wall_total_ms': statistics.median(wall) * 1e3}
