"""Checkpoint loading for torch>=2.6 (weights_only) plus a class-count-checked segmentor loader."""
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


def load_segmentor_checkpoint(model: nn.Module, filename: str, map_location: Any = 'cpu',
                              strict: bool = False) -> Dict[str, Any]:
    """Load ``filename`` into ``model`` via mmengine; returns the checkpoint dict.

    Unlike mmengine (which only warns), a classifier with a different number of classes
    (``*conv_seg.weight``, e.g. ``decode_head.conv_seg.weight``) raises ``ValueError``.
    """
    checkpoint = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    if not isinstance(checkpoint, dict):
        raise RuntimeError(f'No state_dict found in checkpoint file {filename}')
    state_dict = checkpoint.get('state_dict', checkpoint)
    revised = OrderedDict((re.sub(r'^module\.', '', k), v) for k, v in state_dict.items())
    revised._metadata = getattr(state_dict, '_metadata', OrderedDict())

    module = model.module if is_model_wrapper(model) else model
    own = module.state_dict()
    for key, value in revised.items():
        if key.endswith(CLASSIFIER_SUFFIX) and key in own and own[key].shape != value.shape:
            raise ValueError(
                f'{filename}: {key} has shape {tuple(value.shape)} in the checkpoint but '
                f'{tuple(own[key].shape)} in the model ({value.shape[0]} vs '
                f'{own[key].shape[0]} classes); set num_classes to match the checkpoint.')
    load_state_dict(module, revised, strict=strict)
    return checkpoint
