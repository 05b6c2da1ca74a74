"""Datasets of the continual stream: ACDC conditions, the label loader, ground-truth checks,
and the test-time-augmented views (CoTTA's)."""
from stag_seg.datasets.acdc import ACDC_CONDITIONS, ACDCDataset
from stag_seg.datasets.checks import check_image_file, check_label_files, check_label_ids
from stag_seg.datasets.transforms import LoadExactAnnotations
from stag_seg.datasets.tta_views import MultiScaleFlipViews, TestTimeAugSharedLabel

__all__ = ['ACDC_CONDITIONS', 'ACDCDataset', 'LoadExactAnnotations', 'MultiScaleFlipViews',
           'TestTimeAugSharedLabel', 'check_image_file', 'check_label_files', 'check_label_ids']
