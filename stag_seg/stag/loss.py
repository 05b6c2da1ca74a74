"""Phase 2 of STAG: align each pixel's entropy gradient with its predicted class's anchor."""

import torch
from torch import Tensor

from stag_seg.ops import pixels_last
from stag_seg.stag.anchors import StructuralAnchors
from stag_seg.stag.entropy import entropy_logit_grad

IMPLS = ('kspace', 'naive')


def _safe_norm(sq_norm: Tensor, eps: float) -> Tensor:
    """sqrt(max(|x|^2, eps^2)): finite value and gradient, also at x = 0."""
    return sq_norm.clamp_min(eps * eps).sqrt()


def feature_cosine(u: Tensor, pred: Tensor, anchors: StructuralAnchors,
                   eps: float = 1e-8) -> Tensor:
    """cos(g_i, a_{y_i}) with g_i = W^T u_i, in K-space: u_i . Gm v_y / (|g_i| |a_y|).

    Args:
        u: (P, K) entropy gradients w.r.t. the logits.
        pred: (P,) predicted classes y_i.
    Returns:
        (P,) cosines; no (P, C) tensor is built.
    """
    g_sq_norm = (u @ anchors.gram * u).sum(1)             # |g_i|^2 = u_i^T Gm u_i
    return (u * anchors.anchor_proj[pred]).sum(1) / _safe_norm(g_sq_norm, eps)


def feature_cosine_naive(u: Tensor, pred: Tensor, anchors: StructuralAnchors,
                         eps: float = 1e-8) -> Tensor:
    """Reference C-space form: builds g_i = W^T u_i per pixel, (P, C). Same value as K-space."""
    g = u @ anchors.weight                                 # (P, C)
    return (g * anchors.anchor_dir[pred]).sum(1) / _safe_norm(g.pow(2).sum(1), eps)


def classifier_cosine(u: Tensor, feats: Tensor, pred: Tensor, anchors: StructuralAnchors,
                      eps: float = 1e-8) -> Tensor:
    """cos(G_i, A_y) for G_i = u_i f_i^T, A_y = v_y w_y^T: cos(u_i, v_y) * cos(f_i, w_y).

    f_i . w_y / |w_y| is read off the (P, K) product F W_dir^T and |f_i| is a fused norm, so no
    (P, C) tensor is built besides the features themselves (the gathered form kept two, one
    of them until the backward: 1 to 4% more step memory).

    Args:
        u: (P, K); feats: (P, C) classifier inputs f_i; pred: (P,).
    """
    cos_u = (u * anchors.logit_grad_dir[pred]).sum(1) / _safe_norm(u.pow(2).sum(1), eps)
    f_dot_w = (feats @ anchors.weight_dir.T).gather(1, pred[:, None]).squeeze(1)
    cos_f = f_dot_w / torch.linalg.vector_norm(feats, dim=1).clamp_min(eps)
    return cos_u * cos_f


def stag_loss(logits: Tensor,
              anchors: StructuralAnchors,
              feats: Tensor | None = None,
              valid_mask: Tensor | None = None,
              conf_thresh: float | None = None,
              impl: str = 'kspace',
              feature_grad: bool = True,
              eps: float = 1e-8) -> Tensor:
    """L_STAG = mean over kept pixels of 1 - cos(grad_i, anchor_{y_i}).

    Pixels are filtered by multiplying with a 0/1 mask (no boolean indexing, no host
    synchronisation): the mean over kept pixels is sum(mask * loss) / max(sum(mask), 1).

    Args:
        logits: (N, K, H, W) or (P, K) classifier outputs, differentiable.
        anchors: from :func:`structural_anchors` (constants).
        feats: (N, C, H, W) or (P, C) classifier inputs; needed for ``grad_space='classifier'``.
        valid_mask: (N, H, W) or (P,) bool, pixels to keep.
        conf_thresh: keep only pixels whose max softmax probability is >= this.
        impl: 'kspace' (exact, O(K^2) per pixel) or 'naive' (builds the C-dim gradient;
            feature space only, for reference and benchmarks).
        feature_grad: classifier space: let the gradient flow through the features f_i in
            cos(f_i, w_y) (True) or only through the entropy gradient u_i (False).
    Returns:
        Scalar float32 loss; 0 (still attached to ``logits``) when no pixel is kept.
    """
    if impl not in IMPLS:
        raise ValueError(f'impl must be one of {IMPLS}, got {impl!r}')
    z = pixels_last(logits)
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    keep = None
    if valid_mask is not None:
        keep = valid_mask.reshape(-1).to(torch.bool)
    if conf_thresh is not None:
        confident = z.detach().softmax(1).amax(1) >= conf_thresh
        keep = confident if keep is None else keep & confident

    u, _ = entropy_logit_grad(z, dim=1)
    pred = z.detach().argmax(1)
    anchors_f = _cast(anchors, z.dtype)
    if anchors.grad_space == 'feature':
        cosine_fn = feature_cosine if impl == 'kspace' else feature_cosine_naive
        cos = cosine_fn(u, pred, anchors_f, eps)
    else:
        if feats is None:
            raise ValueError("grad_space='classifier' needs the classifier's input features")
        f = pixels_last(feats).to(z.dtype)
        if not feature_grad:
            f = f.detach()
        cos = classifier_cosine(u, f, pred, anchors_f, eps)
    if keep is None:
        return (1.0 - cos).mean()
    weight = keep.to(cos.dtype)
    return ((1.0 - cos) * weight).sum() / weight.sum().clamp_min(1.0)


def _cast(anchors: StructuralAnchors, dtype: torch.dtype) -> StructuralAnchors:
    """Anchors in the loss's compute dtype (a copy only when the dtype differs)."""
    if anchors.weight.dtype == dtype:
        return anchors
    fields = {k: (v.to(dtype) if isinstance(v, torch.Tensor) else v)
              for k, v in vars(anchors).items()}
    return StructuralAnchors(**fields)
