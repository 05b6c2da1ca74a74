"""NVlabs SegFormer's all-MLP decode head, with its checkpoint's key layout."""
from __future__ import annotations

import torch
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from torch import Tensor, nn


class TokenLinear(nn.Module):
    """Per-pixel linear embedding, (N, C_in, H, W) -> (N, C_out, H, W).

    The weights are an ``nn.Linear`` named ``proj`` applied to the flattened tokens, as in
    NVlabs' ``MLP`` (keys ``linear_c<i>.proj.weight`` of shape (C_out, C_in)).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        tokens = self.proj(x.flatten(2).transpose(1, 2))           # (N, H*W, C_out)
        return tokens.transpose(1, 2).reshape(n, -1, h, w)


@MODELS.register_module()
class NVSegFormerHead(BaseDecodeHead):
    """SegFormer head as NVlabs wrote it (``SegFormerHead`` of NVlabs/SegFormer, mmseg 0.x).

    Each stage i gets a linear embedding ``linear_c<i>`` to ``channels`` (no norm), stages
    2.. are upsampled to stage 1's size, the maps are concatenated deepest first
    (c4, c3, c2, c1), fused by ``linear_fuse`` (1x1 conv, norm, activation), and after dropout
    the classifier ``conv_seg`` (channels -> num_classes) gives the logits at 1/4 resolution.

    mmseg 1.x's ``SegformerHead`` differs (conv embeddings with norm, concat c1 first), so
    NVlabs checkpoints need this head; ``channels`` is NVlabs' ``decoder_params.embed_dim``.
    """

    def __init__(self, interpolate_mode: str = 'bilinear', **kwargs) -> None:
        super().__init__(input_transform='multiple_select', **kwargs)
        self.interpolate_mode = interpolate_mode
        for i, in_channels in enumerate(self.in_channels, start=1):
            setattr(self, f'linear_c{i}', TokenLinear(in_channels, self.channels))
        self.linear_fuse = ConvModule(
            in_channels=self.channels * len(self.in_channels),
            out_channels=self.channels,
            kernel_size=1,
            norm_cfg=self.norm_cfg,
            act_cfg=self.act_cfg)

    def forward(self, inputs: list[Tensor]) -> Tensor:
        """Backbone maps (N, C_i, H/s_i, W/s_i), strides 4, 8, ... -> logits (N, K, H/4, W/4)."""
        feats = self._transform_inputs(inputs)
        size = feats[0].shape[2:]
        embedded = []
        for i, x in enumerate(feats, start=1):
            x = getattr(self, f'linear_c{i}')(x)
            if x.shape[2:] != size:
                x = resize(x, size=size, mode=self.interpolate_mode,
                           align_corners=self.align_corners)
            embedded.append(x)
        fused = self.linear_fuse(torch.cat(embedded[::-1], dim=1))  # c4, c3, c2, c1
        return self.cls_seg(fused)
