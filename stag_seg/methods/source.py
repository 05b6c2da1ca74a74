"""Source: the deployed model, scored without adaptation."""
from stag_seg.methods.base import TTAMethod
from stag_seg.registry import TTA_METHODS


@TTA_METHODS.register_module(name='source')
class Source(TTAMethod):
    """No adaptation: the source model as deployed (eval mode, no gradients)."""
