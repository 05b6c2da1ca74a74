"""Cityscapes source-model configs build on CPU without SyncBN or downloads; 19-class logits."""
from pathlib import Path

import pytest
import torch

import stag_seg  # noqa: F401  (compat fixes)

REPO = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = {
    'segformer_mit-b5': REPO / 'configs/_base_/models/segformer_mit-b5_cityscapes.py',
    'deeplabv3plus_r50': REPO / 'configs/_base_/models/deeplabv3plus_r50-d8_cityscapes.py',
}


@pytest.mark.parametrize('name', sorted(MODEL_CONFIGS))
def test_model_config_builds_and_predicts(name: str) -> None:
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    cfg = Config.fromfile(str(MODEL_CONFIGS[name]))
    assert cfg.model.test_cfg == dict(mode='whole')
    assert cfg.model.backbone.init_cfg is None and not cfg.model.get('pretrained')

    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    norm_types = {type(m).__name__ for m in model.modules()}
    assert not any('Sync' in t for t in norm_types), norm_types
    assert 'BatchNorm2d' in norm_types

    inputs = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        logits = model(inputs, mode='tensor')
        full = model.encode_decode(inputs, [dict(img_shape=(64, 128))])
    assert logits.shape[:2] == (1, 19) and logits.dim() == 4
    assert full.shape == (1, 19, 64, 128)
    assert torch.isfinite(full).all()
