"""Phase 1 of STAG: class-wise structural anchors from the classifier's own weights."""
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from stag_seg.stag.entropy import entropy_logit_grad

GRAD_SPACES = ('feature', 'classifier')


@dataclass
class StructuralAnchors:
    """Anchors and the constants the alignment loss needs (all detached).

    K classes, C channels. Computed in float64, stored in the classifier's dtype.

    Attributes:
        grad_space: 'feature' (dH/df) or 'classifier' (dH/dW).
        tau: anchor temperature.
        weight: (K, C) classifier weight W.
        logit_grad: (K, K) row k is v_k = dH(q_k)/ds_k, the self-structural entropy gradient.
        anchors: feature space (K, C), row k is a_k = W^T v_k;
            classifier space (K, K, C), A_k = v_k w_k^T.
        gram: (K, K) Gram matrix W W^T.
        anchor_dir: anchors scaled to unit norm per class (tiny anchors underflow otherwise).
        anchor_proj: (K, K) row k is Gm v_k / |a_k|, so that cos(g, a_k) = u . anchor_proj_k / |g|.
        logit_grad_dir: (K, K) v_k / |v_k|.
        weight_dir: (K, C) w_k / |w_k|.
        diagnostics: mean self-entropy, mean diagonal probability psi, structural accuracy.
    """

    grad_space: str
    tau: float
    weight: Tensor
    logit_grad: Tensor
    anchors: Tensor
    anchor_dir: Tensor
    gram: Tensor
    anchor_proj: Tensor
    logit_grad_dir: Tensor
    weight_dir: Tensor
    diagnostics: dict[str, float] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    def with_weight(self, weight: Tensor) -> 'StructuralAnchors':
        """The same (constant) anchors against the classifier's current weight W (K, C), for a
        classifier that adapts: the feature-space gradient g_i = W^T u_i then needs the
        current Gram W W^T and the projections W a_k / |a_k| (the ``weight`` the naive form
        uses, too). The classifier-space quantities are the anchors' own and stay."""
        w = weight.detach().flatten(1).to(self.anchor_dir.dtype)
        return replace(self, weight=w, gram=w @ w.T,
                       anchor_proj=self.anchor_dir @ w.T if self.grad_space == 'feature'
                       else self.anchor_proj)


def _unit_rows(x: Tensor, eps: float = 1e-300) -> Tensor:
    """x / |x| over all dims but the first."""
    norm = x.flatten(1).norm(dim=1).clamp_min(eps)
    return x / norm.view(-1, *([1] * (x.dim() - 1)))


def structural_anchors(weight: Tensor,
                       bias: Tensor | None = None,
                       tau: float = 1.0,
                       grad_space: str = 'feature') -> StructuralAnchors:
    """Derives the structural anchors by feeding each class weight to the classifier.

    s_k = W w_k + b, q_k = softmax(s_k / tau), v_k = dH(q_k)/ds_k,
    a_k = W^T v_k (feature space) or A_k = v_k w_k^T (classifier space).

    Args:
        weight: (K, C) or a 1x1 conv weight (K, C, 1, 1).
        bias: (K,) or None.
        tau: anchor temperature (> 0).
        grad_space: 'feature' or 'classifier'.
    """
    if grad_space not in GRAD_SPACES:
        raise ValueError(f'grad_space must be one of {GRAD_SPACES}, got {grad_space!r}')
    if tau <= 0:
        raise ValueError(f'tau must be > 0, got {tau}')
    if weight.dim() == 4 and weight.shape[2:] == (1, 1):
        weight = weight.flatten(1)
    if weight.dim() != 2:
        raise ValueError(f'weight must be (K, C) or (K, C, 1, 1), got {tuple(weight.shape)}')
    dtype = weight.dtype
    w = weight.detach().to(torch.float64)
    num_classes = w.shape[0]
    b = w.new_zeros(num_classes) if bias is None else bias.detach().to(torch.float64)

    self_logits = w @ w.T + b                      # S = W W^T + 1 b^T, row k is s_k
    scaled = self_logits / tau
    q = scaled.softmax(dim=1)                      # Q, the softmax assignment matrix
    v, self_entropy = entropy_logit_grad(scaled, dim=1)
    v = v / tau                                    # chain rule through s / tau
    gram = w @ w.T

    if grad_space == 'feature':
        anchors = v @ w                            # a_k = W^T v_k
    else:
        anchors = v[:, :, None] * w[:, None, :]    # A_k = v_k w_k^T
    anchor_norm = (v @ gram * v).sum(1).clamp_min(0).sqrt()   # |a_k| = sqrt(v_k^T Gm v_k)
    anchor_proj = (v @ gram) / anchor_norm.clamp_min(1e-300)[:, None]

    own_class = torch.arange(num_classes, device=w.device)
    diagnostics = {
        'self_entropy': self_entropy.mean().item(),               # mean_k H(q_k)
        'mean_diag_prob': q.diagonal().mean().item(),             # psi = mean_k Q_kk
        'structural_acc': (q.argmax(1) == own_class).double().mean().item(),
    }
    return StructuralAnchors(
        grad_space=grad_space,
        tau=float(tau),
        weight=w.to(dtype),
        logit_grad=v.to(dtype),
        anchors=anchors.to(dtype),
        anchor_dir=_unit_rows(anchors).to(dtype),
        gram=gram.to(dtype),
        anchor_proj=anchor_proj.to(dtype),
        logit_grad_dir=_unit_rows(v).to(dtype),
        weight_dir=_unit_rows(w).to(dtype),
        diagnostics=diagnostics)
