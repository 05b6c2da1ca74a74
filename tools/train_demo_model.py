"""Train the demo's source model on mini-Cityscapes and publish it as a weights-only checkpoint.

Runs the ``stag-train-demo-model`` command (stag_seg/commands/train_demo_model.py)
from this clone; ``--help`` lists its options.
"""
import os.path as osp
import sys

import _common  # noqa: F401  (outside the environment: says how to set it up)

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this clone's stag_seg
from stag_seg.commands.train_demo_model import main, parse_args  # noqa: E402,F401

if __name__ == '__main__':
    sys.exit(main())
