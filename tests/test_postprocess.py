"""The stream's post-processing gives exactly mmseg's predictions (and so its mIoU)."""
import copy

import numpy as np
import pytest
import torch
from mmengine.structures import PixelData
from mmseg.evaluation import IoUMetric
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.models.utils import resize
from mmseg.structures import SegDataSample

from stag_seg.engine.iou_metric import StreamIoUMetric
from stag_seg.step import postprocess
from stag_seg.step.postprocess import ResizeBuffer, argmax_classes, predict_labels


class _Head:
    threshold = 0.3


class _Segmentor(BaseSegmentor):
    """Just enough of a segmentor to call mmseg's own ``postprocess_result``."""

    def __init__(self, align_corners: bool) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.decode_head = _Head()

    def extract_feat(self, inputs):
        raise NotImplementedError

    def encode_decode(self, inputs, batch_data_samples):
        raise NotImplementedError

    def loss(self, inputs, data_samples):
        raise NotImplementedError

    def predict(self, inputs, data_samples=None):
        raise NotImplementedError

    def _forward(self, inputs, data_samples=None):
        raise NotImplementedError


def _samples(n: int, **meta) -> list:
    return [SegDataSample(metainfo=dict(ori_shape=(1080, 1920), **meta)) for _ in range(n)]


def test_argmax_classes_is_argmax_with_ties_first():
    torch.manual_seed(0)
    logits = torch.randn(19, 64, 96)
    logits[7] = logits[3]                       # exact ties: the first index wins
    logits[:, 0, 0] = 1.0                       # all equal: class 0
    assert torch.equal(argmax_classes(logits), logits.argmax(0))
    logits[11, 2, 3] = float('nan')             # argmax ranks NaN highest; so must we
    assert torch.equal(argmax_classes(logits), logits.argmax(0))
    assert argmax_classes(logits).dtype == torch.long


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize('num_classes', [2, 19, 255])
def test_argmax_classes_is_argmax_for_every_dtype_and_extreme_values(dtype, num_classes):
    gen = torch.Generator().manual_seed(num_classes)
    logits = torch.randn(num_classes, 8, 40, generator=gen).to(dtype)
    logits[-1, 0] = 10.0                        # the last class wins a row (index K - 1)
    logits[:, 1] = -float('inf')                # all -inf: class 0
    logits[num_classes // 2, 1, :5] = float('inf')
    logits[:, 2] = 0.0
    logits[0, 2, ::2] = -0.0                    # -0.0 == 0.0: still the first index
    logits[:, 3] = logits[:, 3].round()         # many ties
    expected = logits.argmax(0)
    assert torch.equal(argmax_classes(logits), expected)
    assert (expected[0] == num_classes - 1).all() and (expected[1, 5:] == 0).all()


def test_argmax_classes_in_blocks_is_argmax_in_every_block(monkeypatch):
    monkeypatch.setattr(postprocess, 'ARGMAX_BLOCK_PIXELS', 300)    # 3 rows of 100 a block
    torch.manual_seed(2)
    logits = torch.randn(19, 37, 100)           # 12 full blocks and one of a single row
    logits[4] = logits[9]                       # ties everywhere: the first index wins
    logits[:, 36] = logits[:, 36].round()       # many ties in the last, partial block
    logits[13, 10, 5] = float('nan')            # one block falls back to argmax's NaN order
    assert torch.equal(argmax_classes(logits), logits.argmax(0))


def test_a_kept_resize_buffer_gives_mmseg_predictions_image_after_image():
    torch.manual_seed(3)
    buffer = ResizeBuffer()
    segmentor = _Segmentor(align_corners=False)
    batches = [torch.randn(2, 19, 135, 240), torch.randn(1, 19, 135, 240),
               torch.randn(1, 19, 64, 64)]
    shapes = [(1080, 1920), (1080, 1920), (512, 1024)]
    outputs, kept = [], []
    for seg_logits, shape in zip(batches, shapes, strict=True):
        samples = [SegDataSample(metainfo=dict(ori_shape=shape)) for _ in seg_logits]
        outputs.append((predict_labels(seg_logits, samples, False, buffer), seg_logits))
        kept.append(buffer.out)
    assert kept[0] is kept[1]                   # the same image size reuses the buffer
    assert buffer.out.shape == (1, 19, 512, 1024)
    for ours, seg_logits in outputs:            # every prediction, after all the others
        theirs = segmentor.postprocess_result(seg_logits.clone(), [
            SegDataSample(metainfo=s.metainfo) for s in ours])
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)


@pytest.mark.parametrize('meta', [
    dict(),
    dict(flip=True, flip_direction='horizontal'),
    dict(img_padding_size=[0, 8, 0, 4]),
])
@pytest.mark.parametrize('align_corners', [False, True])
def test_1080p_predictions_and_miou_equal_mmseg_postprocess(meta, align_corners):
    torch.manual_seed(1)
    seg_logits = torch.randn(1, 19, 135 + (4 if meta.get('img_padding_size') else 0),
                             240 + (8 if meta.get('img_padding_size') else 0))
    seg_logits[:, 5] = seg_logits[:, 2]          # ties survive the resize identically
    ours = predict_labels(seg_logits, _samples(1, **meta), align_corners)
    theirs = _Segmentor(align_corners).postprocess_result(seg_logits.clone(),
                                                          _samples(1, **meta))
    assert ours[0].pred_sem_seg.data.shape == (1, 1080, 1920)
    assert torch.equal(ours[0].pred_sem_seg.data, theirs[0].pred_sem_seg.data)

    label = torch.randint(0, 19, (1, 1080, 1920))
    label[:, :100] = 255
    metrics = []
    for samples in (ours, theirs):
        metric = StreamIoUMetric()
        metric.dataset_meta = dict(classes=[str(k) for k in range(19)])
        sample = copy.deepcopy(samples[0])
        sample.gt_sem_seg = PixelData(data=label)
        sample.set_metainfo(dict(img_path='x.png'))
        metric.process(None, [sample])
        metrics.append(metric.compute_metrics(metric.results))
    assert metrics[0]['mIoU'] == metrics[1]['mIoU']


@pytest.mark.parametrize('align_corners', [False, True])
def test_the_kept_resize_is_bitwise_mmseg_resize(align_corners):
    torch.manual_seed(5)
    buffer = ResizeBuffer()
    logits = torch.randn(1, 19, 60, 100)

    def theirs(x):
        return resize(x, size=(270, 480), mode='bilinear', align_corners=align_corners)
    assert torch.equal(buffer.resize(logits, (270, 480), align_corners), theirs(logits))
    flipped = logits[:, :, 2:-3].flip(3)                     # cropped and flipped: strided
    assert torch.equal(buffer.resize(flipped, (270, 480), align_corners), theirs(flipped))
    fresh = ResizeBuffer()
    with torch.inference_mode():                              # made inside inference mode,
        inside = fresh.resize(torch.randn(1, 19, 60, 100), (270, 480), align_corners).clone()
    assert inside.shape == (1, 19, 270, 480)
    assert torch.equal(fresh.resize(logits, (270, 480), align_corners), theirs(logits))  # used out
    grad = logits.clone().requires_grad_(True)                # a gradient: a fresh resize
    out = buffer.resize(grad, (270, 480), align_corners)
    assert out.requires_grad and torch.equal(out.detach(), theirs(logits))


@pytest.mark.parametrize('num_classes', [19, 181, 200])   # int16 index (up to 181); not
@pytest.mark.parametrize('ignore_index', [255, 30000])
@pytest.mark.parametrize('label_dtype', [torch.long, torch.uint8])
def test_areas_are_mmseg_intersect_and_union(num_classes, ignore_index, label_dtype):
    if label_dtype == torch.uint8 and (ignore_index > 255 or num_classes > 255):
        pytest.skip('uint8 labels hold ids up to 255')
    torch.manual_seed(4)
    pred = torch.randint(0, num_classes, (270, 480))
    label = torch.randint(0, num_classes, (270, 480))
    label[:20] = ignore_index
    label[100:110, 50:60] = num_classes - 1
    pred[100:105, 50:60] = num_classes - 1                 # the last class's cells agree
    label = label.to(label_dtype)
    ours = StreamIoUMetric.intersect_and_union(pred, label, num_classes, ignore_index)
    theirs = IoUMetric.intersect_and_union(pred, label, num_classes, ignore_index)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, b.float())


def test_a_domain_without_valid_labels_scores_nan_without_numpy_noise():
    import warnings

    metric = StreamIoUMetric()
    metric.dataset_meta = dict(classes=[str(k) for k in range(19)])
    sample = SegDataSample()
    sample.pred_sem_seg = PixelData(data=torch.zeros(1, 4, 4, dtype=torch.long))
    sample.gt_sem_seg = PixelData(data=torch.full((1, 4, 4), 255))     # all ignored
    sample.set_metainfo(dict(img_path='x.png'))
    metric.process(None, [sample])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        metrics = metric.compute_metrics(metric.results)
    assert [str(w.message) for w in caught if 'empty slice' in str(w.message)] == []
    assert np.isnan(metrics['mIoU'])
