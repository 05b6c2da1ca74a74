"""Render the offline demo data: procedural mini-Cityscapes and mini-ACDC trees.

Runs the ``stag-make-demo-data`` command (stag_seg/commands/make_demo_data.py)
from this clone; ``--help`` lists its options.
"""
import os.path as osp
import sys

import _common  # noqa: F401  (outside the environment: says how to set it up)

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this clone's stag_seg
from stag_seg.commands.make_demo_data import main, parse_args  # noqa: E402,F401

if __name__ == '__main__':
    sys.exit(main())
