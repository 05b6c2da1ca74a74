"""STAGHook: adds STAG's gradient-alignment term to any TTA method's loss."""
from __future__ import annotations

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from stag_seg.engine.tap import ModuleTap, get_submodule
from stag_seg.stag import StructuralAnchors, stag_loss, structural_anchors


@HOOKS.register_module()
class STAGHook(Hook):
    """Structural Test-time Alignment of Gradients, as a plug-in.

    Before the stream: derives the structural anchors from the classifier's weights and logs
    their diagnostics. At every adaptation step (the loop's ``after_tta_forward`` seam): adds
    ``loss_weight * L_STAG`` over the classifier's output pixels (its own resolution) to the
    base loss, within the same forward and backward.

    Defaults (lambda=2, classifier space, tau=1) are the best setting of the demo's ablation
    (README, "Choosing STAG's defaults").

    Args:
        loss_weight: lambda in L = L_base + lambda * L_STAG (0 disables the term).
        grad_space: 'feature' (dH/df, K-space form) or 'classifier' (dH/dW).
        tau: anchor temperature.
        classifier: path of the final 1x1 classifier in the segmentor.
        conf_thresh: keep only pixels with max probability >= this (None: all pixels).
        impl: 'kspace' (default) or 'naive' (the C-space reference, for benchmarks).
    """

    priority = 'NORMAL'
    plugin_name = 'stag'

    def __init__(self,
                 loss_weight: float = 2.0,
                 grad_space: str = 'classifier',
                 tau: float = 1.0,
                 classifier: str = 'decode_head.conv_seg',
                 conf_thresh: float | None = None,
                 impl: str = 'kspace') -> None:
        self.loss_weight = loss_weight
        self.grad_space = grad_space
        self.tau = tau
        self.classifier = classifier
        self.conf_thresh = conf_thresh
        self.impl = impl
        self.anchors: StructuralAnchors | None = None
        self.tap: ModuleTap | None = None

    def before_test(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        classifier = get_submodule(model, self.classifier)
        self.anchors = structural_anchors(classifier.weight, classifier.bias, self.tau,
                                          self.grad_space)
        self.tap = ModuleTap(classifier, keep_inputs=self.grad_space == 'classifier')
        d = self.anchors.diagnostics
        runner.logger.info(
            f'STAG anchors from {self.classifier} ({self.anchors.num_classes} classes, '
            f'{self.grad_space} space, tau={self.tau}): mean self-entropy H={d["self_entropy"]:.4f}'
            f', mean diagonal probability psi={d["mean_diag_prob"]:.4f}, structural accuracy='
            f'{d["structural_acc"]:.4f}; loss_weight={self.loss_weight}')

    def after_tta_forward(self, runner, batch_idx: int, data_batch: dict, outputs: list,
                          losses: dict) -> None:
        """Adds ``losses['loss_stag']`` from the classifier pixels of this forward pass."""
        if self.loss_weight and self.tap.called:
            feats = self.tap.features() if self.grad_space == 'classifier' else None
            losses['loss_stag'] = self.loss_weight * stag_loss(
                self.tap.logits(), self.anchors, feats=feats, conf_thresh=self.conf_thresh,
                impl=self.impl)
        self.tap.clear()

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.tap is not None:
            self.tap.clear()

    def after_test(self, runner) -> None:
        if self.tap is not None:
            self.tap.remove()
            self.tap = None
