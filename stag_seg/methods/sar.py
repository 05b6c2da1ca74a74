"""SAR (Niu et al., ICLR 2023) for segmentation: reliable per-pixel entropy minimised with
sharpness-aware minimisation, and recovery to the source model when the loss collapses."""
from __future__ import annotations

import math

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


def update_ema(ema: float | None, value: float) -> float:
    """SAR's moving average: the first value sets it, then 0.9 * ema + 0.1 * value."""
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

    Args:
        margin_e0: E0 in nats (None: 0.4 ln K).
        rho: SAM's neighbourhood radius (> 0).
        reset_constant_em: e_m in nats (None: 0.2 ln K / ln 1000); 0 turns recovery off.
    """

    capturable = False      # host-side filters and counters in its step

    def __init__(self, margin_e0: float | None = None, rho: float = 0.05,
                 reset_constant_em: float | None = None) -> None:
        owner = type(self).__name__
        check_number(owner, 'margin_e0', margin_e0, low=0, low_open=True, allow_none=True)
        check_number(owner, 'rho', rho, low=0, low_open=True)
        check_number(owner, 'reset_constant_em', reset_constant_em, low=0, allow_none=True)
        self.margin_e0 = margin_e0
        self.rho = float(rho)
        self.reset_constant_em = reset_constant_em
        self.ema: float | None = None
        self.num_resets = 0
        self._source: dict | None = None

    def setup(self, learner: Learner) -> None:
        """Keeps the source state of what recovery restores (the trainable parameters, the
        optimizer, the plug-ins): it is the checkpoint's, also on resume."""
        self._source = learner.trainable_state()
        self.logger = learner.logger

    def recover(self, learner: Learner) -> None:
        """SAR's model recovery: the source parameters, optimizer and plug-in state."""
        learner.load_trainable_state(self._source)
        self.ema = None
        self.num_resets += 1

    @staticmethod
    def entropy(ctx: StepContext) -> Tensor:
        """(M,) per-pixel entropy of ``ctx.logits`` (float32, differentiable)."""
        return softmax_entropy(pixels_last(ctx.logits.float()), dim=1)

    def keep(self, ctx: StepContext) -> bool:
        """Pass 1's reliable pixels (``ctx.selection``); a step with none is skipped."""
        entropy = self.entropy(ctx)
        reliable = entropy.detach() < entropy_margin(ctx.logits.shape[1], self.margin_e0)
        num_reliable = int(reliable.sum())
        ctx.selection = (entropy, reliable)
        ctx.stats = {'pixels': reliable.numel(), 'reliable_pixels': num_reliable,
                     'kept_pixels': 0, 'empty_steps': int(num_reliable == 0), 'resets': 0}
        return num_reliable > 0

    def loss(self, ctx: StepContext) -> dict[str, Tensor]:
        """The mean entropy of the selected pixels (``ctx.selection``: entropy and mask)."""
        entropy, selected = ctx.selection
        return {'loss_entropy': masked_mean(entropy, selected)}

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
            entropy = self.entropy(second)
            margin = entropy_margin(num_classes, self.margin_e0)
            second.selection = (entropy, ctx.selection[1] & (entropy.detach() < margin))
            second.losses = self.loss(second)
            learner.add_plugin_losses(second)
            finite = learner.backward(second)
        finally:
            sam_restore(learner.params, old)
        num_kept = int(second.selection[1].sum())
        ctx.stats['kept_pixels'] = num_kept
        value = second.losses['loss_entropy'].item()
        if num_kept and math.isfinite(value):
            self.ema = update_ema(self.ema, value)
        updated = learner.apply_update(second, finite)
        threshold = reset_constant(num_classes, self.reset_constant_em)
        if self.ema is not None and self.ema < threshold:
            self.recover(learner)
            ctx.stats['resets'] = 1
            self.logger.info(f'SAR: moving average of the entropy below e_m={threshold:.4g}: '
                             f'model recovered to the source state (recovery {self.num_resets})')
        return updated

    def state_dict(self) -> dict:
        return {'ema': self.ema, 'num_resets': self.num_resets}

    def load_state_dict(self, state: dict) -> None:
        self.ema = state.get('ema')
        self.num_resets = state.get('num_resets', 0)
