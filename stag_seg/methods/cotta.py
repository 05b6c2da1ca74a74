"""CoTTA (Wang et al., CVPR 2022): a mean teacher over test-time-augmented views, anchored to
the source model, with stochastic restore of the student's weights."""
from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from torch import Tensor, nn

from stag_seg.datasets.tta_views import split_views
from stag_seg.methods.base import TTAMethod
from stag_seg.methods.head_grid import (
    IGNORE_INDEX,
    LOSS_RESOLUTIONS,
    label_resolution_cross_entropy,
    labels_on_head_grid,
)
from stag_seg.options import check_choice, check_number
from stag_seg.registry import TTA_METHODS
from stag_seg.step.context import StepContext
from stag_seg.step.learner import Learner
from stag_seg.step.postprocess import argmax_classes, full_resolution_logits

#: endings of the parameter names (last component) that stochastic restore resets: CoTTA's
#: 'weight' and 'bias', and mmseg's nn.MultiheadAttention 'in_proj_weight' / 'in_proj_bias'
#: (the q/k/v projections that NVlabs' code, which CoTTA ran, holds as Linear weights and biases)
RESTORED_SUFFIXES = ('weight', 'bias')


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with no gradients."""
    return copy.deepcopy(model).eval().requires_grad_(False)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """``t = alpha * t + (1 - alpha) * s`` for every parameter (buffers are left alone)."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(alpha).add_(s, alpha=1 - alpha)


@torch.no_grad()
def stochastic_restore(params: list[tuple[nn.Parameter, Tensor]], prob: float,
                       generator: torch.Generator) -> None:
    """Resets each element of each ``(param, source)`` pair to its source value with
    probability ``prob``: one ``torch.rand(param.shape, generator=generator) < prob`` mask
    per parameter, drawn in the order of ``params``."""
    for param, source in params:
        mask = torch.rand(param.shape, generator=generator, device=param.device) < prob
        param.copy_(torch.where(mask, source, param))


@TTA_METHODS.register_module(name='cotta')
class CoTTA(TTAMethod):
    """CoTTA for segmentation, the order of operations of its code (``cifar/cotta.py``,
    ``single_gpu_cotta``): pseudo-label from the teacher, student update, EMA teacher update,
    stochastic restore.

    Models. The student is the adapted model: every parameter adapts (the optimizer,
    ``test_cfg.optimizer``, CoTTA's Adam lr 6e-5/8). The teacher (an EMA of the student) and
    the anchor (the frozen source model) are copies made in :meth:`setup`. All three run in
    eval mode, as in CoTTA's segmentation code (``model.eval()`` for all three): BatchNorm
    (SegFormer's ``linear_fuse``) normalises with its source running statistics, which
    therefore never change; its affine parameters adapt like all others; no dropout or drop
    path. The EMA covers parameters only (CoTTA's ``update_ema_variables``); buffers stay the
    source's in all three models.

    Views. The stream pipeline makes them with mmcv's ``TestTimeAug``
    (:class:`~stag_seg.datasets.tta_views.MultiScaleFlipViews`,
    ``configs/_base_/datasets/cotta_views.py``), as CoTTA's code (mmseg 0.x's
    ``MultiScaleFlipAug``): the loaded original image resized to fit 960x540 times 0.5 ... 2.0,
    each without and with a horizontal flip; the base view (ratio 1.0, no flip) is exactly
    the input every method sees and is flagged in its metainfo. The label is decoded once and
    packed once, on the base view only, at full resolution (the loader then holds 14 uint8
    images, ~39 MB for a 960x540 base, plus one label). A batch without views is one view
    (the ensemble is the base view).

    Inference. The teacher and the anchor infer with the model's ``test_cfg`` (CoTTA's
    configs: ``mode='slide'``, crop 1024, stride 768: a view larger than the crop runs as
    several windows, averaged where they overlap, mmseg's ``slide_inference``); the student's
    update forward is always one whole-image forward of the base view (CoTTA's
    ``forward_train``).

    Pseudo-label and scored prediction (one and the same, at the label's full resolution, as
    CoTTA scores it). The teacher predicts every view; mmseg's post-processing steps
    (``stag_seg.step.postprocess.full_resolution_logits``: un-pad, un-flip, bilinear
    resize) bring each view's logits to the original resolution, and
    the softmax probabilities are averaged there as ``SegTTAModel.merge_preds`` averages them
    (summed in view order, divided by the number of views), but as a running sum, so that one
    view's full-resolution probabilities live at a time (not all 14:
    14 x 19 x 1080 x 1920 float32 would be 2.2 GB per image). Per pixel the pseudo-label is
    the teacher's base-view argmax where the anchor's base-view confidence (max softmax
    probability, full resolution) exceeds ``threshold`` (strictly), else the argmax of the
    average.

    Loss (``loss_resolution``). ``'head'``: cross-entropy (mean over cells, float32) of the
    student's base-view classifier logits (``ctx.logits``, the decode head's resolution, the
    tensor plug-ins such as STAG see) to the pseudo-label sampled at the head cells' centres
    (:func:`~stag_seg.methods.head_grid.labels_on_head_grid`; cells over padding ignored).
    ``'label'`` (CoTTA's code: mmseg's decode loss against the full-resolution pseudo-label):
    the same logits bilinearly resized to the pseudo-label's resolution, cross-entropy (mean
    over every pixel, float32;
    :func:`~stag_seg.methods.head_grid.label_resolution_cross_entropy`).

    After an update that happened (a skipped, non-finite step leaves everything as it was):
    the EMA, then every element of every adapted weight and bias (a parameter name ending in
    ``weight`` or ``bias``: CoTTA's rule, plus mmseg's attention ``in_proj_weight`` /
    ``in_proj_bias``; all of SegFormer's parameters) is reset to the anchor's value with
    probability ``restore_prob``: one ``torch.rand(shape) < restore_prob`` mask per parameter,
    in ``named_parameters`` order, from the method's own ``torch.Generator`` on the model's
    device, seeded in :meth:`setup` with ``torch.initial_seed()`` (the run's
    ``randomness.seed``: mmengine seeds torch with it). The optimizer's moments are kept.
    Teacher, anchor and generator state are :meth:`state_dict`: resets and resume restore
    them (a resumed stream is byte-identical to an uninterrupted one).

    Stats per domain: ``ensemble_pixels`` (pseudo-label from the ensemble) of ``pixels``.

    Args:
        alpha: the teacher's EMA momentum per step (CoTTA: 0.999).
        threshold: anchor confidence above which the teacher's plain base-view prediction
            is kept (CoTTA: 0.69, the 5% quantile on Cityscapes less 0.05).
        restore_prob: per-element probability of restoring the source value (CoTTA: 0.01).
        loss_resolution: ``'head'`` or ``'label'`` (CoTTA's code), see Loss above.
    """

    updates = True
    host_work = ("its step runs a teacher over several views, then an EMA and a stochastic "
                 "restore after the update")

    def __init__(self, alpha: float = 0.999, threshold: float = 0.69,
                 restore_prob: float = 0.01, loss_resolution: str = 'head') -> None:
        owner = type(self).__name__
        check_choice(owner, 'loss_resolution', loss_resolution, LOSS_RESOLUTIONS)
        self.loss_resolution = loss_resolution
        self.align_corners = False
        check_number(owner, 'alpha', alpha, low=0, high=1)
        check_number(owner, 'threshold', threshold, low=0, high=1)
        check_number(owner, 'restore_prob', restore_prob, low=0, high=1)
        self.alpha = float(alpha)
        self.threshold = float(threshold)
        self.restore_prob = float(restore_prob)
        self.teacher: nn.Module | None = None
        self.anchor: nn.Module | None = None
        self.generator: torch.Generator | None = None
        self.restored: list[tuple[nn.Parameter, Tensor]] = []
        self.logger = logging.getLogger(__name__)
        self._warned_no_views = False

    def configure_model(self, model: nn.Module) -> None:
        """Eval mode, every parameter trainable; the anchor and the teacher are copied here,
        from the source weights, before the learner hooks the classifier."""
        model.eval()
        model.requires_grad_(True)
        self.align_corners = bool(getattr(model, 'align_corners', False))
        self.anchor = frozen_copy(model)
        self.teacher = frozen_copy(model)

    def collect_params(self, model: nn.Module) -> list[nn.Parameter]:
        return list(model.parameters())

    def setup(self, learner: Learner) -> None:
        model = learner.model
        if getattr(model, 'out_channels', 2) < 2:
            raise ValueError('cotta averages softmax probabilities over views; it needs a '
                             f'multi-class head, got out_channels={model.out_channels}')
        self.logger = learner.logger
        source = dict(self.anchor.named_parameters())
        self.restored = [(p, source[name]) for name, p in model.named_parameters()
                         if name.rsplit('.', 1)[-1].endswith(RESTORED_SUFFIXES)
                         and p.requires_grad]
        self.generator = torch.Generator(device=learner.device)
        self.generator.manual_seed(torch.initial_seed())

    # ---------------------------------------------------------------- the step
    def forward(self, learner: Learner, batch: dict, adapt: bool) -> StepContext:
        """The teacher's scored prediction (the pseudo-label, ``ctx.selection``) and, if
        ``adapt``, the student's grad-mode forward on the base view (``ctx.logits``)."""
        views, base = split_views(batch)
        if len(views) == 1 and not self._warned_no_views:
            self._warned_no_views = True
            self.logger.warning('cotta: the stream gives no test-time-aug views (no '
                                'MultiScaleFlipViews or TestTimeAugSharedLabel in the '
                                'pipeline): the ensemble is the un-augmented view alone')
        with torch.no_grad():
            confidence = self._anchor_confidence(learner, views[base])
            plain, ensemble, outputs = self._teacher_predictions(learner, views, base)
        labels = []
        for sample, conf, own, mean in zip(outputs, confidence, plain, ensemble, strict=True):
            label = torch.where(conf > self.threshold, own, mean)
            sample.set_data({'pred_sem_seg': PixelData(data=label[None])})
            labels.append(label)
        ctx = (learner.forward(views[base], grad=True, predict=False, whole=True) if adapt
               else StepContext(outputs=outputs, batch=views[base]))
        ctx.outputs = outputs
        ctx.selection = labels
        ctx.stats = {'ensemble_pixels': sum((c <= self.threshold).sum() for c in confidence),
                     'pixels': sum(c.numel() for c in confidence)}     # summed on the device
        return ctx

    def loss(self, ctx: StepContext) -> dict[str, Tensor]:
        if ctx.logits.dim() != 4:
            raise RuntimeError('cotta: the classifier was called several times in the student\'s '
                               'forward; its loss needs one (N, K, h, w) output')
        if self.loss_resolution == 'label':
            return {'loss_cotta': label_resolution_cross_entropy(
                ctx.logits, ctx.selection, ctx.samples, self.align_corners)}
        return {'loss_cotta': self._student_loss(ctx.logits, ctx.selection, ctx.samples)}

    @staticmethod
    def _full_resolution(learner: Learner, model: nn.Module,
                         view: dict) -> tuple[list[Tensor], list]:
        """``model``'s (K, H, W) logits for ``view`` at the original resolution (mmseg's
        post-processing steps, no argmax), and the view's samples."""
        seg_logits, samples = learner.infer(model, view, grad=False)
        return full_resolution_logits(seg_logits.float(), samples, model.align_corners), samples

    def _anchor_confidence(self, learner: Learner, view: dict) -> list[Tensor]:
        """(H, W) max softmax probability of the anchor on the base view, per image."""
        logits, _ = self._full_resolution(learner, self.anchor, view)
        return [x.softmax(0).amax(0) for x in logits]

    def _teacher_predictions(self, learner: Learner, views: list[dict],
                             base: int) -> tuple[list[Tensor], list[Tensor], list]:
        """Per image: the teacher's (H, W) base-view argmax, the argmax of its mean softmax
        over all views, and the base view's samples (to carry the scored prediction)."""
        total = None
        for index, view in enumerate(views):
            logits, samples = self._full_resolution(learner, self.teacher, view)
            probs = [x.softmax(0) for x in logits]
            total = probs if total is None else [t.add_(p) for t, p in zip(total, probs,
                                                                            strict=True)]
            if index == base:
                plain = [argmax_classes(x) for x in logits]
                outputs = samples
        ensemble = [argmax_classes(t.div_(len(views))) for t in total]
        return plain, ensemble, outputs

    @staticmethod
    def _student_loss(logits: Tensor, labels: list[Tensor], samples: list) -> Tensor:
        """Cross-entropy of the (N, K, h, w) head logits to the labels on the head's grid."""
        grid = tuple(logits.shape[-2:])
        targets = torch.stack([labels_on_head_grid(label, grid, s.metainfo)
                               for label, s in zip(labels, samples, strict=True)])
        return F.cross_entropy(logits.float(), targets.to(logits.device),
                               ignore_index=IGNORE_INDEX)

    def after_update(self, learner: Learner) -> None:
        ema_update(self.teacher, learner.model, self.alpha)
        if self.restore_prob > 0:
            stochastic_restore(self.restored, self.restore_prob, self.generator)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Teacher and restore RNG (the anchor is the source model, rebuilt from the
        checkpoint in ``configure_model``)."""
        return {'teacher': self.teacher.state_dict(), 'generator': self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.teacher.load_state_dict(state['teacher'])
        self.generator.set_state(state['generator'].cpu())
