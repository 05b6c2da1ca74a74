"""TTAAdapter: one method wired to one model (what adapts, its optimizer, the plug-ins), the
loop's step and the state that reset and resume restore."""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from stag_seg.methods.base import TTAMethod
from stag_seg.plugins.base import TTAPlugin, check_plugins_join
from stag_seg.step.context import StepContext, StepResult
from stag_seg.step.graphed import GraphedStep, graph_blocker, zero_optimizer_state
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

    With ``cuda_graph``, the adaptation step of a method and plug-ins that declare
    ``capturable = True`` (TENT and its pseudo-label form, EATA, SAR, STAG) is one captured
    CUDA graph (:class:`~stag_seg.step.graphed.GraphedStep`): forward, the method's filter and
    loss terms (SAR's two passes), backward, a device-side finite check and the fused
    optimizer's update, skipped on device when not finite or when the filter kept nothing. Where
    the step cannot be captured, one logged line says why and it runs eager. On CPU the same
    path runs eagerly after the same warm-up (what the tests compare with the eager step).
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
                 build_loader: Callable[..., Iterable] | None = None,
                 cuda_graph: bool = False) -> None:
        check_plugins_join(plugins, type(method).__name__, method.updates)
        method.configure_model(model)
        params = method.collect_params(model)
        if method.updates and not params:
            raise ValueError(f'method {type(method).__name__} found no parameters to adapt')
        super().__init__(model, params, classifier, plugins,
                         (optimizer or DEFAULT_OPTIMIZER) if method.updates else None,
                         optim_wrapper, amp, logger, build_loader, cuda_graph)
        self.method = method
        self.method_name = type(method).__name__
        #: the optimizer as built (no moments, step count 0), for :meth:`reset_optimizer`
        self.fresh_optimizer = (copy.deepcopy(self.optim_wrapper.state_dict())
                                if self.optim_wrapper else None)
        method.setup(self)
        self.graphed = self._graphed_step(amp) if cuda_graph else None

    def _graphed_step(self, amp: str | None) -> GraphedStep | None:
        """The captured step, or None (with one logged line saying why it runs eager)."""
        optimizer = self.optim_wrapper.optimizer if self.optim_wrapper else None
        blocker = (graph_blocker(self.method, self.plugins, optimizer, self.optim_wrapper, amp)
                   if self.method.updates else f'{self.method_name} takes no gradient step')
        if blocker is not None:
            self.logger.info(f'test_cfg.cuda_graph: the step runs eager ({blocker})')
            return None
        return GraphedStep(self._tensor_step, self.model, optimizer, logger=self.logger,
                           use_graph=self.device.type == 'cuda',
                           extra_state=self.method.device_state)

    def step(self, batch: dict, adapt: bool) -> StepResult:
        """One online step: the method predicts ``batch`` and, if ``adapt``, updates on it;
        the result carries the loss terms the update was taken on."""
        self.losses = {}
        try:
            with phase('step'):
                if adapt and self.graphed is not None:
                    result = self._replay(batch)
                    if result is not None:
                        return result
                result = self.method.forward_and_adapt(self, batch, adapt)
        finally:
            self.tap.clear()
        result.losses = result.losses or self.losses
        return result

    def _replay(self, batch: dict) -> StepResult | None:
        """The captured step on ``batch`` (None: the graph is off, run eager). ``attempted``,
        ``updated`` and the method's counters are device tensors (no host synchronisation;
        the scorer sums them on the device)."""
        self.method.before_adapt(self)
        data = self.model.data_preprocessor(batch, False)
        samples = data['data_samples']
        outputs = self.graphed(data['inputs'], [s.metainfo for s in samples])
        if outputs is None:
            return None
        seg_logits, attempted, updated, *values = outputs
        predictions = self.postprocess(self.model, seg_logits.float(), samples,
                                       self.resize_buffer)
        # the graph's outputs are overwritten by the next replay: copies, still on the device
        named = {name: v.clone() for name, v in zip(self._loss_names + self._stat_names,
                                                     values, strict=True)}
        self.losses = {name: named[name] for name in self._loss_names}
        stats = {**self._constant_stats, **{name: named[name] for name in self._stat_names}}
        return StepResult(predictions, attempted=attempted.clone(), updated=updated.clone(),
                          stats=stats, losses=self.losses)

    def _tensor_step(self, inputs: torch.Tensor, metas: list[dict]) -> tuple:
        """The method's step as tensor work only (what :class:`GraphedStep` captures): the
        forward, then the method's :meth:`~stag_seg.methods.base.TTAMethod.captured_adapt`
        (loss terms, plug-ins' terms, backward, a device-side finite check and the fused
        optimizer's update, skipped on device when not finite or when its filter kept nothing).

        Returns ((N, K, H, W) detached logits at the input's size, attempted flag, updated
        flag, *loss terms, *tensor counters), whose names (and the constant counters) it keeps
        in ``_loss_names``, ``_stat_names`` and ``_constant_stats`` (set while capturing: a
        replay runs no Python).
        """
        def forward() -> tuple[torch.Tensor, StepContext]:
            self.tap.clear()
            with torch.enable_grad(), self.capture_autocast():
                seg_logits = self.model.inference(inputs, metas)
            ctx = StepContext(outputs=[], params=self.params)
            ctx.logits, ctx.features = self._tapped()
            return seg_logits, ctx

        seg_logits, ctx = forward()
        self.losses = {}
        updated = self.method.captured_adapt(self, ctx, lambda: forward()[1])
        attempted = (ctx.attempted if ctx.attempted is not None
                     else torch.ones((), dtype=torch.bool, device=updated.device))
        stats = {k: v for k, v in ctx.stats.items() if isinstance(v, torch.Tensor)}
        self._constant_stats = {k: v for k, v in ctx.stats.items() if k not in stats}
        self._loss_names, self._stat_names = tuple(self.losses), tuple(stats)
        return (seg_logits.detach(), attempted, updated, *self.losses.values(),
                *(v.detach() for v in stats.values()))

    def state_dict(self) -> dict:
        """Model, optimizer, method and plug-in state (references, not copies)."""
        return {'model': self.model.state_dict(),
                'optimizer': self.optim_wrapper.state_dict() if self.optim_wrapper else None,
                'method': self.method.state_dict(),
                'plugins': [p.state_dict() for p in self.plugins]}

    def snapshot(self) -> dict:
        """A deep copy of :meth:`state_dict` (e.g. the source state for resets)."""
        return copy.deepcopy(self.state_dict())

    def reset_optimizer(self) -> None:
        """The optimizer's state back to the freshly built one (no moments, step count 0;
        CoTTA's code builds a new Adam at each domain visit); the model, the method's and the
        plug-ins' state carry on."""
        if self.optim_wrapper is None:
            return
        if self.graphed is not None:
            # zeroed in place: the captured graph keeps its tensors
            zero_optimizer_state(self.optim_wrapper.optimizer.state.values())
            return
        self.optim_wrapper.load_state_dict(copy.deepcopy(self.fresh_optimizer))

    def load_state_dict(self, state: dict) -> None:
        if self.graphed is not None:
            self.graphed.invalidate()       # the optimizer's state tensors are replaced
        if self.graphed_inference is not None:
            self.graphed_inference.clear()
        self.model.load_state_dict(state['model'])
        if self.optim_wrapper is not None and state.get('optimizer') is not None:
            self.optim_wrapper.load_state_dict(copy.deepcopy(state['optimizer']))
        self.method.load_state_dict(state.get('method') or {})
        for plugin, plugin_state in zip(self.plugins, state.get('plugins') or [], strict=False):
            plugin.load_state_dict(plugin_state)
