"""Checkpoint loading for torch>=2.6 (weights_only) plus a strict segmentor loader."""
import logging
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from typing import Any, Callable, Dict, Optional

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader, load_state_dict
from torch import nn

CLASSIFIER_SUFFIX = 'conv_seg.weight'


def _safe_first(load: Callable[[bool], Any], source: str) -> Any:
    """Run ``load(weights_only=True)``; on refusal warn once and rerun with weights_only=False."""
    try:
        return load(True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        print_log(f'{source}: weights_only=True load refused ({reason[:160]}); retrying with '
                  'weights_only=False - only load checkpoints you trust.',
                  logger='current', level=logging.WARNING)
        return load(False)


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine local-file scheme: safe ``torch.load`` first, full unpickling as fallback."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return _safe_first(
        lambda safe: torch.load(filename, map_location=map_location, weights_only=safe), filename)


def load_from_http(filename: str, map_location: Any = None, model_dir: Optional[str] = None,
                   progress: bool = os.isatty(0)) -> Any:
    """mmengine http(s) scheme: download once (rank 0 first), then load like ``load_from_local``."""
    def load() -> Any:
        return _safe_first(lambda safe: torch.hub.load_state_dict_from_url(
            filename, model_dir=model_dir, map_location=map_location, progress=progress,
            weights_only=safe), filename)

    rank, world_size = get_dist_info()
    checkpoint = load() if rank == 0 else None
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = load()
    return checkpoint


def apply() -> None:
    """Route mmengine's local and http(s) checkpoint schemes through the loaders above."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'), loader=load_from_http,
                                     force=True)


def _first(keys: list[str], n: int = 5) -> str:
    return ', '.join(keys[:n]) + (f' ... ({len(keys)} in all)' if len(keys) > n else '')


def load_segmentor_checkpoint(model: nn.Module, filename: str,
                              map_location: Any = 'cpu') -> Dict[str, Any]:
    """Loads ``filename`` into ``model`` strictly; returns the checkpoint dict.

    mmengine only warns about missing or unexpected keys, so a checkpoint of another model
    (or a backbone-only one) would run on random weights. Here every mismatch is a
    ``ValueError`` naming the file and the first keys: a file that is not a checkpoint,
    tensors of another shape (for the classifier ``*conv_seg.weight``, the class counts),
    missing or unexpected keys. BatchNorm's ``num_batches_tracked`` may be absent.
    """
    try:
        checkpoint = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f'{filename} is not a readable PyTorch checkpoint '
                         f'({type(e).__name__}: {e})') from e
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not any(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f'{filename} holds no state dict of tensors (found '
                         f'{type(checkpoint).__name__}); expected a model checkpoint')
    revised = OrderedDict((re.sub(r'^module\.', '', k), v) for k, v in state_dict.items())
    revised._metadata = getattr(state_dict, '_metadata', OrderedDict())

    module = model.module if is_model_wrapper(model) else model
    own = module.state_dict()
    for key, value in revised.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            shapes = (f'{key} has shape {tuple(value.shape)} in the checkpoint but '
                      f'{tuple(own[key].shape)} in the model')
            if key.endswith(CLASSIFIER_SUFFIX) and value.shape[0] != own[key].shape[0]:
                raise ValueError(f'{filename}: {shapes} ({value.shape[0]} vs '
                                 f'{own[key].shape[0]} classes); set num_classes to match the '
                                 'checkpoint.')
            raise ValueError(f'{filename}: {shapes}; is it a checkpoint of another '
                             'architecture?')
    missing = [k for k in own if k not in revised and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in revised if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f'{len(missing)} model key(s) missing from it ({_first(missing)})')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected key(s) ({_first(unexpected)})')
        raise ValueError(f'{filename} does not match the model: ' + '; '.join(parts)
                         + '. Is it a checkpoint of this architecture (not a backbone-only '
                         'or another model\'s file)? Convert it first if it comes from '
                         'another code base.')
    load_state_dict(module, revised, strict=True)
    return checkpoint
