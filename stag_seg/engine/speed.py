"""Speed options of the stream (``test_cfg.fast``, ``cuda_graph``, ``fused_attention``,
``tf32``, ``channels_last``, ``compile``) and the loader's pinned memory on CUDA: checked with
the loop's options, applied before the adapter is built. Every option is off by default, since
each may change the numbers in the last bits.

Precision (``test_cfg.amp='bf16'``) is the adapter's own option (autocast of the forward; the
losses, STAG's math included, stay float32).
"""
from __future__ import annotations

import inspect
import logging

import torch
from torch import nn

from stag_seg.models.fused_attention import use_fused_attention
from stag_seg.options import check_choice

_MATMUL = torch.backends.cuda.matmul
_CONV = torch.backends.cudnn.conv if hasattr(torch.backends.cudnn, 'conv') else None
#: the process's own float32 settings on CUDA, restored by ``set_tf32(False)``
_PROCESS_FP32 = ((_MATMUL.fp32_precision, _CONV.fp32_precision)
                 if hasattr(_MATMUL, 'fp32_precision') and _CONV is not None
                 else (_MATMUL.allow_tf32, torch.backends.cudnn.allow_tf32))


def check_speed_options(opt: dict) -> None:
    """Raises ValueError naming the option if a speed option of ``opt`` (the loop's options)
    is not valid: ``tf32`` and ``channels_last`` are booleans; ``compile`` is a boolean or
    a dict of ``torch.compile`` keyword arguments (e.g. ``dict(mode='max-autotune')``)."""
    check_choice('test_cfg', 'tf32', opt.get('tf32', False), (True, False))
    check_choice('test_cfg', 'channels_last', opt.get('channels_last', False), (True, False))
    for name in ('fused_attention', 'cuda_graph', 'fast'):
        check_choice('test_cfg', name, opt.get(name, False), (True, False))
    compile_opt = opt.get('compile', False)
    if isinstance(compile_opt, dict):
        valid = [p for p in inspect.signature(torch.compile).parameters if p != 'model']
        unknown = sorted(set(compile_opt) - set(valid))
        if unknown:
            raise ValueError(f'test_cfg.compile: unknown torch.compile option(s) {unknown}; '
                             f'valid options: {valid}')
    elif compile_opt not in (True, False):
        raise ValueError('test_cfg.compile must be True, False or a dict of torch.compile '
                         f'options, got {compile_opt!r}')


#: optimizers that have a fused kernel which can skip an update on device
FUSED_OPTIMIZERS = ('Adam', 'AdamW')


def resolve_fast(opt: dict, device: torch.device,
                 logger: logging.Logger | None = None) -> dict:
    """``opt`` (the loop's checked options) with ``fast`` expanded for ``device``.

    ``fast=True`` turns on ``fused_attention`` and, on CUDA, ``cuda_graph`` and bf16 autocast
    (``amp='bf16'`` unless ``amp`` is set); the losses and STAG's math stay float32, TF32 stays
    off. With ``cuda_graph`` on CUDA (or ``fast`` anywhere) an Adam/AdamW optimizer gets its
    fused kernel (``fused=True``; ``capturable=True`` for the graph) unless the config sets
    those keys. On CPU, ``cuda_graph`` is a no-op and bf16 is not switched on (one logged
    line each); the fused attention and optimizer apply there too.
    """
    log = logger or logging.getLogger(__name__)
    opt = dict(opt)
    cuda = device.type == 'cuda'
    if opt.get('fast'):
        opt['fused_attention'] = True
        if cuda:
            opt['cuda_graph'] = True
            if opt.get('amp') is None:
                opt['amp'] = 'bf16'
        else:
            log.info('test_cfg.fast on CPU: fused attention and the fused optimizer only (CUDA '
                     'graphs and bf16 autocast are the CUDA part of the fast mode)')
    if opt.get('cuda_graph') and not cuda:
        if not opt.get('fast'):
            log.info('test_cfg.cuda_graph: no effect on CPU (CUDA graphs need a CUDA device)')
        opt['cuda_graph'] = False
    optimizer = dict(opt['optimizer'])
    if (opt.get('cuda_graph') or opt.get('fast')) and optimizer.get('type') in FUSED_OPTIMIZERS:
        optimizer.setdefault('fused', True)
        if opt.get('cuda_graph'):
            optimizer.setdefault('capturable', True)
        opt['optimizer'] = optimizer
    return opt


def set_tf32(enabled: bool) -> None:
    """TF32 for float32 matmuls and cuDNN convolutions on CUDA (``enabled``), or the
    process's own settings (torch's defaults: matmuls in full float32, convolutions already
    allowed TF32). A process-wide torch setting; no effect on CPU."""
    if hasattr(_MATMUL, 'fp32_precision') and _CONV is not None:
        _MATMUL.fp32_precision, _CONV.fp32_precision = (
            ('tf32', 'tf32') if enabled else _PROCESS_FP32)
    else:                                                   # torch < 2.9
        _MATMUL.allow_tf32, torch.backends.cudnn.allow_tf32 = (
            (True, True) if enabled else _PROCESS_FP32)


def tf32_enabled() -> bool:
    """Whether float32 matmuls on CUDA may use TF32 now."""
    if hasattr(_MATMUL, 'fp32_precision'):
        return _MATMUL.fp32_precision == 'tf32'
    return bool(_MATMUL.allow_tf32)


def compile_options(value: bool | dict) -> dict | None:
    """``torch.compile`` keyword arguments for ``test_cfg.compile`` (None: off)."""
    if value is False or value is None:
        return None
    return {} if value is True else dict(value)


def apply_speed_options(model: nn.Module, opt: dict,
                        logger: logging.Logger | None = None) -> None:
    """Applies ``opt``'s speed options (checked by :func:`check_speed_options`) to ``model``
    (a segmentor) and the process, before the optimizer is built:

    - ``tf32``: :func:`set_tf32` (set on every run, so one process's runs do not leak it);
    - ``channels_last``: 4-D weights in channels-last layout (convolutions then run NHWC;
      helps conv nets with cuDNN, little for SegFormer's attention);
    - ``fused_attention``: MiT attention as one SDPA kernel
      (:func:`~stag_seg.models.fused_attention.use_fused_attention`; same weights);
    - ``compile``: compiles the backbone's forward in place (``nn.Module.compile``: the
      state dict keeps its keys, so checkpoints and resume states are unchanged). The decode
      head stays eager: mmseg calls its ``predict``, not its ``forward``, and the classifier
      tap reads its logits.
    """
    log = logger or logging.getLogger(__name__)
    set_tf32(bool(opt.get('tf32', False)))
    device = next(model.parameters()).device
    if opt.get('tf32') and device.type != 'cuda':
        log.info('test_cfg.tf32: no effect on CPU')
    if opt.get('channels_last'):
        model.to(memory_format=torch.channels_last)
    if opt.get('fused_attention'):
        count = use_fused_attention(model)
        log.info(f'test_cfg.fused_attention: {count} MiT attention module(s) fused'
                 if count else 'test_cfg.fused_attention: the model has no MiT attention')
    kwargs = compile_options(opt.get('compile', False))
    if kwargs is not None:
        backbone = getattr(model, 'backbone', None)
        if not isinstance(backbone, nn.Module):
            raise ValueError(f'test_cfg.compile: {type(model).__name__} has no backbone '
                             'module to compile')
        backbone.compile(**kwargs)
        log.info(f'test_cfg.compile: backbone {type(backbone).__name__} compiled '
                 f'({kwargs or "defaults"}); the first steps include the compilation')


def default_pin_memory(loader_cfg: dict, model: nn.Module) -> dict:
    """``loader_cfg`` with ``pin_memory=True`` if the model is on CUDA and the config does not
    set it (page-locked batches copy to the GPU faster); unchanged otherwise."""
    if 'pin_memory' not in loader_cfg and next(model.parameters()).device.type == 'cuda':
        return {**loader_cfg, 'pin_memory': True}
    return loader_cfg
