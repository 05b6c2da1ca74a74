"""Imports stag_seg first: its compat patches must precede any mmseg import in a test."""
import os
import os.path as osp
import sys

# The suite's records are pinned on CPU (bit-exact resume, records equal across runs): it runs
# on CPU also where CUDA is available, unless STAG_TEST_CUDA=1 (for the CUDA tests, e.g.
# `STAG_TEST_CUDA=1 python -m pytest tests/test_fast_step.py -k cuda`). Set before torch and
# mmengine look for devices (mmengine picks its device once, at import); subprocesses and
# pytest-xdist workers inherit it.
if os.environ.get('STAG_TEST_CUDA') != '1':
    os.environ['CUDA_VISIBLE_DEVICES'] = ''

import stag_seg  # noqa: E402,F401

# tools/*.py import their shared module (tools/_common.py) by name, as scripts do
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools'))
