"""Procedural Cityscapes/ACDC-like data: street scenes, weather, and the cached dataset trees."""
from stag_seg.demo.synth.cache import (
    DemoDataPaths,
    cached_params,
    ensure_demo_data,
    generate_demo_data,
)
from stag_seg.demo.synth.naming import acdc_subset
from stag_seg.demo.synth.scene import Scene, render_scene
from stag_seg.demo.synth.weather import CONDITIONS, apply_condition

__all__ = ['CONDITIONS', 'DemoDataPaths', 'Scene', 'acdc_subset', 'apply_condition',
           'cached_params', 'ensure_demo_data', 'generate_demo_data', 'render_scene']
