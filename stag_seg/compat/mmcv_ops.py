"""Pure-torch ``mmcv.ops`` stand-in, installed only when mmcv's compiled ops are missing."""
import importlib
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import Any

import torch
import torch.nn.functional as F

FIX_HINT = ('build full mmcv: pip install mmcv==2.1.0 --no-build-isolation '
            'with setuptools<70, ~20 min')
# Informational helpers used by environment reports (e.g. mmcv.utils.collect_env).
_NO_COMPILER = 'n/a (mmcv-lite, no compiled ops)'


def point_sample(input: torch.Tensor, points: torch.Tensor, align_corners: bool = False,
                 **kwargs: Any) -> torch.Tensor:
    """Bilinearly sample ``input`` (N, C, H, W) at ``points`` given in [0, 1] (x, y) coordinates.

    ``points`` is (N, P, 2) -> output (N, C, P), or (N, Hp, Wp, 2) -> output (N, C, Hp, Wp).
    """
    flat = points.dim() == 3
    grid = 2.0 * (points.unsqueeze(2) if flat else points) - 1.0
    out = F.grid_sample(input, grid, align_corners=align_corners, **kwargs)
    return out.squeeze(3) if flat else out


class _MissingOp:
    """Placeholder for a compiled mmcv op: importable, fails when called or instantiated."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise ImportError(f'mmcv.ops.{cls.__name__} needs mmcv compiled ops, which mmcv-lite '
                          f'lacks; {FIX_HINT}')


def _module_getattr(name: str) -> Any:
    if name.startswith('_'):  # dunders and private names are never ops
        raise AttributeError(f"module 'mmcv.ops' has no attribute {name!r}")
    stub = type(name, (_MissingOp,), {'__module__': 'mmcv.ops'})
    setattr(shim, name, stub)  # same object on every lookup
    return stub


def _build_shim() -> types.ModuleType:
    module = types.ModuleType('mmcv.ops', __doc__)
    module.__spec__ = importlib.machinery.ModuleSpec('mmcv.ops', None)
    module.point_sample = point_sample
    module.get_compiler_version = lambda: _NO_COMPILER
    module.get_compiling_cuda_version = lambda: _NO_COMPILER
    module.__getattr__ = _module_getattr
    return module


shim = _build_shim()


def compiled_ops_available() -> bool:
    """True when mmcv with compiled ops (``mmcv._ext``) is importable."""
    try:
        importlib.import_module('mmcv._ext')
    except Exception:  # ImportError, or OSError from a broken CUDA build
        return False
    return True


def apply() -> bool:
    """Install the shim as ``mmcv.ops`` if mmcv is present without compiled ops.

    Returns True when the shim is (now) active.
    """
    if sys.modules.get('mmcv.ops') is shim:
        return True
    if importlib.util.find_spec('mmcv') is None or compiled_ops_available():
        return False
    import mmcv
    # mmcv-lite's own warning when mmseg imports its transformer bricks; the shim above
    # raises a clear error if a model ever uses such an op
    warnings.filterwarnings('ignore', message=r'Fail to import ``MultiScaleDeformableAttention``')
    sys.modules['mmcv.ops'] = shim
    mmcv.ops = shim
    return True
