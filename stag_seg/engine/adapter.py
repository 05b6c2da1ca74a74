"""TTAAdapter: the home of the adaptation step (model, method, optimizer, classifier tap,
plug-ins)."""
from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from stag_seg.engine.context import StepContext
from stag_seg.engine.graphed_step import (
    GraphedInference,
    GraphedStep,
    capture_safe_autocast,
    graph_blocker,
)
from stag_seg.engine.optim import AMP_DTYPES, build_tta_optim_wrapper
from stag_seg.engine.postprocess import predict_labels
from stag_seg.engine.tap import ModuleTap, get_submodule
from stag_seg.methods.base import StepResult, TTAMethod
from stag_seg.plugins.base import TTAPlugin

DEFAULT_OPTIMIZER = dict(type='Adam', lr=6e-5 / 8, betas=(0.9, 0.999))


class TTAAdapter:
    """Runs predict-then-adapt steps of one method on one model, with plug-ins.

    The method decides what adapts (``configure_model`` / ``collect_params``) and drives each
    step (``forward_and_adapt``) through :meth:`forward`, :meth:`add_plugin_losses` and
    :meth:`update`. One forward hook taps the classifier (``classifier``, configured once);
    its logits (and inputs, if a plug-in needs them) feed the method's loss and every
    plug-in. :meth:`state_dict` holds the model, the optimizer, the method's and the
    plug-ins' state, so that reset and resume restore all of it.

    Args:
        model: the segmentor (an mmseg ``BaseSegmentor``), already on its device.
        method: the TTA method object.
        classifier: path of the final classifier module (e.g. 'decode_head.conv_seg').
        plugins: the plug-ins, in the order their terms are added.
        optimizer: optimizer config (type and arguments, no params).
        optim_wrapper: mmengine optim-wrapper options (type, clip_grad, ...).
        amp: None, 'bf16' or 'fp16': autocast the forward passes (losses stay float32).
        logger: where set-up lines go.
        build_loader: ``build_loader(dataset_cfg, size=None)`` builds a data loader over a
            source-domain set (the loop's resolves configs like a stream domain's and takes a
            seeded subset of ``size``), for methods that read one (EATA's Fisher).
        cuda_graph: capture the whole adaptation step as a CUDA graph and replay it
            (:mod:`~stag_seg.engine.graphed_step`); where the step cannot be captured, one
            logged line says why and the step runs eager.
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
        self.model = model
        self.method = method
        self.plugins = list(plugins)
        self.logger = logger or logging.getLogger(__name__)
        self.build_loader = build_loader
        self.classifier_path = classifier
        self.classifier = get_submodule(model, classifier)
        self.device = next(model.parameters()).device
        if self.plugins and not method.updates:
            names = ', '.join(type(p).__name__ for p in self.plugins)
            raise ValueError(f'plug-in(s) {names} add loss terms, but method '
                             f'{type(method).__name__} takes no gradient step, so they would '
                             'change nothing; use a method that adapts (e.g. tent)')
        method.configure_model(model)
        self.params = method.collect_params(model)
        self.optim_wrapper = None
        if method.updates:
            if not self.params:
                raise ValueError(f'method {type(method).__name__} found no parameters to adapt')
            self.optim_wrapper = build_tta_optim_wrapper(
                self.params, optimizer or DEFAULT_OPTIMIZER, optim_wrapper, amp, self.device,
                scale_bf16=not cuda_graph)
        wrapper_dtype = getattr(self.optim_wrapper, 'cast_dtype', None)  # AmpOptimWrapper's
        self.amp_dtype = AMP_DTYPES[amp] if amp else wrapper_dtype
        self.tap = ModuleTap(self.classifier,
                             keep_inputs=any(p.needs_features for p in self.plugins))
        for plugin in self.plugins:
            plugin.setup(self.classifier, classifier, self.logger)
        method.setup(self)
        self.graphed = self._graphed_step(amp) if cuda_graph else None
        self.graphed_inference = (GraphedInference(self._capture_autocast, logger=self.logger)
                                  if cuda_graph and self.device.type == 'cuda' else None)

    def _capture_autocast(self) -> contextlib.AbstractContextManager:
        return capture_safe_autocast(self.device.type, self.amp_dtype)

    def _graphed_step(self, amp: str | None) -> GraphedStep | None:
        optimizer = self.optim_wrapper.optimizer if self.optim_wrapper else None
        blocker = graph_blocker(self.method, self.plugins, optimizer,
                                self.optim_wrapper, amp) if self.method.updates else \
            f'{type(self.method).__name__} takes no gradient step'
        if blocker is not None:
            self.logger.info(f'test_cfg.cuda_graph: the step runs eager ({blocker})')
            return None
        self._found_inf = torch.zeros((), device=self.device)
        return GraphedStep(self._tensor_step, self.model, optimizer, logger=self.logger,
                           use_graph=self.device.type == 'cuda')

    # ---------------------------------------------------------------- the step
    def step(self, batch: dict, adapt: bool) -> StepResult:
        """One online step: the method predicts ``batch`` and, if ``adapt``, updates on it."""
        if adapt and self.graphed is not None:
            result = self._replay(batch)
            if result is not None:
                return result
        try:
            return self.method.forward_and_adapt(self, batch, adapt)
        finally:
            self.tap.clear()

    def _replay(self, batch: dict) -> StepResult | None:
        """The captured step on ``batch`` (None: the graph is off, run eager). ``updated``
        is a device bool (no host synchronisation; the scorer counts it on the device)."""
        data = self.model.data_preprocessor(batch, False)
        samples = data['data_samples']
        outputs = self.graphed(data['inputs'], [s.metainfo for s in samples])
        if outputs is None:
            return None
        seg_logits, finite = outputs[0], outputs[1]
        predictions = self.postprocess(self.model, seg_logits.float(), samples)
        return StepResult(predictions, attempted=True, updated=finite.clone())

    def _tensor_step(self, inputs: torch.Tensor, metas: list[dict]) -> tuple:
        """The method's step as tensor work only (what :class:`GraphedStep` captures): the
        forward, the method's and plug-ins' loss terms, the backward, a device-side finite
        check and the fused optimizer's update, skipped on device when not finite.

        Returns ((N, K, H, W) detached logits at the input's size, finite flag, *loss terms).
        """
        self.tap.clear()
        with torch.enable_grad(), capture_safe_autocast(self.device.type, self.amp_dtype):
            seg_logits = self.model.inference(inputs, metas)
        ctx = StepContext(batch={}, outputs=[], params=self.params, logits=self.tap.logits(),
                          features=self.tap.features() if self.tap.keep_inputs else None)
        ctx.losses = self.method.loss(ctx)
        self.add_plugin_losses(ctx)
        loss = sum(ctx.losses.values())
        loss.backward()
        grads = [p.grad for p in self.params if p.grad is not None]
        finite = torch.isfinite(loss)
        if grads:
            finite = finite & torch.isfinite(torch.nn.utils.get_total_norm(grads))
        optimizer = self.optim_wrapper.optimizer
        self._found_inf.copy_((~finite).float())
        optimizer.found_inf = self._found_inf        # the fused update skips on device
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
        self.tap.clear()
        return (seg_logits.detach(), finite,
                *(term.detach() for term in ctx.losses.values()))

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward's precision context (``amp``); a no-op in float32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def forward(self, batch: dict, grad: bool, model: nn.Module | None = None,
                predict: bool = True) -> StepContext:
        """One forward of ``model`` (default: the adapted model) on ``batch``.

        Returns the step context with the samples (with ``pred_sem_seg`` at the label's
        resolution, made from detached logits, if ``predict``: a forward whose prediction is
        not scored, e.g. SAR's second pass, skips the full-resolution work) and, for a
        grad-mode forward of the adapted model, the tapped classifier logits (and features).
        A grad-mode forward in which the classifier is never called is an error naming the
        path and the plug-ins.
        """
        model = self.model if model is None else model
        self.tap.clear()
        seg_logits, samples = self.infer(model, batch, grad)
        outputs = (self.postprocess(model, seg_logits.detach().float(), samples) if predict
                   else samples)
        ctx = StepContext(batch=batch, outputs=outputs, params=self.params)
        if grad and model is self.model:
            if not self.tap.called:
                users = [type(self.method).__name__] + [type(p).__name__ for p in self.plugins]
                raise RuntimeError(
                    f'test_cfg.classifier={self.classifier_path!r} was not called with '
                    f'gradients in the forward pass, so {", ".join(users)} get no logits; set '
                    'test_cfg.classifier to the module that outputs the segmentor\'s logits '
                    "at test time (e.g. 'decode_head.conv_seg')")
            ctx.logits = self.tap.logits()
            if self.tap.keep_inputs:
                ctx.features = self.tap.features()
        return ctx

    def infer(self, model: nn.Module, batch: dict, grad: bool) -> tuple[torch.Tensor, list]:
        """The segmentor's forward: (N, K, h, w) logits at the input's size, and the samples.
        With ``cuda_graph``, a no-grad forward replays its captured graph (the logits are then
        a static tensor, valid until that graph's next replay)."""
        with torch.set_grad_enabled(grad), self.autocast():
            data = model.data_preprocessor(batch, False)
            samples = data['data_samples']
            metas = [s.metainfo for s in samples]
            if not grad and self.graphed_inference is not None:
                logits = self.graphed_inference(model, data['inputs'], metas)
                if logits is not None:
                    return logits, samples
            return model.inference(data['inputs'], metas), samples

    @staticmethod
    def postprocess(model: nn.Module, seg_logits: torch.Tensor, samples: list) -> list:
        """Predictions at the label's resolution (mmseg's post-processing steps)."""
        if seg_logits.shape[1] < 2:                 # binary heads threshold a sigmoid
            outputs = model.postprocess_result(seg_logits, samples)
            for sample in outputs:
                del sample.seg_logits
            return outputs
        return predict_labels(seg_logits, samples, model.align_corners)

    def add_plugin_losses(self, ctx: StepContext) -> None:
        """Adds every plug-in's named terms to ``ctx.losses``."""
        for plugin in self.plugins:
            terms = plugin.losses(ctx)
            if not terms and plugin.loss_weight:
                raise RuntimeError(f'{type(plugin).__name__} (loss_weight={plugin.loss_weight:g})'
                                   ' added no loss term on the classifier '
                                   f'{self.classifier_path!r}')
            clash = set(terms) & set(ctx.losses)
            if clash:
                raise RuntimeError(f'{type(plugin).__name__}: loss term(s) {sorted(clash)} '
                                   'already exist in this step')
            ctx.losses.update(terms)

    def update(self, ctx: StepContext) -> bool:
        """Back-propagates the sum of ``ctx.losses`` and takes the optimizer step; returns
        whether the update happened (:meth:`backward` then :meth:`apply_update`)."""
        return self.apply_update(ctx, self.backward(ctx))

    def backward(self, ctx: StepContext) -> bool:
        """Back-propagates the sum of ``ctx.losses`` into the trainable parameters' gradients.

        Returns whether the loss and the gradients are finite (one host synchronisation).
        Methods with several passes per image (SAR) call it once per pass.
        """
        wrapper = self.optim_wrapper
        loss = sum(ctx.losses.values())
        wrapper.backward(wrapper.scale_loss(loss))
        grads = [p.grad for p in self.params if p.grad is not None]
        finite = torch.isfinite(loss)
        if grads:
            finite = finite & torch.isfinite(torch.nn.utils.get_total_norm(grads))
        return bool(finite)

    def apply_update(self, ctx: StepContext, finite: bool) -> bool:
        """The optimizer step on the gradients if ``finite``; otherwise the step is skipped,
        leaving model and optimizer as they were. Gradients are cleared either way and the
        plug-ins' ``after_update`` run. Returns whether the update happened."""
        wrapper = self.optim_wrapper
        ctx.updated = finite
        if finite:
            wrapper.step()
        elif getattr(wrapper, 'loss_scaler', None) is not None:
            wrapper.step()                  # the GradScaler skips the step and backs off
        wrapper.zero_grad()
        for plugin in self.plugins:
            plugin.after_update(ctx)
        return finite

    # ---------------------------------------------------------------- state
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

    def close(self) -> None:
        self.tap.remove()
