"""Convert NVlabs or HuggingFace SegFormer checkpoints into checkpoints of our mmseg 1.x model.

Two sources, told apart by their keys:

- ``nvlabs``: NVlabs/SegFormer's mmseg 0.x file (``{'meta', 'state_dict'}`` with ``backbone.*``
  MiT keys and ``decode_head.*`` keys of its ``SegFormerHead``), e.g.
  ``segformer.b5.1024x1024.city.160k.pth``;
- ``huggingface``: ``SegformerForSemanticSegmentation`` weights (``pytorch_model.bin``, or
  ``model.safetensors`` when the ``safetensors`` package is installed), e.g.
  ``nvidia/segformer-b5-finetuned-cityscapes-1024-1024``; keys ``segformer.encoder.*`` and
  ``decode_head.*``, with attention key and value as two tensors.

HuggingFace keys are first renamed to NVlabs' (key and value stacked into one ``kv``), then the
backbone goes through mmseg's own ``convert_mit`` (``tools/model_converters/mit2mmseg.py`` of
the installed mmseg) and the head's classifier ``linear_pred`` becomes ``conv_seg`` (NVlabs'
own unused ``conv_seg`` is dropped). The result must match the model built from the config
key for key and shape for shape; anything unknown, missing or mis-shaped is an error naming it.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import os.path as osp
import re
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor

from stag_seg.reports.atomic import atomic_write

NVLABS, HUGGINGFACE = 'nvlabs', 'huggingface'
DEFAULT_CONFIG = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                          'configs', '_base_', 'models', 'segformer_mit-b5-nvlabs_cityscapes.py')
CONVERTER = 'stag_seg.models.segformer_convert'

# HuggingFace name -> NVlabs name (transformers' convert_segformer_original_to_pytorch.py,
# read backwards); attention key/value are handled apart (they become one ``kv``).
_HF_TO_NVLABS: list[tuple[re.Pattern, Callable[[re.Match], str | None]]] = [
    (re.compile(r'segformer\.encoder\.patch_embeddings\.(\d+)\.(proj|layer_norm)\.(\w+)'),
     lambda m: f'backbone.patch_embed{int(m[1]) + 1}.'
               f'{"proj" if m[2] == "proj" else "norm"}.{m[3]}'),
    (re.compile(r'segformer\.encoder\.block\.(\d+)\.(\d+)\.(.+)'),
     lambda m: _hf_block_key(int(m[1]), m[2], m[3])),
    (re.compile(r'segformer\.encoder\.layer_norm\.(\d+)\.(\w+)'),
     lambda m: f'backbone.norm{int(m[1]) + 1}.{m[2]}'),
    (re.compile(r'decode_head\.linear_c\.(\d+)\.proj\.(\w+)'),
     lambda m: f'decode_head.linear_c{int(m[1]) + 1}.proj.{m[2]}'),
    (re.compile(r'decode_head\.linear_fuse\.(weight)'),
     lambda m: f'decode_head.linear_fuse.conv.{m[1]}'),
    (re.compile(r'decode_head\.batch_norm\.(\w+)'),
     lambda m: f'decode_head.linear_fuse.bn.{m[1]}'),
    (re.compile(r'decode_head\.classifier\.(\w+)'),
     lambda m: f'decode_head.linear_pred.{m[1]}'),
]
_HF_BLOCK_PARTS = {
    'layer_norm_1': 'norm1', 'layer_norm_2': 'norm2',
    'attention.self.query': 'attn.q', 'attention.self.sr': 'attn.sr',
    'attention.self.layer_norm': 'attn.norm', 'attention.output.dense': 'attn.proj',
    'mlp.dense1': 'mlp.fc1', 'mlp.dwconv.dwconv': 'mlp.dwconv.dwconv', 'mlp.dense2': 'mlp.fc2',
}
_HF_KEY_VALUE = re.compile(r'segformer\.encoder\.block\.(\d+)\.(\d+)\.attention\.self\.'
                           r'(key|value)\.(weight|bias)')


class ConversionError(ValueError):
    """A checkpoint that cannot become a checkpoint of the configured model."""


@dataclass
class Converted:
    """A converted state dict, its source format, and each key's source key(s)."""

    source_format: str
    state_dict: OrderedDict[str, Tensor]
    origin: dict[str, list[str]]


def _hf_rename(key: str) -> str | None:
    """The NVlabs name of a HuggingFace key (not attention key/value), or None if unknown."""
    for pattern, rename in _HF_TO_NVLABS:
        match = pattern.fullmatch(key)
        if match:
            return rename(match)
    return None


def _hf_block_key(stage: int, index: str, part: str) -> str | None:
    """``segformer.encoder.block.<stage>.<index>.<part>`` -> NVlabs ``backbone.block...``."""
    module, _, param = part.rpartition('.')
    if module not in _HF_BLOCK_PARTS:
        return None
    return f'backbone.block{stage + 1}.{index}.{_HF_BLOCK_PARTS[module]}.{param}'


@functools.lru_cache(maxsize=1)
def mmseg_convert_mit() -> Callable[[Mapping[str, Tensor]], OrderedDict]:
    """mmseg's ``convert_mit`` (NVlabs MiT keys -> mmseg ``MixVisionTransformer`` keys)."""
    import mmseg
    root = osp.dirname(mmseg.__file__)
    candidates = [osp.join(root, '.mim', 'tools', 'model_converters', 'mit2mmseg.py'),
                  osp.join(osp.dirname(root), 'tools', 'model_converters', 'mit2mmseg.py')]
    for path in candidates:
        if osp.isfile(path):
            spec = importlib.util.spec_from_file_location('_mmseg_mit2mmseg', path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.convert_mit
    raise FileNotFoundError('mmseg\'s MiT converter mit2mmseg.py was not found (looked at '
                            f'{", ".join(candidates)}); reinstall mmsegmentation')


def read_checkpoint(path: str, trust: bool = False) -> OrderedDict[str, Tensor]:
    """The tensors of an NVlabs ``.pth`` or a HuggingFace ``.bin`` / ``.safetensors`` file,
    read with ``torch.load(weights_only=True)`` (``trust``: a file that needs full unpickling
    is unpickled)."""
    if osp.isdir(path):
        found = [n for n in ('model.safetensors', 'pytorch_model.bin')
                 if osp.isfile(osp.join(path, n))]
        raise ConversionError(f'{path} is a directory, not a checkpoint file'
                              + (f'; did you mean {osp.join(path, found[0])}?' if found else ''))
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    if path.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConversionError(
                f'{path}: reading .safetensors needs the safetensors package '
                '(pip install safetensors), or convert pytorch_model.bin instead') from None
        try:
            return OrderedDict(load_file(path, device='cpu'))
        except Exception as e:             # safetensors' own errors
            raise ConversionError(f'{path}: not a safetensors file ({e})') from None
    from stag_seg.compat.checkpoint import load_from_local, trust_checkpoint
    if trust:
        trust_checkpoint(path)
    try:
        checkpoint = load_from_local(path, map_location='cpu')
    except ValueError as e:                # not a checkpoint; not plain weights and untrusted
        raise ConversionError(str(e)) from None
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get('state_dict'), Mapping):
        checkpoint = checkpoint['state_dict']
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise ConversionError(f'{path}: expected a state dict or {{"state_dict": ...}}, '
                              f'got {type(checkpoint).__name__}')
    not_tensors = [k for k, v in checkpoint.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ConversionError(f'{path}: entries that are not tensors: {_names(not_tensors)}')
    return OrderedDict(checkpoint)


def detect_format(state_dict: Mapping[str, Tensor]) -> str:
    """``'nvlabs'`` or ``'huggingface'``, from the backbone's key names."""
    if any(k.startswith('backbone.patch_embed') for k in state_dict):
        return NVLABS
    if any(k.startswith('segformer.encoder.') for k in state_dict):
        return HUGGINGFACE
    raise ConversionError('neither an NVlabs SegFormer checkpoint (backbone.patch_embed1.*) nor '
                          'a HuggingFace one (segformer.encoder.*); first keys: '
                          f'{_names(list(state_dict)[:5])}')


def huggingface_to_nvlabs(state_dict: Mapping[str, Tensor]
                          ) -> tuple[OrderedDict[str, Tensor], dict[str, list[str]]]:
    """Rename HuggingFace keys to NVlabs'; attention key and value (C, C) stack into kv (2C, C).

    Returns the NVlabs-named state dict and, per NVlabs key, the HuggingFace key(s) it came from.
    """
    out: OrderedDict[str, Tensor] = OrderedDict()
    origin: dict[str, list[str]] = {}
    key_value: dict[str, dict[str, str]] = {}
    unknown = []
    for key, value in state_dict.items():
        kv = _HF_KEY_VALUE.fullmatch(key)
        if kv:
            nv_key = f'backbone.block{int(kv[1]) + 1}.{kv[2]}.attn.kv.{kv[4]}'
            key_value.setdefault(nv_key, {})[kv[3]] = key
            continue
        nv_key = _hf_rename(key)
        if nv_key is None:
            unknown.append(key)
        else:
            out[nv_key], origin[nv_key] = value, [key]
    if unknown:
        raise ConversionError(f'unknown HuggingFace SegFormer keys: {_names(unknown)}')
    for nv_key, parts in key_value.items():
        missing = [name for name in ('key', 'value') if name not in parts]
        if missing:
            present = next(iter(parts.values()))
            wanted = [re.sub(r'\.(key|value)\.', f'.{m}.', present) for m in missing]
            raise ConversionError(f'missing HuggingFace keys: {_names(wanted)} '
                                  f'(needed with {present})')
        k, v = state_dict[parts['key']], state_dict[parts['value']]
        if k.shape != v.shape:
            raise ConversionError(f'{parts["key"]} has shape {tuple(k.shape)} but '
                                  f'{parts["value"]} has {tuple(v.shape)}')
        out[nv_key] = torch.cat([k, v], dim=0)               # NVlabs: kv[:C] key, kv[C:] value
        origin[nv_key] = [parts['key'], parts['value']]
    return out, origin


def nvlabs_to_mmseg(state_dict: Mapping[str, Tensor]
                    ) -> tuple[OrderedDict[str, Tensor], dict[str, list[str]]]:
    """NVlabs keys -> our model's keys (mmseg MiT backbone, ``NVSegFormerHead``).

    Returns the converted state dict and, per converted key, the NVlabs key(s) it came from.
    """
    others = [k for k in state_dict if not k.startswith(('backbone.', 'decode_head.'))]
    if others:
        raise ConversionError(f'unknown keys (neither backbone.* nor decode_head.*): '
                              f'{_names(others)}')
    backbone = OrderedDict((k[len('backbone.'):], v) for k, v in state_dict.items()
                           if k.startswith('backbone.'))
    for key, value in backbone.items():           # mmseg concatenates q with kv: check first
        if '.attn.q.' in key:
            kv_key = key.replace('.attn.q.', '.attn.kv.')
            if kv_key not in backbone:
                raise ConversionError(f'missing key: backbone.{kv_key} (needed with '
                                      f'backbone.{key})')
            if backbone[kv_key].shape[1:] != value.shape[1:]:
                raise ConversionError(
                    f'backbone.{key} has shape {tuple(value.shape)} but backbone.{kv_key} has '
                    f'{tuple(backbone[kv_key].shape)}; they must agree past the first dim')
    convert_mit = mmseg_convert_mit()
    try:
        converted = convert_mit(backbone)
        # where each converted key came from: convert the key indices as 1-d tensors
        tags = convert_mit(OrderedDict((k, torch.tensor([float(i)]))
                                       for i, k in enumerate(backbone)))
    except (KeyError, ValueError, RuntimeError) as err:
        raise ConversionError(f'backbone keys that do not follow NVlabs\' MiT layout '
                              f'({type(err).__name__}: {err})') from None
    names = list(backbone)
    out: OrderedDict[str, Tensor] = OrderedDict()
    origin: dict[str, list[str]] = {}
    for key, value in converted.items():
        out[f'backbone.{key}'] = value
        origin[f'backbone.{key}'] = [f'backbone.{names[int(i)]}' for i in tags[key].flatten()]
    for key, value in state_dict.items():
        if not key.startswith('decode_head.') or key.startswith('decode_head.conv_seg.'):
            continue                          # NVlabs' conv_seg (channels=128) is never used
        new = key.replace('decode_head.linear_pred.', 'decode_head.conv_seg.')
        out[new], origin[new] = value, [key]
    return out, origin


def convert_state_dict(state_dict: Mapping[str, Tensor]) -> Converted:
    """An NVlabs or HuggingFace state dict -> our model's state dict (format auto-detected)."""
    source_format = detect_format(state_dict)
    if source_format == HUGGINGFACE:
        nvlabs, hf_origin = huggingface_to_nvlabs(state_dict)
    else:
        nvlabs, hf_origin = state_dict, {k: [k] for k in state_dict}
    converted, origin = nvlabs_to_mmseg(nvlabs)
    origin = {k: [s for nv in names for s in hf_origin[nv]] for k, names in origin.items()}
    return Converted(source_format, converted, origin)


def check_against_model(converted: Converted, expected: Mapping[str, Tensor]) -> None:
    """Raise ``ConversionError`` naming every unknown, missing or mis-shaped key.

    A missing BatchNorm ``num_batches_tracked`` counter is filled with 0 (it does not change
    the model's outputs); every other key must be present with the model's shape.
    """
    state_dict, origin = converted.state_dict, converted.origin
    for key, value in expected.items():
        if key.endswith('.num_batches_tracked') and key not in state_dict:
            state_dict[key] = torch.zeros_like(value)
            origin[key] = []

    def source(key: str) -> str:
        names = origin.get(key, [])
        return f' (from {" + ".join(names)})' if names and names != [key] else ''

    problems = []
    unknown = [k for k in state_dict if k not in expected]
    if unknown:
        problems.append('unknown keys: ' + _names([k + source(k) for k in unknown]))
    missing = [k for k in expected if k not in state_dict]
    if missing:
        problems.append('missing keys: ' + _names(missing))
    shapes = [f'{k}{source(k)}: {tuple(state_dict[k].shape)} in the checkpoint, '
              f'{tuple(v.shape)} in the model' for k, v in expected.items()
              if k in state_dict and state_dict[k].shape != v.shape]
    if shapes:
        problems.append('wrong shapes: ' + _names(shapes))
    if problems:
        raise ConversionError('; '.join(problems))


def build_model(config: str | object = DEFAULT_CONFIG) -> torch.nn.Module:
    """The segmentor of ``config`` (a path or an mmengine ``Config``), on CPU, random init."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import stag_seg  # noqa: F401  (registers NVSegFormerHead, NVMixVisionTransformer)
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    init_default_scope('mmseg')
    return MODELS.build(cfg.model)


def check_destination(dst: str) -> None:
    """Raise ConversionError if ``dst`` cannot be written (a directory, a folder that cannot
    be made or written to), before any work is done."""
    if osp.isdir(dst):
        raise ConversionError(f'{dst} is a directory; give the converted checkpoint\'s file '
                              'path (e.g. checkpoints/segformer_b5_cityscapes.pth)')
    parent = osp.dirname(osp.abspath(dst))
    try:
        os.makedirs(parent, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise ConversionError(f'{dst}: cannot write to {parent} ({e.strerror or e})') from None


def convert_checkpoint(src: str, dst: str, config: str | object = DEFAULT_CONFIG,
                       trust: bool = False) -> dict:
    """Convert ``src`` (NVlabs ``.pth`` / HuggingFace ``.bin``, ``.safetensors``) to ``dst``.

    ``src`` is read with ``torch.load(weights_only=True)``; ``trust``: a file that needs full
    unpickling (which can run code) is unpickled. The result is checked against, and strictly
    loaded into, the model of ``config``, then written atomically as ``{'state_dict': ...,
    'meta': {...}}`` (loadable with ``torch.load(weights_only=True)``). Returns the meta dict.
    """
    check_destination(dst)
    state_dict = read_checkpoint(src, trust)
    try:
        converted = convert_state_dict(state_dict)
        model = build_model(config)
        check_against_model(converted, model.state_dict())
    except ConversionError as err:
        raise ConversionError(f'{src}: {err}') from None
    model.load_state_dict(converted.state_dict, strict=True)
    meta = dict(source=osp.abspath(src), source_format=converted.source_format,
                converter=CONVERTER,
                config=config if isinstance(config, str) else getattr(config, 'filename', ''),
                num_keys=len(converted.state_dict))
    try:
        with atomic_write(dst, 'wb') as f:
            torch.save({'state_dict': converted.state_dict, 'meta': meta}, f)
    except OSError as e:
        raise ConversionError(f'{dst}: cannot write it ({e.strerror or e})') from None
    return meta


def _names(items: list[str], limit: int = 8) -> str:
    shown = ', '.join(items[:limit])
    return shown + (f' ... ({len(items)} in all)' if len(items) > limit else '')
