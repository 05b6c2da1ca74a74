"""stag_seg.compat: mmcv-lite ops shim, torch>=2.6 checkpoints, pkg_resources-free configs."""
import functools
import logging
import os.path as osp
import pickle
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import stag_seg  # noqa: F401  (applies the compat fixes)
from stag_seg.compat import checkpoint as ckpt_compat
from stag_seg.compat import mmcv_ops, package_utils

REPO = Path(__file__).resolve().parents[1]
SEGFORMER_CFG = REPO / 'configs/_base_/models/segformer_mit-b5_cityscapes.py'
needs_shim = pytest.mark.skipif(mmcv_ops.compiled_ops_available(),
                                reason='full mmcv with compiled ops is installed; shim inactive')


# --------------------------------------------------------------------------- mmcv.ops shim
@needs_shim
def test_mmseg_imports_with_shim() -> None:
    import mmcv
    import mmseg.datasets  # noqa: F401
    import mmseg.models  # noqa: F401
    import mmseg.utils  # noqa: F401
    from mmcv.ops import DeformConv2d, point_sample  # import-time lookups work

    assert sys.modules['mmcv.ops'] is mmcv.ops is mmcv_ops.shim
    assert point_sample is mmcv_ops.point_sample
    assert not isinstance(torch.nn.Conv2d(1, 1, 1), DeformConv2d)  # stubs are classes
    assert mmcv.ops.DeformConv2d is DeformConv2d  # cached: one stub per name
    assert not hasattr(mmcv.ops, '__path__')
    with pytest.raises(AttributeError):
        mmcv.ops.__wrapped__  # noqa: B018


@needs_shim
def test_apply_is_idempotent() -> None:
    stag_seg.compat.apply()
    assert mmcv_ops.apply() is True
    assert sys.modules['mmcv.ops'] is mmcv_ops.shim


@needs_shim
def test_missing_op_raises_import_error_naming_op() -> None:
    import mmcv

    with pytest.raises(ImportError, match='sigmoid_focal_loss') as info:
        mmcv.ops.sigmoid_focal_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long),
                                    2.0, 0.25, None, 'mean')
    assert 'pip install mmcv==2.1.0' in str(info.value)
    with pytest.raises(ImportError, match='CrissCrossAttention'):
        mmcv.ops.CrissCrossAttention(8)


def _bilinear_reference(img: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Hand-written bilinear sampling, align_corners=False, zero padding; (N,C,H,W),(N,P,2)."""
    n, c, h, w = img.shape
    out = torch.zeros(n, c, points.shape[1], dtype=img.dtype)
    for b in range(n):
        for p, (px, py) in enumerate(points[b].tolist()):
            x, y = px * w - 0.5, py * h - 0.5
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                if 0 <= xi < w and 0 <= yi < h:
                    weight = (1 - abs(x - xi)) * (1 - abs(y - yi))
                    out[b, :, p] += weight * img[b, :, yi, xi]
    return out


def test_point_sample_matches_bilinear_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 5, 7, generator=gen, dtype=torch.float64)
    points = torch.rand(2, 11, 2, generator=gen, dtype=torch.float64) * 1.2 - 0.1
    out = mmcv_ops.point_sample(img, points)
    assert out.shape == (2, 3, 11)
    torch.testing.assert_close(out, _bilinear_reference(img, points))

    grid_points = torch.rand(2, 4, 6, 2, generator=gen, dtype=torch.float64)
    expected = F.grid_sample(img, 2 * grid_points - 1, align_corners=False)
    torch.testing.assert_close(mmcv_ops.point_sample(img, grid_points), expected)
    expected = F.grid_sample(img, 2 * grid_points - 1, align_corners=True)
    torch.testing.assert_close(
        mmcv_ops.point_sample(img, grid_points, align_corners=True), expected)


def test_point_sample_at_pixel_centres_returns_pixels() -> None:
    img = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    ys, xs = torch.meshgrid(torch.arange(4), torch.arange(6), indexing='ij')
    centres = torch.stack([(xs + 0.5) / 6, (ys + 0.5) / 4], dim=-1).reshape(1, -1, 2)
    torch.testing.assert_close(mmcv_ops.point_sample(img, centres), img.reshape(1, 2, -1))


# --------------------------------------------------------------------------- checkpoints
def _tiny_segformer(num_classes: int = 19) -> torch.nn.Module:
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    init_default_scope('mmseg')
    return MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='MixVisionTransformer', in_channels=3, embed_dims=8, num_stages=4,
                      num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                      patch_sizes=[7, 3, 3, 3], sr_ratios=[8, 4, 2, 1],
                      out_indices=(0, 1, 2, 3), mlp_ratio=4),
        decode_head=dict(type='SegformerHead', in_channels=[8, 8, 8, 8],
                         in_index=[0, 1, 2, 3], channels=16, num_classes=num_classes,
                         norm_cfg=dict(type='BN', requires_grad=True), align_corners=False,
                         loss_decode=dict(type='CrossEntropyLoss')),
        test_cfg=dict(mode='whole')))


def _save_runner_style(model: torch.nn.Module, path: Path) -> None:
    """Save like mmengine's Runner: state_dict + meta/message_hub holding non-tensor objects."""
    from mmengine.config import ConfigDict
    from mmengine.logging import MessageHub
    from mmengine.runner import save_checkpoint

    hub = MessageHub('stag-seg-test')
    hub.update_scalar('train/loss', 0.5)
    meta = dict(epoch=1, iter=10, seed=np.int64(3), hist=np.arange(4),
                cfg=ConfigDict(model=dict(type='EncoderDecoder')))
    save_checkpoint(dict(meta=meta, state_dict=model.state_dict(),
                         message_hub=hub.state_dict()), str(path))


@pytest.fixture
def runner_checkpoint(tmp_path: Path) -> tuple:
    torch.manual_seed(0)
    model = _tiny_segformer()
    path = tmp_path / 'tiny_segformer.pth'
    _save_runner_style(model, path)
    with pytest.raises(pickle.UnpicklingError):  # what plain torch>=2.6 does with it
        torch.load(path, weights_only=True)
    return model, path


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


@pytest.fixture
def warnings_logged(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []
    monkeypatch.setattr(ckpt_compat, 'print_log', lambda msg, **kw: calls.append((msg, kw)))
    return calls


def test_load_segmentor_checkpoint_with_runner_meta(runner_checkpoint: tuple,
                                                    warnings_logged: list) -> None:
    source, path = runner_checkpoint
    torch.manual_seed(1)
    target = _tiny_segformer()
    assert not torch.equal(target.decode_head.conv_seg.weight, source.decode_head.conv_seg.weight)

    ckpt_compat.trust_checkpoint(str(path))          # what --trust-checkpoint does
    checkpoint = ckpt_compat.load_segmentor_checkpoint(target, str(path))
    _assert_same_state(source, target)
    np.testing.assert_array_equal(checkpoint['meta']['hist'], np.arange(4))
    assert checkpoint['meta']['cfg'].model.type == 'EncoderDecoder'
    assert len(warnings_logged) == 1
    msg, kwargs = warnings_logged[0]
    assert '--trust-checkpoint' in msg and kwargs['level'] == logging.WARNING
    with ckpt_compat.unlogged_trust():              # the start check's load: not logged
        ckpt_compat.load_segmentor_checkpoint(_tiny_segformer(), str(path))
    assert len(warnings_logged) == 1
    ckpt_compat.load_segmentor_checkpoint(_tiny_segformer(), str(path))
    assert len(warnings_logged) == 2                # every other load is


def test_mmengine_load_checkpoint_uses_fallback_only_when_trusted(runner_checkpoint: tuple
                                                                  ) -> None:
    from mmengine.runner import load_checkpoint

    source, path = runner_checkpoint
    torch.manual_seed(2)
    target = _tiny_segformer()
    with pytest.raises(ckpt_compat.UntrustedCheckpointError, match='--trust-checkpoint'):
        load_checkpoint(target, str(path), map_location='cpu')
    ckpt_compat.trust_checkpoint(str(path))
    load_checkpoint(target, str(path), map_location='cpu')
    _assert_same_state(source, target)


class _Payload:
    """Unpickling this creates ``marker``: code a checkpoint file can carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def save_payload(path: Path, marker: Path) -> str:
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'meta': _Payload(marker)}, path)
    return str(path)


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    from mmengine.runner import CheckpointLoader

    marker = tmp_path / 'payload_ran'
    path = save_payload(tmp_path / 'evil.pth', marker)
    for load in (lambda: ckpt_compat.load_segmentor_checkpoint(_tiny_segformer(), path),
                 lambda: CheckpointLoader.load_checkpoint(path, map_location='cpu'),
                 lambda: ckpt_compat.load_from_local(path)):
        with pytest.raises(ckpt_compat.UntrustedCheckpointError) as info:
            load()
        message = str(info.value)
        assert '\n' not in message and message.startswith(f'{path}: refused: not plain weights')
        assert '(unsupported global io.open)' in message
        assert message.endswith('pass --trust-checkpoint')
        assert not marker.exists()
    # another file vouched for changes nothing for this one
    ckpt_compat.trust_checkpoint(str(tmp_path / 'other.pth'))
    with pytest.raises(ckpt_compat.UntrustedCheckpointError):
        ckpt_compat.load_from_local(path)
    assert not marker.exists()


def test_a_text_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / 'notes.pth'
    path.write_text('these are not weights\n')
    with pytest.raises(ValueError, match=f'^{path}: not a PyTorch checkpoint'):
        ckpt_compat.load_from_local(str(path))
    with pytest.raises(FileNotFoundError, match='is a directory'):
        ckpt_compat.load_from_local(str(tmp_path))


def test_the_shipped_checkpoint_is_plain_weights() -> None:
    checkpoint = torch.load(REPO / 'checkpoints' / 'segformer_mini_minicity.pth',
                            map_location='cpu', weights_only=True)
    assert any(isinstance(v, torch.Tensor) for v in checkpoint['state_dict'].values())


def test_plain_state_dict_loads_without_warning(tmp_path: Path, warnings_logged: list) -> None:
    source = _tiny_segformer()
    path = tmp_path / 'weights.pth'
    torch.save({'state_dict': source.state_dict()}, path)
    target = _tiny_segformer()
    ckpt_compat.load_segmentor_checkpoint(target, str(path))
    _assert_same_state(source, target)
    assert warnings_logged == []


def test_http_checkpoint(runner_checkpoint: tuple, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    from mmengine.runner import CheckpointLoader

    source, path = runner_checkpoint
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(path.parent))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f'http://127.0.0.1:{server.server_port}/{path.name}'
        with pytest.raises(ckpt_compat.UntrustedCheckpointError, match=url):
            CheckpointLoader.load_checkpoint(url, map_location='cpu')
        ckpt_compat.trust_checkpoint(url)
        checkpoint = CheckpointLoader.load_checkpoint(url, map_location='cpu')
    finally:
        server.shutdown()
        server.server_close()
    for key, value in source.state_dict().items():
        torch.testing.assert_close(checkpoint['state_dict'][key], value, rtol=0, atol=0)


def test_class_count_mismatch_raises(runner_checkpoint: tuple) -> None:
    _, path = runner_checkpoint
    ckpt_compat.trust_checkpoint(str(path))
    target = _tiny_segformer(num_classes=7)
    before = target.backbone.layers[0][0].projection.weight.clone()
    with pytest.raises(ValueError, match='conv_seg') as info:
        ckpt_compat.load_segmentor_checkpoint(target, str(path))
    message = str(info.value)
    assert path.name in message and 'decode_head.conv_seg.weight' in message
    assert '(19, 16, 1, 1)' in message and '(7, 16, 1, 1)' in message
    assert torch.equal(before, target.backbone.layers[0][0].projection.weight)  # untouched


# --------------------------------------------------------------------------- pkg_resources
@pytest.fixture
def without_pkg_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pkg_resources unimportable (if installed) and install the replacements."""
    if not package_utils.pkg_resources_missing():
        monkeypatch.setitem(sys.modules, 'pkg_resources', None)
        for target in package_utils._TARGETS:  # restore mmengine's helpers afterwards
            module = sys.modules.get(target)
            for name in ('is_installed', 'get_installed_path', 'package2module'):
                if module is not None and hasattr(module, name):
                    monkeypatch.setattr(module, name, getattr(module, name))
        assert package_utils.apply()
    assert package_utils.pkg_resources_missing()


def test_package_helpers(without_pkg_resources: None) -> None:
    import mmengine.config.config as mm_config
    import mmseg

    assert mm_config.is_installed is package_utils.is_installed
    assert mm_config.get_installed_path is package_utils.get_installed_path
    assert package_utils.is_installed('mmsegmentation')
    assert package_utils.is_installed('mmseg')
    assert not package_utils.is_installed('stag-seg-no-such-package')
    assert package_utils.package2module('mmsegmentation') == 'mmseg'
    mmseg_dir = osp.dirname(mmseg.__file__)
    assert package_utils.get_installed_path('mmsegmentation') == mmseg_dir
    assert package_utils.get_installed_path('mmseg') == mmseg_dir


def test_config_with_mmseg_base(without_pkg_resources: None) -> None:
    from mmengine.config import Config

    cfg = Config.fromfile(str(SEGFORMER_CFG))
    assert cfg.model.backbone.type == 'MixVisionTransformer'
    assert cfg.model.backbone.num_layers == [3, 6, 40, 3]
    assert cfg.model.backbone.init_cfg is None
    assert cfg.model.decode_head.norm_cfg.type == 'BN'
    assert cfg.model.test_cfg == dict(mode='whole')
