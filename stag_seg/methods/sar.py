"""SAR (Niu et al., ICLR 2023) for segmentation: reliable per-pixel entropy minimised with
sharpness-aware minimisation, and recovery to the source model when the loss collapses."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from stag_seg.methods.reliable import PAPER_NUM_CLASSES, entropy_margin, masked_mean
from stag_seg.methods.sam import sam_ascent, sam_restore
from stag_seg.methods.tent import Tent
from stag_seg.ops import pixels_last, softmax_entropy
from stag_seg.options import check_number
from stag_seg.registry import TTA_METHODS
from stag_seg.step.context import StepContext
from stag_seg.step.learner import Learner

#: SAR's moving average of the second pass's loss (the recovery criterion)
EMA_MOMENTUM = 0.9
#: SAR's recovery threshold e_m, in nats, for ImageNet's 1000 classes
PAPER_RESET_CONSTANT = 0.2


def update_ema(ema: float | Tensor | None, value: float | Tensor) -> float | Tensor:
    """SAR's moving average: the first value sets it, then 0.9 * ema + 0.1 * value (numbers
    or device tensors)."""
    return value if ema is None else EMA_MOMENTUM * ema + (1 - EMA_MOMENTUM) * value


def reset_constant(num_classes: int, value: float | None = None) -> float:
    """The recovery threshold e_m in nats: ``value`` if set, else SAR's 0.2 scaled like the
    entropy's range, 0.2 * ln K / ln 1000 (0.085 for 19 classes)."""
    if value is not None:
        return float(value)
    return PAPER_RESET_CONSTANT * math.log(num_classes) / math.log(PAPER_NUM_CLASSES)


@TTA_METHODS.register_module(name='sar')
class SAR(Tent):
    """SAR, per pixel: sharpness-aware minimisation of the reliable pixels' entropy.

    Each image: pass 1 (the scored forward) gives the entropy E of every pixel; pixels with
    E < E0 are reliable and their mean entropy (+ the plug-ins' terms) is back-propagated;
    the parameters move to w + rho * g / ||g||; pass 2 at the moved point keeps the pass-1
    reliable pixels still below E0, back-propagates their mean entropy (+ the plug-ins'
    terms, on pass 2's logits); the parameters go back to w and the optimizer steps with
    pass 2's gradients (:meth:`adapt`: both passes through the learner's ``forward``,
    ``add_plugin_losses`` and ``backward``, then ``apply_update``).
    Model recovery: the moving average (0.9) of pass 2's entropy term; when it falls below
    e_m the adapted parameters, the optimizer and the plug-ins go back to their source
    state and the average restarts (stat ``resets``). Parameters: the norm layers' affine
    parameters with BatchNorm on test-batch statistics, as TENT.

    Segmentation choices:

    * Filters act per pixel, at the decode head's resolution: E0 = 0.4 ln K (SAR's
      0.4 ln 1000 written for K classes).
    * e_m = 0.2 ln K / ln 1000 (0.085 nats for 19 classes): SAR's 0.2 was set on an entropy
      whose range is [0, ln 1000]; it is scaled with that range, as E0 is.
    * The recovery criterion averages the entropy term only (not STAG's), as SAR's loss is.
    * All norm layers adapt, as TENT here (SAR's ImageNet code leaves out the top layers:
      ResNet layer4, ViT blocks 9-11).
    * The stream's optimizer is used (default Adam 6e-5/8) under SAM; SAR uses SGD 2.5e-4,
      momentum 0.9 (doubled at batch size 1).
    * A step with no reliable pixel is skipped (stat ``empty_steps``); SAR's code would take
      a zero-gradient (momentum-only) step.

    Per-domain stats: ``pixels``, ``reliable_pixels`` (pass 1), ``kept_pixels`` (pass 2),
    ``empty_steps``, ``resets``. State: the moving average and the number of recoveries.
    The step is capturable (``test_cfg.cuda_graph``, :meth:`captured_adapt`): the filters,
    the average, the recovery and the counters stay on the device.

    Args:
        margin_e0: E0 in nats (None: 0.4 ln K).
        rho: SAM's neighbourhood radius (> 0).
        reset_constant_em: e_m in nats (None: 0.2 ln K / ln 1000); 0 turns recovery off.
    """

    capturable = True

    def __init__(self, margin_e0: float | None = None, rho: float = 0.05,
                 reset_constant_em: float | None = None) -> None:
        owner = type(self).__name__
        check_number(owner, 'margin_e0', margin_e0, low=0, low_open=True, allow_none=True)
        check_number(owner, 'rho', rho, low=0, low_open=True)
        check_number(owner, 'reset_constant_em', reset_constant_em, low=0, allow_none=True)
        self.margin_e0 = margin_e0
        self.rho = float(rho)
        self.reset_constant_em = reset_constant_em
        # on the model's device, updated in place (a captured step reads and writes them);
        # float64, so that the average is the same number as in Python floats
        self._ema = torch.zeros((), dtype=torch.float64)
        self._has_ema = torch.zeros((), dtype=torch.bool)
        self._resets = torch.zeros((), dtype=torch.long)
        self._source: dict | None = None

    @property
    def ema(self) -> float | None:
        """The moving average of pass 2's entropy term (None: none since the last recovery)."""
        return float(self._ema) if bool(self._has_ema) else None

    @property
    def num_resets(self) -> int:
        """Recoveries so far."""
        return int(self._resets)

    def setup(self, learner: Learner) -> None:
        """Keeps the source state of what recovery restores (the trainable parameters, the
        optimizer, the plug-ins): it is the checkpoint's, also on resume."""
        self._source = learner.trainable_state()
        self.logger = learner.logger
        self._ema, self._has_ema, self._resets = (
            t.to(learner.device) for t in (self._ema, self._has_ema, self._resets))
        stateful = [type(p).__name__ for p in learner.plugins if p.state_dict()]
        if stateful or self._source['optimizer'].get('state'):
            self.capturable = False
            self.host_work = (f'its recovery restores the state of {", ".join(stateful)}'
                              if stateful else 'its recovery restores a used optimizer state')

    def device_state(self) -> list[Tensor]:
        return [self._ema, self._has_ema, self._resets]

    def recover(self, learner: Learner) -> None:
        """SAR's model recovery: the source parameters, optimizer and plug-in state."""
        learner.load_trainable_state(self._source)
        self._has_ema.fill_(False)
        self._resets += 1

    @torch.no_grad()
    def recover_on_device(self, learner: Learner, recover: Tensor) -> None:
        """:meth:`recover` where ``recover`` (a device bool) holds, with no host read: the
        source parameters, the optimizer's state zeroed in place (the source's is the fresh
        one, as ``setup`` checked: Adam with no moments and step 0)."""
        for param, source in zip(learner.params, self._source['params'], strict=True):
            param.copy_(torch.where(recover, source, param))
        for state in learner.optim_wrapper.optimizer.state.values():
            for value in state.values():
                if isinstance(value, Tensor):
                    value.masked_fill_(recover, 0)
        self._has_ema.logical_and_(~recover)
        self._resets.add_(recover.long())

    @staticmethod
    def entropy(ctx: StepContext) -> Tensor:
        """(M,) per-pixel entropy of ``ctx.logits`` (float32, differentiable)."""
        return softmax_entropy(pixels_last(ctx.logits.float()), dim=1)

    def select(self, ctx: StepContext) -> tuple[Tensor, Tensor]:
        """Pass 1's (M,) entropy and reliable pixels (entropy below E0), as ``ctx.selection``."""
        entropy = self.entropy(ctx)
        reliable = entropy.detach() < entropy_margin(ctx.logits.shape[1], self.margin_e0)
        ctx.selection = (entropy, reliable)
        return ctx.selection

    def keep(self, ctx: StepContext) -> bool:
        """Pass 1's reliable pixels (``ctx.selection``); a step with none is skipped."""
        _, reliable = self.select(ctx)
        num_reliable = int(reliable.sum())
        ctx.stats = {'pixels': reliable.numel(), 'reliable_pixels': num_reliable,
                     'kept_pixels': 0, 'empty_steps': int(num_reliable == 0), 'resets': 0}
        return num_reliable > 0

    def loss(self, ctx: StepContext) -> dict[str, Tensor]:
        """The mean entropy of the selected pixels (``ctx.selection``: entropy and mask)."""
        entropy, selected = ctx.selection
        return {'loss_entropy': masked_mean(entropy, selected)}

    def _second_pass(self, learner: Learner, ctx: StepContext, second: StepContext,
                     margin: float) -> None:
        """Pass 2's selection (pass 1's reliable pixels still below E0) and loss terms."""
        entropy = self.entropy(second)
        second.selection = (entropy, ctx.selection[1] & (entropy.detach() < margin))
        second.losses = self.loss(second)
        learner.add_plugin_losses(second)

    def adapt(self, learner: Learner, ctx: StepContext) -> bool:
        """SAM's two passes, the update with pass 2's gradients, then the recovery check."""
        num_classes = ctx.logits.shape[1]
        ctx.losses = self.loss(ctx)
        learner.add_plugin_losses(ctx)
        if not learner.backward(ctx):
            return learner.apply_update(ctx, False)
        old = sam_ascent(learner.params, self.rho)
        learner.zero_grad()
        try:
            second = learner.forward(ctx.batch, grad=True, predict=False)
            self._second_pass(learner, ctx, second, entropy_margin(num_classes, self.margin_e0))
            finite = learner.backward(second)
        finally:
            sam_restore(learner.params, old)
        num_kept = int(second.selection[1].sum())
        ctx.stats['kept_pixels'] = num_kept
        value = second.losses['loss_entropy'].item()
        if num_kept and math.isfinite(value):
            self._ema.fill_(update_ema(self.ema, value))
            self._has_ema.fill_(True)
        updated = learner.apply_update(second, finite)
        threshold = reset_constant(num_classes, self.reset_constant_em)
        if self.ema is not None and self.ema < threshold:
            self.recover(learner)
            ctx.stats['resets'] = 1
            self.logger.info(f'SAR: moving average of the entropy below e_m={threshold:.4g}: '
                             f'model recovered to the source state (recovery {self.num_resets})')
        return updated

    def captured_adapt(self, learner: Learner, ctx: StepContext, forward) -> Tensor:
        """:meth:`keep` and :meth:`adapt` on the device: both passes always run, and what
        eager decides on the host (no reliable pixel, a non-finite pass 1 or 2, the average's
        update, the recovery) are device bools folded into the update and the state, with
        the same counters as device tensors. The recovery is not logged per step here (the
        domain's record counts ``resets``)."""
        num_classes = ctx.logits.shape[1]
        margin = entropy_margin(num_classes, self.margin_e0)
        _, reliable = self.select(ctx)
        num_reliable = reliable.sum()
        ctx.attempted = num_reliable > 0
        ctx.losses = self.loss(ctx)
        learner.add_plugin_losses(ctx)
        tried = ctx.attempted & learner.device_backward(ctx)    # eager stops at pass 1 else
        old = sam_ascent(learner.params, self.rho)
        learner.zero_grad()
        second = forward()
        self._second_pass(learner, ctx, second, margin)
        finite = learner.device_backward(second)
        sam_restore(learner.params, old)
        num_kept = torch.where(tried, second.selection[1].sum(), 0)
        value = second.losses['loss_entropy'].detach().to(self._ema.dtype)
        with torch.no_grad():
            track = tried & (num_kept > 0) & torch.isfinite(value)
            average = torch.where(self._has_ema, update_ema(self._ema, value), value)
            self._ema.copy_(torch.where(track, average, self._ema))
            self._has_ema.logical_or_(track)
        updated = learner.device_step(second, tried & finite)
        threshold = reset_constant(num_classes, self.reset_constant_em)
        recover = tried & self._has_ema & (self._ema < threshold)
        self.recover_on_device(learner, recover)
        ctx.stats = {'pixels': reliable.numel(), 'reliable_pixels': num_reliable,
                     'kept_pixels': num_kept, 'empty_steps': (num_reliable == 0).long(),
                     'resets': recover.long()}
        return updated

    def state_dict(self) -> dict:
        return {'ema': self.ema, 'num_resets': self.num_resets}

    def load_state_dict(self, state: dict) -> None:
        ema = state.get('ema')
        self._ema.fill_(0.0 if ema is None else ema)
        self._has_ema.fill_(ema is not None)
        self._resets.fill_(state.get('num_resets', 0))
