"""EATA (Niu et al., ICML 2022) for segmentation: reliable, non-redundant pixels' weighted
entropy plus a Fisher anti-forgetting regulariser, on the norm layers' affine parameters."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from stag_seg.methods.fisher import fisher_information, fisher_penalty
from stag_seg.methods.reliable import entropy_margin
from stag_seg.methods.tent import Tent
from stag_seg.ops import pixels_last, softmax_entropy
from stag_seg.options import check_int, check_number
from stag_seg.registry import TTA_METHODS
from stag_seg.step.context import StepContext
from stag_seg.step.learner import Learner

#: EATA's moving average of the kept samples' mean probability vector (its Eqn. 4)
PROBS_MOMENTUM = 0.9


@dataclass
class PixelSelection:
    """EATA's per-pixel filters and weights for one step (M pixels, K classes).

    Attributes:
        entropy: (M,) softmax entropy, differentiable.
        reliable: (M,) bool, entropy < E0.
        kept: (M,) bool, reliable and (if the redundancy filter is on) non-redundant.
        weights: (M,) detached, exp(E0 - E) = 1 / exp(E - E0) where kept, 0 elsewhere.
        running_probs: (K,) the moving average after this step (None: filter off or unset).
    """

    entropy: Tensor
    reliable: Tensor
    kept: Tensor
    weights: Tensor
    running_probs: Tensor | None


def update_running_probs(running: Tensor | None, probs: Tensor) -> Tensor | None:
    """EATA's moving average of the mean probability vector: the first non-empty ``probs``
    (P, K) sets it to their mean; later ones give 0.9 * running + 0.1 * mean; empty ``probs``
    leave it as it is."""
    if probs.shape[0] == 0:
        return running
    mean = probs.mean(0)
    return mean if running is None else PROBS_MOMENTUM * running + (1 - PROBS_MOMENTUM) * mean


def select_pixels(rows: Tensor, e_margin: float, running_probs: Tensor | None = None,
                  d_margin: float | None = None) -> PixelSelection:
    """EATA's sample selection and weighting, per pixel.

    Args:
        rows: (M, K) logits, one row per pixel.
        e_margin: E0 in nats; reliable pixels have entropy < E0.
        running_probs: (K,) moving average of kept pixels' probabilities (None: none yet).
        d_margin: the redundancy filter's epsilon: a reliable pixel is redundant if the
            cosine similarity of its probability vector with ``running_probs`` is >= epsilon
            in absolute value; None turns the filter off (and the average is not kept).
    """
    entropy = softmax_entropy(rows, dim=1)
    detached = entropy.detach()
    reliable = detached < e_margin
    kept, running = reliable, None
    if d_margin is not None:
        probs = rows.detach().softmax(1)
        if running_probs is not None:
            cosine = F.cosine_similarity(probs, running_probs[None], dim=1)
            kept = reliable & (cosine.abs() < d_margin)
        running = update_running_probs(running_probs, probs[kept])
    weights = torch.where(kept, torch.exp(e_margin - detached), 0.0)
    return PixelSelection(entropy, reliable, kept, weights, running)


@TTA_METHODS.register_module(name='eata')
class EATA(Tent):
    """EATA, per pixel: weighted entropy of reliable (and non-redundant) pixels + Fisher term.

    Loss: mean over kept pixels of exp(E0 - E) * E (EATA's 1 / exp(E - E0) weighting), plus
    ``fisher_alpha * sum F (theta - theta*)^2``. Parameters: the norm layers' affine
    parameters, BatchNorm with test-batch statistics (as TENT). One forward and backward per
    image. When no pixel is kept the step is skipped, as in EATA (stat ``empty_steps``).

    Segmentation choices:

    * Filters act per pixel (at the decode head's resolution), not per image: E0 = 0.4 ln K
      (EATA's 0.4 ln 1000 written for K classes).
    * The redundancy filter is off by default (``d_margin=None``). EATA's rule (skip a sample
      whose probability vector has |cosine| >= 0.05 with the moving average of those kept)
      assumes near-orthogonal predictions over 1000 classes. Per image, every street scene's
      mean prediction is dominated by road, building and sky, so every image would be skipped.
      Per pixel, a confident pixel of class c has cosine ~ m_c / ||m|| with the average m,
      which is >= 0.05 for every class holding more than about 2.4 % of the recent pixels
      (with Cityscapes' class frequencies: road, sidewalk, building, vegetation, sky, car,
      about nine pixels in ten): 0.05 would skip most pixels of every image. Set ``d_margin``
      to turn on the per-pixel rule (the average is that of the kept pixels' probability
      vectors, EMA 0.9, as EATA's). EATA's 0.05 is 1.6x the cosine of a one-hot vector with a
      uniform average over 1000 classes; the same ratio for K classes is 0.05 * sqrt(1000 / K)
      (0.36 for 19), which skips the pixels of the classes that dominate recent predictions
      (road and building there).
    * The Fisher information (:func:`~stag_seg.methods.fisher.fisher_information`) comes from
      ``fisher_dataset`` (a source-domain set resolved like a stream domain, labels unused;
      e.g. Cityscapes train, so that it shares no image with a Cityscapes-val forgetting
      check), at most ``fisher_size`` images, with the source model, just before the first
      update; its cost is logged. It is kept in the method's state with its anchor theta*, so
      reset keeps it and resume does not recompute it. EATA's alpha = 2000 and its Fisher
      (squared gradients of a batch-mean pseudo-label cross-entropy, averaged over batches)
      are kept as they are; a stream batch (one image) averages thousands of pixels, as
      EATA's 64-image batch averages 64 samples.
    * The stream's optimizer is used (default Adam 6e-5/8); EATA uses SGD 2.5e-4, momentum 0.9.

    Per-domain stats: ``pixels``, ``reliable_pixels``, ``kept_pixels``, ``empty_steps``.
    State: the moving average of probabilities, the Fisher information and its anchor.
    Without the redundancy filter the step is capturable (``test_cfg.cuda_graph``): the
    filter, the weights and the counters stay on the device (:meth:`captured_adapt`).

    Args:
        e_margin: E0 in nats (None: 0.4 ln K).
        d_margin: the redundancy filter's epsilon in (0, 1] (None: off).
        fisher_alpha: weight of the Fisher term (>= 0; 0: no regulariser, EATA's "ETA").
        fisher_dataset: dataset config of source-domain images (needed if fisher_alpha > 0).
        fisher_size: at most this many images of it (None: all).
    """

    host_work = ('its redundancy filter (d_margin) starts its moving average at the first '
                 'step that keeps a pixel')

    def __init__(self, e_margin: float | None = None, d_margin: float | None = None,
                 fisher_alpha: float = 2000.0, fisher_dataset: dict | None = None,
                 fisher_size: int | None = None) -> None:
        owner = type(self).__name__
        check_number(owner, 'e_margin', e_margin, low=0, low_open=True, allow_none=True)
        check_number(owner, 'd_margin', d_margin, low=0, high=1, low_open=True,
                     allow_none=True)
        check_number(owner, 'fisher_alpha', fisher_alpha, low=0)
        if fisher_size is not None:
            check_int(owner, 'fisher_size', fisher_size, low=1)
        if fisher_alpha > 0 and not isinstance(fisher_dataset, dict):
            raise ValueError(f'{owner}: fisher_alpha={fisher_alpha:g} needs fisher_dataset, a '
                             'dataset config of source-domain images (e.g. Cityscapes train), '
                             f'got {fisher_dataset!r}; fisher_alpha=0 turns the Fisher term '
                             'off')
        self.e_margin = e_margin
        self.d_margin = d_margin
        #: the reliability filter and the weights are tensor work (:meth:`captured_adapt`)
        self.capturable = d_margin is None
        self.fisher_alpha = float(fisher_alpha)
        self.fisher_dataset = fisher_dataset
        self.fisher_size = fisher_size
        self.running_probs: Tensor | None = None
        self.fisher: list[Tensor] | None = None
        self.anchor: list[Tensor] | None = None
        self.device = None
        self._fisher_loader = None

    def source_datasets(self) -> dict[str, dict]:
        return {'fisher_dataset': dict(self.fisher_dataset)} if self.fisher_alpha > 0 else {}

    def setup(self, learner: Learner) -> None:
        """Builds the Fisher set's loader (a bad set fails here, before the stream)."""
        self.device = learner.device
        if self.fisher_alpha == 0:
            return
        if learner.build_loader is None:
            raise ValueError('EATA: fisher_alpha > 0 needs the learner\'s build_loader to read '
                             'fisher_dataset')
        try:
            self._fisher_loader = learner.build_loader(dict(self.fisher_dataset),
                                                       self.fisher_size)
        except (FileNotFoundError, ValueError) as e:      # the dataset's error, with the option
            raise type(e)(f'test_cfg.method.fisher_dataset: {e}') from e
        learner.logger.info(f'EATA: the Fisher information comes from a seeded subset of '
                            f'{len(self._fisher_loader.dataset)} source images, computed '
                            'before the first update (unless resumed)')

    def _ensure_fisher(self, learner: Learner) -> None:
        """Computes the Fisher information once, from the (still source) model."""
        if self.fisher_alpha == 0 or self.fisher is not None:
            return
        start = time.perf_counter()
        self.fisher, images = fisher_information(learner, self._fisher_loader, self.fisher_size)
        self.anchor = [p.detach().float().clone() for p in learner.params]
        self._fisher_loader = None
        seconds = time.perf_counter() - start
        learner.logger.info(f'EATA: Fisher information from {images} source images in '
                            f'{seconds:.1f} s ({seconds / images:.3f} s per image)')

    def select(self, ctx: StepContext) -> PixelSelection:
        """The step's pixel selection from ``ctx.logits`` and the current moving average."""
        rows = pixels_last(ctx.logits.float())
        return select_pixels(rows, entropy_margin(rows.shape[1], self.e_margin),
                             self.running_probs, self.d_margin)

    def before_adapt(self, learner: Learner) -> None:
        self._ensure_fisher(learner)

    def keep(self, ctx: StepContext) -> bool:
        """Selects the pixels (and moves the average); a step that keeps none is skipped."""
        selection = ctx.selection = self.select(ctx)
        self.running_probs = selection.running_probs
        kept = int(selection.kept.sum())
        ctx.stats = {'pixels': selection.kept.numel(),
                     'reliable_pixels': int(selection.reliable.sum()),
                     'kept_pixels': kept, 'empty_steps': int(kept == 0)}
        return kept > 0

    def captured_adapt(self, learner: Learner, ctx: StepContext, forward) -> Tensor:
        """:meth:`keep` and the update on the device: the same selection and counters (device
        tensors), the update skipped on the device when no pixel is kept (not attempted, as
        eager). Only without the redundancy filter (``capturable``)."""
        selection = ctx.selection = self.select(ctx)
        kept = selection.kept.sum()
        ctx.attempted = kept > 0
        ctx.stats = {'pixels': selection.kept.numel(),
                     'reliable_pixels': selection.reliable.sum(),
                     'kept_pixels': kept, 'empty_steps': (kept == 0).long()}
        ctx.losses = self.loss(ctx)
        learner.add_plugin_losses(ctx)
        return learner.device_update(ctx, ctx.attempted)

    def loss(self, ctx: StepContext) -> dict[str, Tensor]:
        """The weighted entropy of the kept pixels (``ctx.selection``, or selected now with
        the state unchanged) and the Fisher term."""
        selection = self.select(ctx) if ctx.selection is None else ctx.selection
        kept = selection.kept.sum().clamp(min=1)
        terms = {'loss_entropy': (selection.weights * selection.entropy).sum() / kept}
        if self.fisher is not None:
            terms['loss_fisher'] = fisher_penalty(ctx.params, self.fisher, self.anchor,
                                                  self.fisher_alpha)
        return terms

    def state_dict(self) -> dict:
        return {'running_probs': self.running_probs, 'fisher': self.fisher,
                'anchor': self.anchor}

    def load_state_dict(self, state: dict) -> None:
        """Restores the moving average; a state with a Fisher information restores it too (one
        without, e.g. the initial snapshot taken before it was computed, keeps the current:
        it depends only on the source model and the Fisher set)."""
        self.running_probs = _to(state.get('running_probs'), self.device)
        if state.get('fisher') is not None:
            self.fisher = [_to(f, self.device) for f in state['fisher']]
            self.anchor = [_to(a, self.device) for a in state['anchor']]


def _to(tensor: Tensor | None, device) -> Tensor | None:
    if tensor is None:
        return None
    return tensor.clone() if device is None else tensor.to(device, copy=True)
