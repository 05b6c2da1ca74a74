"""Compatibility fixes that make the OpenMMLab stack usable on current torch/setuptools/mmcv-lite.

``apply()`` must run before anything imports ``mmseg``; ``stag_seg/__init__.py`` calls it.
Each fix lives in its own module and is a no-op where the environment does not need it.
"""
from stag_seg.compat import checkpoint, mmcv_ops, package_utils

__all__ = ['apply', 'checkpoint', 'mmcv_ops', 'package_utils']

_applied = False


def apply() -> None:
    """Install every fix once; later calls do nothing."""
    global _applied
    if _applied:
        return
    mmcv_ops.apply()
    package_utils.apply()
    checkpoint.apply()
    _applied = True
