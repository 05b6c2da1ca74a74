"""The vocabulary of one adaptation step: what a method and a plug-in may use.

``context`` (the step's :class:`StepContext` and :class:`StepResult`), ``learner`` (the model
under adaptation and the step's operations: scored forward, plug-in terms, update), and what
they stand on: ``tap`` (the classifier's logits), ``postprocess`` (predictions at the label's
resolution), ``optim`` (the optimizer wrapper and its default) and ``timing`` (the phase-timing
hook). Nothing here imports the engine, the methods or the plug-ins.
"""
from stag_seg.step.context import StepContext, StepResult
from stag_seg.step.learner import Learner

__all__ = ['Learner', 'StepContext', 'StepResult']
