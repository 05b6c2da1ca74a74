"""MMEngine hooks of stag-seg: plug-in loss terms for the continual TTA loop."""
from stag_seg.engine.hooks.stag_hook import STAGHook

__all__ = ['STAGHook']
