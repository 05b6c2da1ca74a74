"""Checkpoint loading for torch>=2.6 (weights_only; full unpickling only of a file the user
vouched for) plus a strict segmentor loader."""
import contextlib
import logging
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Callable, Dict, Optional

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import CheckpointLoader, load_state_dict
from torch import nn

CLASSIFIER_SUFFIX = 'conv_seg.weight'


#: the flag of the tools that load a checkpoint the user names (test_tta.py, the converter)
TRUST_FLAG = '--trust-checkpoint'
_TRUSTED: set = set()
_UNLOGGED = [0]             # > 0 inside unlogged_trust()


class UntrustedCheckpointError(ValueError):
    """A checkpoint that ``torch.load(weights_only=True)`` refuses and nobody vouched for."""


def _key(source: str) -> str:
    return source if '://' in source else osp.realpath(osp.expanduser(source))


def trust_checkpoint(source: str) -> None:
    """Allow full unpickling (``weights_only=False``) of this one file or URL, which the user
    named and vouched for (``--trust-checkpoint``); no other file is ever unpickled fully."""
    _TRUSTED.add(_key(source))


@contextlib.contextmanager
def unlogged_trust() -> Iterator[None]:
    """Loads in the block do not log a trusted file's full unpickling: a check's load (the
    run's start check), whose file the run loads again, and logs then, into its own log."""
    _UNLOGGED[0] += 1
    try:
        yield
    finally:
        _UNLOGGED[0] -= 1


def _refusal(err: Exception) -> str:
    """What torch's weights_only message says was refused, in a few words."""
    text = str(err)
    found = re.search(r'GLOBAL ([\w.]+)', text)
    if found:
        return f'unsupported global {found[1]}'
    detail = text.split('WeightsUnpickler error:', 1)[-1].split('Check the documentation')[0]
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:160]


def _safe_first(load: Callable[[bool], Any], source: str) -> Any:
    """Run ``load(weights_only=True)``. A file it refuses is loaded with weights_only=False
    only if it was trusted (``trust_checkpoint``), else ``UntrustedCheckpointError``; a file
    that is no checkpoint at all is a ValueError naming it."""
    try:
        return load(True)
    except pickle.UnpicklingError as err:
        if 'Unsupported operand' in str(err):        # an opcode no pickle of torch.save has
            raise ValueError(f'{source}: not a PyTorch checkpoint (torch.load: '
                             f'{_refusal(err)})') from None
        if _key(source) not in _TRUSTED:
            raise UntrustedCheckpointError(
                f'{source}: refused: not plain weights ({_refusal(err)}), and unpickling it '
                f'could run code; if you trust this file, pass {TRUST_FLAG}') from None
        if not _UNLOGGED[0]:
            print_log(f'{source}: not plain weights ({_refusal(err)}); unpickling it fully, '
                      f'as {TRUST_FLAG} asks', logger='current', level=logging.WARNING)
        return load(False)
    except Exception as err:             # torch's unpickler on a file that is no checkpoint
        cause = str(err).split('. ')[0].splitlines()[0] if str(err) else ''   # one line
        raise ValueError(f'{source}: not a PyTorch checkpoint ({type(err).__name__}: '
                         f'{cause})') from None


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine local-file scheme: ``torch.load(weights_only=True)``; full unpickling only for
    a file passed to ``trust_checkpoint``."""
    filename = osp.expanduser(filename)
    if osp.isdir(filename):
        raise FileNotFoundError(f'{filename} is a directory, not a checkpoint file')
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


def load_segmentor_checkpoint(model: nn.Module, filename: str, map_location: Any = 'cpu',
                              logger: str = 'current') -> Dict[str, Any]:
    """Loads ``filename`` into ``model`` strictly; returns the checkpoint dict. ``logger``
    gets mmengine's "Loads checkpoint by ... backend" line (``'silent'``: none).

    mmengine only warns about missing or unexpected keys, so a checkpoint of another model
    (or a backbone-only one) would run on random weights. Here every mismatch is a
    ``ValueError`` naming the file and the first keys: a file that is not a checkpoint,
    tensors of another shape (for the classifier ``*conv_seg.weight``, the class counts),
    missing or unexpected keys. BatchNorm's ``num_batches_tracked`` may be absent.
    """
    try:
        checkpoint = CheckpointLoader.load_checkpoint(filename, map_location=map_location,
                                                      logger=logger)
    except (FileNotFoundError, ValueError):      # these name the file and the problem
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
