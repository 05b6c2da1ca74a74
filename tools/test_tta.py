"""Run continual test-time adaptation over a config's stream and write per-domain reports.

Runs the ``stag-tta`` command (stag_seg/commands/test_tta.py)
from this clone; ``--help`` lists its options.
"""
import os.path as osp
import sys

import _common  # noqa: F401  (outside the environment: says how to set it up)

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # this clone's stag_seg
from stag_seg.commands.test_tta import main, parse_args  # noqa: E402,F401

if __name__ == '__main__':
    sys.exit(main())
