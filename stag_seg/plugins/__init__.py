"""Plug-ins: loss terms added to any TTA method's loss, declared by :class:`TTAPlugin`."""
from stag_seg.plugins.base import TTAPlugin
from stag_seg.plugins.stag import STAGHook

__all__ = ['STAGHook', 'TTAPlugin']
