"""Test-time adaptation methods, one module each, registered in ``TTA_METHODS``.

A method is one small object that owns its step (the shape of TENT's reference code):
``configure_model`` (modes and what is frozen), ``collect_params`` (exactly what the optimizer
gets) and the parts of ``forward_and_adapt`` it changes (``forward``, ``keep``, ``loss``,
``adapt``, ``after_update``), with the operations of ``stag_seg.step`` (the learner). Methods
do not import the engine.
"""
from stag_seg.methods.base import TTAMethod
from stag_seg.methods.bn_adapt import BNAdapt
from stag_seg.methods.cotta import CoTTA
from stag_seg.methods.eata import EATA
from stag_seg.methods.norm import NORM_TYPES, use_test_batch_statistics
from stag_seg.methods.sar import SAR
from stag_seg.methods.source import Source
from stag_seg.methods.tent import Tent, TentPseudoLabel
from stag_seg.step.context import StepResult

__all__ = ['BNAdapt', 'CoTTA', 'EATA', 'NORM_TYPES', 'SAR', 'Source', 'StepResult', 'TTAMethod',
           'Tent', 'TentPseudoLabel', 'use_test_batch_statistics']
