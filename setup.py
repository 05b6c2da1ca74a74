"""stag-seg: continual test-time adaptation for MMSegmentation 1.x.

mmcv is not an install requirement, so that installing stag-seg never overwrites a full mmcv that
is already there (``mmcv`` and ``mmcv-lite`` both own ``site-packages/mmcv/``):

- ``pip install 'stag-seg[lite]'`` adds ``mmcv-lite``; ``stag_seg.compat`` then provides the few
  compiled ops mmseg needs in pure torch (the README's set-up, scripts/env.sh and CI);
- plain ``pip install stag-seg`` is for an environment that already has full mmcv 2.x
  (>=2.0.0rc4,<2.2.0, the range mmseg 1.2 accepts), with its compiled ops.

A wheel carries the console commands (COMMANDS) and, under ``stag_seg/.mim/``, copies of the
clone's ``configs/`` and the demo checkpoint (SHIPPED), made at build time so that the clone
keeps the only committed copy; ``stag_seg.resources`` finds them in either place.
"""
import re
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
VERSION = re.search(r"^__version__ = '([^']+)'",
                    (HERE / 'stag_seg' / '__init__.py').read_text(), re.M).group(1)
MMCV_RANGE = '>=2.0.0rc4,<2.2.0'  # what mmseg 1.2.x asserts at import
#: console command -> module of stag_seg.commands (tools/<module>.py runs it in a clone)
COMMANDS = {
    'stag-tta': 'test_tta',
    'stag-sweep': 'sweep',
    'stag-study': 'study',
    'stag-compare': 'compare_runs',
    'stag-benchmark': 'benchmark',
    'stag-convert': 'convert_segformer_checkpoint',
    'stag-demo': 'demo',
    'stag-make-demo-data': 'make_demo_data',
    'stag-train-demo-model': 'train_demo_model',
}
#: files of the clone a wheel ships under stag_seg/.mim/ (folders copied whole)
SHIPPED = ('configs', 'checkpoints/segformer_mini_minicity.pth')


class BuildPyWithShippedFiles(build_py):
    """build_py, then SHIPPED copied into the built package's .mim/ (not for editable
    installs, which read the clone's files in place)."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        mim = Path(self.build_lib) / 'stag_seg' / '.mim'
        shutil.rmtree(mim, ignore_errors=True)      # no stale copy from an earlier build
        for rel in SHIPPED:
            src, dst = HERE / rel, mim / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__'))
            else:
                shutil.copy2(src, dst)

setup(
    name='stag-seg',
    version=VERSION,
    description='Continual test-time adaptation for MMSegmentation 1.x (STAG)',
    packages=find_packages(include=['stag_seg', 'stag_seg.*']),
    python_requires='>=3.10',
    cmdclass={'build_py': BuildPyWithShippedFiles},
    entry_points={'console_scripts': [f'{name} = stag_seg.commands.{module}:main'
                                      for name, module in COMMANDS.items()]},
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
        'dev': ['pytest>=7', 'pytest-xdist>=3', 'ruff==0.17.6',
                'tensorboard>=2.14'],  # tensorboard: the vis-backend test
        'vis': ['tensorboard>=2.14'],  # mmengine's TensorboardVisBackend
        'sweep': ['ray>=2.9,<3'],
    },
)
