"""Imports stag_seg first: its compat patches must precede any mmseg import in a test."""
import os.path as osp
import sys

import stag_seg  # noqa: F401

# tools/*.py import their shared module (tools/_common.py) by name, as scripts do
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools'))
