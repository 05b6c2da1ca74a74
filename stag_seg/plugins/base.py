"""The plug-in protocol: a Hook that adds named loss terms to the method's loss at every step."""
from __future__ import annotations

import logging
from collections.abc import Sequence

from mmengine.hooks import Hook
from torch import Tensor, nn

from stag_seg.options import check_number
from stag_seg.step.context import StepContext


class TTAPlugin(Hook):
    """Base class of plug-ins (STAG is one).

    A plug-in is an MMEngine ``Hook`` registered in mmseg's ``HOOKS``, so adding
    ``custom_hooks=[dict(type='MyPlugin', ...)]`` to any config that runs the stream turns it
    on. The step's :class:`~stag_seg.step.learner.Learner` drives every ``TTAPlugin`` of the
    config:

    1. :meth:`setup` once before the stream, with the classifier module holding the source
       weights and its path (``test_cfg.classifier``, configured once for the method and every
       plug-in);
    2. :meth:`losses` at every adaptation step, after the method's base loss, with the step's
       :class:`~stag_seg.step.context.StepContext` (classifier logits at the decode head's
       resolution and, if :attr:`needs_features`, its input features; the batch; the base
       losses; the trainable parameters); the returned named terms (already weighted) join the
       loss, and the sum of all terms is back-propagated once;
    3. :meth:`after_update` after each step, with ``ctx.updated`` set.

    A plug-in with a non-zero ``loss_weight`` that contributes nothing in a step (e.g. the
    classifier was never called) is an error naming the plug-in and the classifier path.

    Args:
        loss_weight: weight of the plug-in's term (>= 0); 0 keeps the term in the graph with
            no effect on the update.
    """

    #: short name, joined to the method's in the run's name ('tent+stag')
    name = 'plugin'
    #: whether :meth:`losses` needs ``ctx.features`` (the classifier's input)
    needs_features = False
    #: whether :meth:`losses` is tensor work only and :meth:`after_update` does nothing, so
    #: that a captured step (``test_cfg.cuda_graph``) can include the plug-in
    capturable = False

    def __init__(self, loss_weight: float = 1.0) -> None:
        check_number(type(self).__name__, 'loss_weight', loss_weight, low=0)
        self.loss_weight = float(loss_weight)

    def setup(self, classifier: nn.Module, path: str, logger: logging.Logger) -> None:
        """Called once before the stream with the classifier module (source weights) and
        its path in the segmentor."""

    def losses(self, ctx: StepContext) -> dict[str, Tensor]:
        """Named, weighted loss terms for this step."""
        raise NotImplementedError

    def after_update(self, ctx: StepContext) -> None:
        """Called after each adaptation step; ``ctx.updated`` says if the update happened."""

    def state_dict(self) -> dict:
        """State that must survive reset and resume (none by default)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores what :meth:`state_dict` returned."""


def check_plugins_join(plugins: Sequence[TTAPlugin], method: str, updates: bool,
                       owner: str = '') -> None:
    """Plug-ins add loss terms, so they need a method that takes gradient steps; ``method``
    and ``owner`` (e.g. 'custom_hooks: ') name the method and the option in the error."""
    if plugins and not updates:
        names = ', '.join(type(p).__name__ for p in plugins)
        raise ValueError(f'{owner}plug-in(s) {names} add loss terms, but method {method} takes '
                         'no gradient step, so they would change nothing; use a method that '
                         'adapts (e.g. tent)')
