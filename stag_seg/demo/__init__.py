"""Offline demo: procedural data (``synth/``) and the experiments run on it.

``synth/`` renders mini-Cityscapes/mini-ACDC trees; ``launch`` runs one method's config over
the demo stream; ``run`` is the demo (Source vs TENT vs TENT+STAG by default, every method on
request); ``study`` is the rule that chose STAG's defaults from the study's sweep
(``configs/sweeps/study_stag.py``); ``source_model`` trains the shipped source model.
"""
from stag_seg.demo.launch import run_method
from stag_seg.demo.run import run_demo
from stag_seg.demo.source_model import DEMO_CHECKPOINT, DEMO_MODEL_CONFIG, train_source_model
from stag_seg.demo.synth import DemoDataPaths, generate_demo_data

__all__ = ['DEMO_CHECKPOINT', 'DEMO_MODEL_CONFIG', 'DemoDataPaths', 'generate_demo_data',
           'run_demo', 'run_method', 'train_source_model']
