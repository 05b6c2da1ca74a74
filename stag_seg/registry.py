"""stag-seg's own registry: test-time adaptation methods (what adapts, and its loss)."""
from mmengine.registry import Registry

TTA_METHODS = Registry('tta method', locations=['stag_seg.engine.methods'])
