"""The base of every TTA method: what adapts, the loss, and the predict-then-adapt step."""
from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from stag_seg.step.context import StepContext, StepResult
from stag_seg.step.learner import Learner


class TTAMethod:
    """Adapts nothing; subclasses override the parts they need.

    The :class:`~stag_seg.step.learner.Learner` holds the model, the optimizer, the
    classifier tap and the plug-ins; a method drives one step through it. The step is
    :meth:`forward_and_adapt`, a template of four parts:

    1. :meth:`forward`: the scored forward (with gradients when adapting; a teacher's
       passes in CoTTA);
    2. :meth:`keep`: the step's filter (EATA's and SAR's pixels); False skips the update;
    3. :meth:`adapt`: the tensor work of the update: :meth:`loss`, the plug-ins' terms,
       backward and the optimizer step (SAR's two passes);
    4. :meth:`after_update` after an update that happened (an EMA teacher, a restore).

    Host-side bookkeeping (stats, the result) stays in the template, so that :meth:`adapt`
    is the one piece of pure tensor work of a step. State that must survive reset and resume
    (a teacher model, counters, RNG) goes through :meth:`state_dict`.
    """

    #: whether the method takes gradient steps (needs an optimizer and grad-mode forwards)
    updates = False
    #: whether the step can be tensor work only (:meth:`captured_adapt`; no host decisions,
    #: no :meth:`after_update`), so that ``test_cfg.cuda_graph`` can capture it
    capturable = False
    #: why the step is not capturable (``test_cfg.cuda_graph``'s logged line)
    host_work = ('its step decides on the host or works outside the one captured forward: '
                 'a teacher, a loss at the label\'s resolution')

    def configure_model(self, model: nn.Module) -> None:
        """Puts ``model`` in its test-time mode; by default eval with everything frozen."""
        model.eval()
        model.requires_grad_(False)

    def collect_params(self, model: nn.Module) -> list[nn.Parameter]:
        """The parameters the optimizer adapts (none by default)."""
        return []

    def setup(self, learner: Learner) -> None:
        """Called once before the stream, after the optimizer is built (e.g. copy a teacher)."""

    def source_datasets(self) -> dict[str, dict]:
        """The source-domain sets the method reads (``learner.build_loader``'s), by option
        name (e.g. ``{'fisher_dataset': dict(...)}``): the start check builds each before the
        Runner starts, so a bad one is an error naming the option. None by default."""
        return {}

    # ---------------------------------------------------------------- the step
    def forward_and_adapt(self, learner: Learner, batch: dict, adapt: bool) -> StepResult:
        """Predicts ``batch`` and, if ``adapt``, takes one update on it (online protocol)."""
        adapt = adapt and self.updates
        if adapt:
            self.before_adapt(learner)
        ctx = self.forward(learner, batch, adapt)
        if not adapt or not self.keep(ctx):
            return StepResult(ctx.outputs, stats=ctx.stats)
        updated = self.adapt(learner, ctx)
        if updated:
            self.after_update(learner)
        return StepResult(ctx.outputs, attempted=True, updated=updated, stats=ctx.stats)

    def before_adapt(self, learner: Learner) -> None:
        """Called before each adapting step, outside any captured graph (e.g. EATA's Fisher
        information, computed once before the first update)."""

    def forward(self, learner: Learner, batch: dict, adapt: bool) -> StepContext:
        """The scored forward; with gradients (the classifier's logits tapped) if ``adapt``."""
        return learner.forward(batch, grad=adapt)

    def keep(self, ctx: StepContext) -> bool:
        """Whether this step updates (a filter may keep nothing); may fill ``ctx.selection``
        and ``ctx.stats``."""
        return True

    def adapt(self, learner: Learner, ctx: StepContext) -> bool:
        """One update: the base loss, the plug-ins' terms, backward, the optimizer step.
        Returns whether it happened (False: a non-finite loss or gradient, skipped)."""
        ctx.losses = self.loss(ctx)
        learner.add_plugin_losses(ctx)
        return learner.update(ctx)

    def captured_adapt(self, learner: Learner, ctx: StepContext,
                       forward: Callable[[], StepContext]) -> Tensor:
        """:meth:`keep` and :meth:`adapt` as tensor work only, for the captured step of a
        ``capturable`` method: no host reads, the filter's decision a device bool.

        Fills ``ctx.losses`` (and ``ctx.stats``, counters as device tensors; ``ctx.attempted``,
        a device bool, where a filter may keep nothing) and returns the device bool whether
        the update happened (:meth:`~stag_seg.step.learner.Learner.device_update`).
        ``forward()`` is another grad-mode forward on the same input (SAR's second pass).
        """
        ctx.losses = self.loss(ctx)
        learner.add_plugin_losses(ctx)
        return learner.device_update(ctx)

    def device_state(self) -> list[Tensor]:
        """The method's tensors that :meth:`captured_adapt` updates in place (the capture's
        warm-up restores them)."""
        return []

    def loss(self, ctx: StepContext) -> dict[str, Tensor]:
        """Named base-loss terms from the step's context (logits at the head's resolution)."""
        return {}

    def after_update(self, learner: Learner) -> None:
        """Called after each update that happened (e.g. an EMA teacher, stochastic restore)."""

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """The method's own state (not the model's or the optimizer's)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores what :meth:`state_dict` returned."""
