"""The continual TTA engine: the adapter (the step), the loop (streaming), scoring, state."""
from stag_seg.engine.adapter import TTAAdapter
from stag_seg.engine.iou_metric import StreamIoUMetric
from stag_seg.engine.loop import ContinualTTALoop
from stag_seg.engine.runner import StreamRunner
from stag_seg.engine.samplers import DirichletOrderSampler, SeededOrderSampler
from stag_seg.engine.scalars_hook import StreamScalarsHook

__all__ = ['ContinualTTALoop', 'DirichletOrderSampler', 'SeededOrderSampler',
           'StreamIoUMetric', 'StreamRunner', 'StreamScalarsHook', 'TTAAdapter']
