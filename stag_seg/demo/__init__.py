"""Offline demo: procedural Cityscapes/ACDC-like data."""
from stag_seg.demo.synth import DemoDataPaths, generate_demo_data

__all__ = ['DemoDataPaths', 'generate_demo_data']
