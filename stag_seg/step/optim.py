"""The step's optimizer wrapper, built through mmengine (AMP, clipping), and the default
optimizer."""
from __future__ import annotations

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS
from torch import nn

#: test_cfg.amp -> autocast dtype
AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
#: the optimizer of every method that updates, unless test_cfg.optimizer says otherwise
#: (CoTTA's setting for SegFormer on Cityscapes-to-ACDC)
DEFAULT_OPTIMIZER = dict(type='Adam', lr=6e-5 / 8, betas=(0.9, 0.999))


def check_precision(amp: str | None, optim_wrapper: dict | None,
                    device: torch.device) -> None:
    """Raises ValueError naming the option if the step of a method that updates cannot run
    in this precision on ``device``: float16 autocast and mmengine's ``AmpOptimWrapper`` need
    a GradScaler, which mmengine offers on CUDA only."""
    wrapper_type = (optim_wrapper or {}).get('type', 'OptimWrapper')
    if device.type == 'cuda':
        return
    if amp == 'fp16' and wrapper_type == 'OptimWrapper':
        raise ValueError("test_cfg.amp='fp16' needs a CUDA device (float16 autocast needs "
                         "a GradScaler, which mmengine offers on GPU only); use amp='bf16'")
    if wrapper_type == 'AmpOptimWrapper':
        raise ValueError("test_cfg.optim_wrapper.type='AmpOptimWrapper' runs on CUDA only "
                         "(mmengine's rule); on CPU use test_cfg.amp='bf16'")


def build_tta_optim_wrapper(params: list[nn.Parameter], optimizer: dict,
                            optim_wrapper: dict | None, amp: str | None,
                            device: torch.device, scale_bf16: bool = True) -> OptimWrapper:
    """An mmengine optim wrapper over ``params``.

    ``optim_wrapper`` holds wrapper options (``type``, ``clip_grad``, ``accumulative_counts``,
    ...; default ``OptimWrapper``); ``optimizer`` the optimizer config. ``amp`` on CUDA makes
    a plain ``OptimWrapper`` mmengine's ``AmpOptimWrapper`` with that dtype (its GradScaler
    guards float16); on CPU, where ``AmpOptimWrapper`` refuses to run, bf16 needs no loss
    scaling and keeps ``OptimWrapper`` (the adapter autocasts the forward in both cases).
    ``scale_bf16=False`` keeps ``OptimWrapper`` for bf16 on CUDA too (no GradScaler: its
    per-step host check would break a captured step; bf16 needs no loss scaling).
    """
    check_precision(amp, optim_wrapper, device)
    cfg = dict(type='OptimWrapper', **(optim_wrapper or {}))
    if amp == 'bf16' and not scale_bf16:
        pass
    elif amp is not None and cfg['type'] == 'OptimWrapper' and device.type == 'cuda':
        cfg.update(type='AmpOptimWrapper', dtype=str(AMP_DTYPES[amp]).split('.')[-1])
    cfg['optimizer'] = OPTIMIZERS.build({**optimizer, 'params': params})
    return OPTIM_WRAPPERS.build(cfg)
