"""STAG's math in pure torch: structural anchors and the gradient-alignment loss."""
from stag_seg.stag.anchors import StructuralAnchors, structural_anchors
from stag_seg.stag.entropy import entropy_logit_grad
from stag_seg.stag.loss import stag_loss

__all__ = [
    'StructuralAnchors', 'entropy_logit_grad', 'stag_loss',
    'structural_anchors'
]
