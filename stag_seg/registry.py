"""stag-seg's own registry: test-time adaptation methods (what adapts, and its step)."""
from mmengine.registry import Registry

# scope='mmseg': built under mmseg's default scope (as every stream config is) without a
# "failed to search registry" warning; stag-seg's other parts register in mmseg's registries.
TTA_METHODS = Registry('tta method', scope='mmseg', locations=['stag_seg.methods'])
