"""stag-seg: continual test-time adaptation of MMSegmentation models, with STAG.

Importing the package first makes the OpenMMLab stack usable on current torch,
setuptools and mmcv-lite (``stag_seg.compat``), then registers stag-seg's loop, adapter
pieces, plug-ins, models, datasets and TTA methods into mmseg's registries.
"""
from stag_seg import compat

compat.apply()

from stag_seg import datasets, engine, methods, models, plugins  # noqa: E402,F401  (registration)

__version__ = '0.1.0'
