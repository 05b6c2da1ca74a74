"""TTAAdapter: one method wired to one model (what adapts, its optimizer, the plug-ins), the
loop's step and the state that reset and resume restore."""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Sequence

from torch import nn

from stag_seg.methods.base import TTAMethod
from stag_seg.plugins.base import TTAPlugin, check_plugins_join
from stag_seg.step.context import StepResult
from stag_seg.step.learner import Learner
from stag_seg.step.optim import DEFAULT_OPTIMIZER
from stag_seg.step.timing import phase


class TTAAdapter(Learner):
    """A :class:`~stag_seg.step.learner.Learner` wired to ``method``.

    The method puts the model in its test-time mode and chooses what adapts
    (``configure_model`` / ``collect_params``); the optimizer (``optimizer``, default
    :data:`~stag_seg.step.optim.DEFAULT_OPTIMIZER`) is built for a method that updates; then
    the method's ``setup`` sees the learner. :meth:`step` is the loop's one call per batch;
    :meth:`state_dict` holds the model, the optimizer, the method's and the plug-ins' state,
    so that reset and resume restore all of it. Arguments as :class:`Learner`'s, with the
    method instead of the parameters.
    """

    def __init__(self,
                 model: nn.Module,
                 method: TTAMethod,
                 classifier: str = 'decode_head.conv_seg',
                 plugins: Sequence[TTAPlugin] = (),
                 optimizer: dict | None = None,
                 optim_wrapper: dict | None = None,
                 amp: str | None = None,
                 logger: logging.Logger | None = None,
                 build_loader: Callable[..., Iterable] | None = None) -> None:
        check_plugins_join(plugins, type(method).__name__, method.updates)
        method.configure_model(model)
        params = method.collect_params(model)
        if method.updates and not params:
            raise ValueError(f'method {type(method).__name__} found no parameters to adapt')
        super().__init__(model, params, classifier, plugins,
                         (optimizer or DEFAULT_OPTIMIZER) if method.updates else None,
                         optim_wrapper, amp, logger, build_loader)
        self.method = method
        self.method_name = type(method).__name__
        method.setup(self)

    def step(self, batch: dict, adapt: bool) -> StepResult:
        """One online step: the method predicts ``batch`` and, if ``adapt``, updates on it."""
        try:
            with phase('step'):
                return self.method.forward_and_adapt(self, batch, adapt)
        finally:
            self.tap.clear()

    def state_dict(self) -> dict:
        """Model, optimizer, method and plug-in state (references, not copies)."""
        return {'model': self.model.state_dict(),
                'optimizer': self.optim_wrapper.state_dict() if self.optim_wrapper else None,
                'method': self.method.state_dict(),
                'plugins': [p.state_dict() for p in self.plugins]}

    def snapshot(self) -> dict:
        """A deep copy of :meth:`state_dict` (e.g. the source state for resets)."""
        return copy.deepcopy(self.state_dict())

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state['model'])
        if self.optim_wrapper is not None and state.get('optimizer') is not None:
            self.optim_wrapper.load_state_dict(copy.deepcopy(state['optimizer']))
        self.method.load_state_dict(state.get('method') or {})
        for plugin, plugin_state in zip(self.plugins, state.get('plugins') or [], strict=False):
            plugin.load_state_dict(plugin_state)
