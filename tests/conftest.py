"""Imports stag_seg first: its compat patches must precede any mmseg import in a test."""
import stag_seg  # noqa: F401
