"""Compatibility fixes that make the OpenMMLab stack usable on current torch/setuptools/mmcv-lite.

``apply()`` must run before anything imports ``mmseg``; ``stag_seg/__init__.py`` calls it.
Each fix lives in its own module and is a no-op where the environment does not need it.
"""
import importlib.util

from stag_seg.compat import checkpoint, mmcv_ops, package_utils

__all__ = ['MMCV_FIX', 'MMCV_RANGE', 'apply', 'checkpoint', 'mmcv_ops', 'package_utils',
           'require_mmcv']

MMCV_RANGE = '>=2.0.0rc4,<2.2.0'  # what mmseg 1.2.x accepts; setup.py's ``lite`` extra
MMCV_FIX = ("Fix: pip install 'stag-seg[lite]' (adds mmcv-lite; in a checkout: pip install -e "
            f"'.[lite]'), or install full mmcv{MMCV_RANGE} with its compiled ops.")

_applied = False


def require_mmcv() -> None:
    """Fail with one clear error when no usable ``mmcv`` package is installed.

    stag-seg does not require an mmcv distribution (either ``mmcv`` or ``mmcv-lite`` may provide
    the package), but mmseg imports ``mmcv``. An ``mmcv/`` folder without ``__init__.py`` (left
    behind when one of the two distributions sharing it was uninstalled) counts as missing.
    """
    spec = importlib.util.find_spec('mmcv')
    if spec is None:
        problem = 'no mmcv is installed'
    elif spec.origin is None:  # namespace package: a folder without mmcv's own files
        where = ', '.join(spec.submodule_search_locations or [])
        problem = (f'{where} holds no mmcv install (a leftover of uninstalling mmcv or '
                   f'mmcv-lite, which share this folder)')
    else:
        return
    raise ModuleNotFoundError(f'stag-seg needs mmcv 2.x (mmsegmentation imports it), but '
                              f'{problem}. {MMCV_FIX}', name='mmcv')


def apply() -> None:
    """Check that mmcv is installed, then install every fix once; later calls do nothing."""
    global _applied
    if _applied:
        return
    require_mmcv()
    mmcv_ops.apply()
    package_utils.apply()
    checkpoint.apply()
    _applied = True
