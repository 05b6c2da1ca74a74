"""The base of every TTA method: what adapts, the loss, and one predict-then-adapt step."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor, nn

if TYPE_CHECKING:  # the adapter imports the methods' registry, not the other way round
    from stag_seg.engine.adapter import TTAAdapter
    from stag_seg.engine.context import StepContext


@dataclass
class StepResult:
    """What one step hands back to the loop.

    Attributes:
        outputs: the scored predictions (``SegDataSample`` with ``pred_sem_seg`` at the
            label's resolution), made before this step's update.
        attempted: an update was attempted (False for no-update methods and stages).
        updated: the update happened (False when it was skipped, e.g. a non-finite loss).
        stats: counters a method reports per domain (summed over steps), e.g.
            ``{'kept_pixels': 812, 'pixels': 1024}``.
        losses: the named loss terms of the update (detached tensors; the adapter fills it
            from the step context it updated on), empty when no update was attempted.
    """

    outputs: list
    attempted: bool = False
    updated: bool = False
    stats: dict[str, float] = field(default_factory=dict)
    losses: dict[str, Tensor] = field(default_factory=dict)


class TTAMethod:
    """Adapts nothing; subclasses override the parts they need.

    The adapter (``stag_seg.engine.adapter.TTAAdapter``) owns the model, the optimizer
    wrapper, the classifier tap and the plug-ins; a method drives one step through it:
    :meth:`forward_and_adapt` runs ``adapter.forward`` (the scored forward, with the
    classifier's logits and features tapped), computes :meth:`loss`, lets the plug-ins add
    their terms (``adapter.add_plugin_losses``), updates (``adapter.update``) and then
    calls :meth:`after_update`. Methods with extra passes (SAR) or another scored prediction
    (CoTTA) override :meth:`forward_and_adapt` itself. State that must survive reset and
    resume (a teacher model, counters, RNG) goes through :meth:`state_dict`.
    """

    #: whether the method takes gradient steps (needs an optimizer and grad-mode forwards)
    updates = False
    #: whether the step is tensor work only (one forward, :meth:`loss`, one update; no host
    #: decisions, no :meth:`after_update`), so that ``test_cfg.cuda_graph`` can capture it
    capturable = False

    def configure_model(self, model: nn.Module) -> None:
        """Puts ``model`` in its test-time mode; by default eval with everything frozen."""
        model.eval()
        model.requires_grad_(False)

    def collect_params(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters the optimizer adapts (none by default)."""
        return []

    def setup(self, adapter: TTAAdapter) -> None:
        """Called once before the stream, after the optimizer is built (e.g. copy a teacher)."""

    def loss(self, ctx: StepContext) -> dict[str, Tensor]:
        """Named base-loss terms from the step's context (logits at the head's resolution)."""
        return {}

    def forward_and_adapt(self, adapter: TTAAdapter, batch: dict, adapt: bool) -> StepResult:
        """Predicts ``batch`` and, if ``adapt``, takes one update on it (online protocol)."""
        adapt = adapt and self.updates
        ctx = adapter.forward(batch, grad=adapt)
        if not adapt:
            return StepResult(ctx.outputs)
        ctx.losses = self.loss(ctx)
        adapter.add_plugin_losses(ctx)
        updated = adapter.update(ctx)
        if updated:
            self.after_update(adapter)
        return StepResult(ctx.outputs, attempted=True, updated=updated)

    def after_update(self, adapter: TTAAdapter) -> None:
        """Called after each update that happened (e.g. an EMA teacher, stochastic restore)."""

    def state_dict(self) -> dict:
        """The method's own state (not the model's or the optimizer's)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores what :meth:`state_dict` returned."""
