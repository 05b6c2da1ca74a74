"""stag-seg: continual test-time adaptation for MMSegmentation 1.x.

mmcv is not an install requirement, so that installing stag-seg never overwrites a full mmcv that
is already there (``mmcv`` and ``mmcv-lite`` both own ``site-packages/mmcv/``):

- ``pip install 'stag-seg[lite]'`` adds ``mmcv-lite``; ``stag_seg.compat`` then provides the few
  compiled ops mmseg needs in pure torch (the README's set-up, scripts/env.sh and CI);
- plain ``pip install stag-seg`` is for an environment that already has full mmcv 2.x
  (>=2.0.0rc4,<2.2.0, the range mmseg 1.2 accepts), with its compiled ops.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(r"^__version__ = '([^']+)'",
                    (HERE / 'stag_seg' / '__init__.py').read_text(), re.M).group(1)
MMCV_RANGE = '>=2.0.0rc4,<2.2.0'  # what mmseg 1.2.x asserts at import

setup(
    name='stag-seg',
    version=VERSION,
    description='Continual test-time adaptation for MMSegmentation 1.x (STAG)',
    packages=find_packages(include=['stag_seg', 'stag_seg.*']),
    python_requires='>=3.10',
    install_requires=[
        'torch>=2.6,<2.16',  # torch.nn.utils.get_total_norm (engine) is new in 2.6
        'mmengine>=0.10.4,<0.11',
        'mmsegmentation>=1.2.2,<1.3',
        'numpy>=1.23,<3',
        'opencv-python>=4.10.0.84,<5',  # first wheels built against numpy 2 (work on 1.x too)
        'ftfy>=6',  # imported by mmseg but not declared by it
        'regex',  # idem
        'matplotlib>=3.8.4,<4',  # idem: first release built against numpy 2
        'rich>=12',  # progress bars (also an mmengine dependency)
    ],
    extras_require={
        'lite': [f'mmcv-lite{MMCV_RANGE}'],
        'dev': ['pytest>=7', 'ruff==0.17.6'],
        'sweep': ['ray>=2.9,<3'],
    },
)
