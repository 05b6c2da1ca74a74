"""TENT (Wang et al., ICLR 2021): entropy minimisation on the affine parameters of norm layers."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from stag_seg.methods.base import TTAMethod
from stag_seg.methods.head_grid import LOSS_RESOLUTIONS, label_resolution_cross_entropy
from stag_seg.methods.norm import norm_affine_params, use_test_batch_statistics
from stag_seg.ops import softmax_entropy
from stag_seg.options import check_choice
from stag_seg.registry import TTA_METHODS
from stag_seg.step.context import StepContext


@TTA_METHODS.register_module(name='tent')
class Tent(TTAMethod):
    """TENT: mean per-pixel softmax entropy of the classifier's logits (float32).

    Only the affine parameters of normalisation layers adapt (selected by module type);
    BatchNorm layers normalise with test-batch statistics (see
    :func:`~stag_seg.methods.norm.use_test_batch_statistics`).
    """

    updates = True
    capturable = True

    def configure_model(self, model: nn.Module) -> None:
        super().configure_model(model)
        for param in norm_affine_params(model):
            param.requires_grad_(True)
        use_test_batch_statistics(model)

    def collect_params(self, model: nn.Module) -> list[nn.Parameter]:
        return norm_affine_params(model)

    def loss(self, ctx: StepContext) -> dict[str, Tensor]:
        return {'loss_entropy': softmax_entropy(ctx.logits.float(), dim=1).mean()}


@TTA_METHODS.register_module(name='tent-pl')
class TentPseudoLabel(Tent):
    """What CoTTA's segmentation code calls TENT (``single_gpu_tent``): cross-entropy with the
    model's own prediction, the model in eval mode.

    The affine parameters of every normalisation layer adapt (as :class:`Tent`, and as
    CoTTA's code, which selects parameters named ``norm`` or ``bn``); BatchNorm normalises
    with its source running statistics, which never change (CoTTA's ``model.eval()``; TENT
    proper uses test-batch statistics).

    Args:
        loss_resolution: ``'head'``: cross-entropy of the classifier's logits to their own
            argmax on the decode head's grid (float32); ``'label'`` (CoTTA's code): the
            logits bilinearly resized to the label's resolution
            (:func:`~stag_seg.methods.head_grid.label_resolution_cross_entropy`) against the
            scored full-resolution prediction. Only ``'head'`` is capturable
            (``test_cfg.cuda_graph``).
    """

    def __init__(self, loss_resolution: str = 'head') -> None:
        check_choice(type(self).__name__, 'loss_resolution', loss_resolution,
                     LOSS_RESOLUTIONS)
        self.loss_resolution = loss_resolution
        # the captured step sees logits only: the label's resolution needs the samples
        self.capturable = loss_resolution == 'head'
        self.host_work = "loss_resolution='label' works at each sample's label resolution"
        self.align_corners = False

    def configure_model(self, model: nn.Module) -> None:
        TTAMethod.configure_model(self, model)
        for param in norm_affine_params(model):
            param.requires_grad_(True)
        self.align_corners = bool(getattr(model, 'align_corners', False))

    def loss(self, ctx: StepContext) -> dict[str, Tensor]:
        logits = ctx.logits.float()
        if self.loss_resolution == 'label':
            labels = [s.pred_sem_seg.data[0] for s in ctx.outputs]
            return {'loss_pseudo_label': label_resolution_cross_entropy(
                logits, labels, ctx.samples, self.align_corners)}
        return {'loss_pseudo_label': F.cross_entropy(logits, logits.detach().argmax(1))}
