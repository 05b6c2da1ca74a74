"""Compare CTTA runs: one mIoU-over-the-stream figure and one methods x domains table.

Runs the ``stag-compare`` command (stag_seg/commands/compare_runs.py)
from this clone; ``--help`` lists its options.
"""
import os.path as osp
import sys

import _common  # noqa: F401  (outside the environment: says how to set it up)

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this clone's stag_seg
from stag_seg.commands.compare_runs import main, parse_args  # noqa: E402,F401

if __name__ == '__main__':
    sys.exit(main())
