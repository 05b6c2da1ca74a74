"""stag-seg: continual test-time adaptation for MMSegmentation 1.x.

Full ``mmcv`` (with compiled ops, same version range) can replace ``mmcv-lite``; without it,
``stag_seg.compat`` provides the few ops mmseg needs in pure torch.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
VERSION = re.search(r"^__version__ = '([^']+)'",
                    (HERE / 'stag_seg' / '__init__.py').read_text(), re.M).group(1)

setup(
    name='stag-seg',
    version=VERSION,
    description='Continual test-time adaptation for MMSegmentation 1.x (STAG)',
    packages=find_packages(include=['stag_seg', 'stag_seg.*']),
    python_requires='>=3.10',
    install_requires=[
        'torch>=2.1,<2.15',
        'mmengine>=0.10.4,<0.11',
        'mmcv-lite>=2.0.0rc4,<2.2.0',
        'mmsegmentation>=1.2.2,<1.3',
        'numpy>=1.23,<2',
        'opencv-python>=4.7,<5',
        'ftfy>=6',  # imported by mmseg but not declared by it
        'regex',  # idem
        'matplotlib>=3.6,<4',
        'rich>=12',  # progress bars (also an mmengine dependency)
    ],
    extras_require={'dev': ['pytest>=7', 'ruff==0.17.6']},
)
