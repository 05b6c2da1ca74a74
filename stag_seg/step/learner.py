"""Learner: the model under adaptation and the operations a method's step is made of."""
from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from stag_seg.step.context import StepContext
from stag_seg.step.graphed import GraphedInference, capture_safe_autocast
from stag_seg.step.optim import AMP_DTYPES, build_tta_optim_wrapper
from stag_seg.step.postprocess import ResizeBuffer, predict_labels
from stag_seg.step.tap import ModuleTap, get_submodule
from stag_seg.step.timing import phase


class Learner:
    """The adapted model, its trainable parameters, their optimizer, the classifier tap and
    the plug-ins, with the few operations of a step:

    * :meth:`forward`: the scored forward (predictions, and the tapped classifier logits and
      features when it builds a graph); :meth:`infer` / :meth:`predict` for other models
      (a teacher);
    * :meth:`add_plugin_losses`: every plug-in's named terms;
    * :meth:`update`: backward of the sum of the terms, then the optimizer step
      (:meth:`backward` then :meth:`apply_update`, for methods with several passes).

    It does not know which method runs: the method calls these (``TTAMethod.forward_and_adapt``).

    Args:
        model: the segmentor (an mmseg ``BaseSegmentor``), already on its device and in its
            test-time mode.
        params: the parameters the optimizer adapts.
        classifier: path of the final classifier module (e.g. 'decode_head.conv_seg').
        plugins: the plug-ins, in the order their terms are added.
        optimizer: optimizer config (type and arguments, no params); None: no optimizer
            (a method that takes no gradient step).
        optim_wrapper: mmengine optim-wrapper options (type, clip_grad, ...).
        amp: None, 'bf16' or 'fp16': autocast the forward passes (losses stay float32).
        logger: where set-up lines go.
        build_loader: ``build_loader(dataset_cfg, size=None)`` builds a data loader over a
            source-domain set (the loop's resolves configs like a stream domain's and takes a
            seeded subset of ``size``), for methods that read one (EATA's Fisher).
        cuda_graph: on CUDA, no-grad forwards replay captured graphs
            (:class:`~stag_seg.step.graphed.GraphedInference`) and bf16 takes no GradScaler
            (the captured update of :class:`~stag_seg.engine.adapter.TTAAdapter` has none).
    """

    def __init__(self,
                 model: nn.Module,
                 params: list[nn.Parameter],
                 classifier: str = 'decode_head.conv_seg',
                 plugins: Sequence = (),
                 optimizer: dict | None = None,
                 optim_wrapper: dict | None = None,
                 amp: str | None = None,
                 logger: logging.Logger | None = None,
                 build_loader: Callable[..., Iterable] | None = None,
                 cuda_graph: bool = False) -> None:
        self.model = model
        self.params = list(params)
        self.plugins = list(plugins)
        self.logger = logger or logging.getLogger(__name__)
        self.build_loader = build_loader
        self.losses: dict[str, torch.Tensor] = {}     # the last update's terms (detached)
        self.resize_buffer = ResizeBuffer()    # the scored predictions' resize output
        self._found_inf: torch.Tensor | None = None    # the captured update's skip flag
        self.method_name = 'the method'     # named in errors (the adapter sets it)
        self.classifier_path = classifier
        self.classifier = get_submodule(model, classifier)
        self.device = next(model.parameters()).device
        self.optim_wrapper = None
        if optimizer is not None:
            self.optim_wrapper = build_tta_optim_wrapper(self.params, optimizer, optim_wrapper,
                                                         amp, self.device,
                                                         scale_bf16=not cuda_graph)
        wrapper_dtype = getattr(self.optim_wrapper, 'cast_dtype', None)  # AmpOptimWrapper's
        self.amp_dtype = AMP_DTYPES[amp] if amp else wrapper_dtype
        self.tap = ModuleTap(self.classifier,
                             keep_inputs=any(p.needs_features for p in self.plugins))
        for plugin in self.plugins:
            plugin.setup(self.classifier, classifier, self.logger)
        self.graphed_inference = (GraphedInference(self.capture_autocast, logger=self.logger)
                                  if cuda_graph and self.device.type == 'cuda' else None)

    # ---------------------------------------------------------------- forwards
    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward's precision context (``amp``); a no-op in float32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def capture_autocast(self) -> contextlib.AbstractContextManager:
        """The forward's precision without autocast's weight cache (safe in a CUDA graph)."""
        return capture_safe_autocast(self.device.type, self.amp_dtype)

    def forward(self, batch: dict, grad: bool, predict: bool = True,
                whole: bool = False) -> StepContext:
        """One forward of the adapted model on ``batch``.

        Returns the step context with the samples, the predictions (``pred_sem_seg`` at the
        label's resolution, made from detached logits, if ``predict``: a forward whose
        prediction is not scored, e.g. SAR's second pass, skips the full-resolution work;
        otherwise ``outputs`` are the samples) and, for a grad-mode forward, the tapped
        classifier logits (and features). A grad-mode forward in which the classifier is
        never called is an error naming the path and the plug-ins. ``whole``: the whole
        image in one forward whatever the model's ``test_cfg.mode`` (CoTTA's student, whose
        teacher slides).
        """
        with phase('forward'):
            self.tap.clear()
            seg_logits, samples = self.infer(self.model, batch, grad, whole=whole)
            outputs = (self.postprocess(self.model, seg_logits.detach().float(), samples,
                                        self.resize_buffer) if predict else samples)
            ctx = StepContext(outputs=outputs, batch=batch, samples=samples,
                              params=self.params)
            if grad:
                ctx.logits, ctx.features = self._tapped()
            return ctx

    def _tapped(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The classifier's logits (and inputs, if kept) of the last forward; the tap is
        cleared (the step's context holds them)."""
        if not self.tap.called:
            users = [self.method_name] + [type(p).__name__ for p in self.plugins]
            raise RuntimeError(
                f'test_cfg.classifier={self.classifier_path!r} was not called with gradients '
                f'in the forward pass, so {", ".join(users)} get no logits; set '
                'test_cfg.classifier to the module that outputs the segmentor\'s logits at '
                "test time (e.g. 'decode_head.conv_seg')")
        tapped = self.tap.logits(), self.tap.features() if self.tap.keep_inputs else None
        self.tap.clear()
        return tapped

    def infer(self, model: nn.Module, batch: dict, grad: bool,
              whole: bool = False) -> tuple[torch.Tensor, list]:
        """``model``'s forward: (N, K, h, w) logits at the input's size, and the samples.
        mmseg's ``inference`` (``test_cfg.mode``: whole or slide), or with ``whole`` its
        ``whole_inference``. With ``cuda_graph``, a no-grad forward replays its captured graph
        (the logits are then a static tensor, valid until that graph's next replay)."""
        with phase('forward'):
            with torch.set_grad_enabled(grad), self.autocast():
                data = model.data_preprocessor(batch, False)
                samples = data['data_samples']
                metas = [s.metainfo for s in samples]
                if whole:
                    return model.whole_inference(data['inputs'], metas), samples
                if not grad and self.graphed_inference is not None:
                    logits = self.graphed_inference(model, data['inputs'], metas)
                    if logits is not None:
                        return logits, samples
                return model.inference(data['inputs'], metas), samples

    def predict(self, model: nn.Module, batch: dict) -> list:
        """``model``'s scored predictions of ``batch`` without gradients (e.g. a teacher's)."""
        seg_logits, samples = self.infer(model, batch, grad=False)
        return self.postprocess(model, seg_logits.detach().float(), samples,
                                self.resize_buffer)

    @staticmethod
    def postprocess(model: nn.Module, seg_logits: torch.Tensor, samples: list,
                    buffer: ResizeBuffer | None = None) -> list:
        """Predictions at the label's resolution (mmseg's post-processing steps; the
        resize into ``buffer``, :class:`~stag_seg.step.postprocess.ResizeBuffer`)."""
        with phase('postprocess'):
            if seg_logits.shape[1] < 2:                 # binary heads threshold a sigmoid
                outputs = model.postprocess_result(seg_logits, samples)
                for sample in outputs:
                    del sample.seg_logits
                return outputs
            return predict_labels(seg_logits, samples, model.align_corners, buffer)

    # ---------------------------------------------------------------- losses and update
    def add_plugin_losses(self, ctx: StepContext) -> None:
        """Adds every plug-in's named terms to ``ctx.losses``."""
        with phase('plugin terms'):
            for plugin in self.plugins:
                terms = plugin.losses(ctx)
                if not terms and plugin.loss_weight:
                    raise RuntimeError(f'{type(plugin).__name__} (loss_weight='
                                       f'{plugin.loss_weight:g}) added no loss term on the '
                                       f'classifier {self.classifier_path!r}')
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
        with phase('backward'):
            wrapper = self.optim_wrapper
            loss = sum(ctx.losses.values())
            wrapper.backward(wrapper.scale_loss(loss))
            return bool(self.finite(loss))

    def finite(self, loss: torch.Tensor) -> torch.Tensor:
        """Whether ``loss`` and the trainable parameters' gradients are finite: a device bool
        (no host synchronisation)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        finite = torch.isfinite(loss)
        if grads:
            finite = finite & torch.isfinite(torch.nn.utils.get_total_norm(grads))
        return finite

    def apply_update(self, ctx: StepContext, finite: bool) -> bool:
        """The optimizer step on the gradients if ``finite``; otherwise the step is skipped,
        leaving model and optimizer as they were. Gradients are cleared either way and the
        plug-ins' ``after_update`` run. Returns whether the update happened."""
        with phase('update'):
            wrapper = self.optim_wrapper
            ctx.updated = finite
            self.losses = {k: v.detach() for k, v in ctx.losses.items()}   # for StepResult
            if finite:
                wrapper.step()
            elif getattr(wrapper, 'loss_scaler', None) is not None:
                wrapper.step()                  # the GradScaler skips the step and backs off
            wrapper.zero_grad()
            for plugin in self.plugins:
                plugin.after_update(ctx)
            return finite

    # ---------------------------------------------------------------- the captured update
    def device_backward(self, ctx: StepContext) -> torch.Tensor:
        """Back-propagates the sum of ``ctx.losses`` (no loss scaling: the captured step has
        no GradScaler); returns the device bool whether it and the gradients are finite."""
        loss = sum(ctx.losses.values())
        loss.backward()
        return self.finite(loss)

    def device_step(self, ctx: StepContext, go: torch.Tensor) -> torch.Tensor:
        """The fused optimizer's step, skipped on the device where ``go`` (a device bool) is
        False (its ``found_inf``: parameters, moments and step count stay); ``ctx.losses``
        become the step's reported terms. Returns ``go``. No host synchronisation."""
        optimizer = self.optim_wrapper.optimizer
        if self._found_inf is None:
            self._found_inf = torch.zeros((), device=self.device)
        self._found_inf.copy_((~go).float())
        optimizer.found_inf = self._found_inf
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf
        self.losses = {k: v.detach() for k, v in ctx.losses.items()}
        return go

    def device_update(self, ctx: StepContext, keep: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`update` with device decisions: backward, then the step where the loss and
        gradients are finite (and ``keep``, a device bool, holds)."""
        go = self.device_backward(ctx)
        return self.device_step(ctx, go if keep is None else go & keep)

    def zero_grad(self) -> None:
        """Clears the trainable parameters' gradients (between two passes of one step)."""
        self.optim_wrapper.zero_grad()

    # ---------------------------------------------------------------- state
    def trainable_state(self) -> dict:
        """A copy of what an update changes: the trainable parameters, the optimizer and the
        plug-ins' state (e.g. SAR's recovery point)."""
        return {'params': [p.detach().clone() for p in self.params],
                'optimizer': copy.deepcopy(self.optim_wrapper.state_dict()),
                'plugins': [copy.deepcopy(p.state_dict()) for p in self.plugins]}

    def load_trainable_state(self, state: dict) -> None:
        """Restores what :meth:`trainable_state` returned (it stays usable again)."""
        with torch.no_grad():
            for p, value in zip(self.params, state['params'], strict=True):
                p.copy_(value)
        self.optim_wrapper.load_state_dict(copy.deepcopy(state['optimizer']))
        for plugin, plugin_state in zip(self.plugins, state['plugins'], strict=True):
            plugin.load_state_dict(copy.deepcopy(plugin_state))

    def close(self) -> None:
        self.tap.remove()
