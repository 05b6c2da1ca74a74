"""The continual TTA engine: the loop, the TTA methods and the plug-in hooks."""
from stag_seg.engine import methods  # noqa: F401  (registers TTA methods)
from stag_seg.engine.continual_loop import ContinualTTALoop
from stag_seg.engine.hooks import STAGHook
from stag_seg.engine.stream import SeededOrderSampler

__all__ = ['ContinualTTALoop', 'STAGHook', 'SeededOrderSampler']
