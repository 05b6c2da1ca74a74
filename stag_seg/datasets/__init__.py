"""Datasets of the continual stream: ACDC conditions and label checks."""
from stag_seg.datasets.acdc import ACDC_CONDITIONS, ACDCDataset
from stag_seg.datasets.checks import check_label_ids

__all__ = ['ACDC_CONDITIONS', 'ACDCDataset', 'check_label_ids']
