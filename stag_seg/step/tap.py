"""A forward hook that records a module's inputs and outputs (e.g. the classifier's)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from stag_seg.ops import pixels_last


def get_submodule(model: nn.Module, path: str) -> nn.Module:
    """``model.get_submodule(path)`` with an error that names the option and nearby modules."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        heads = [name for name, _ in model.named_children()]
        raise ValueError(f'classifier={path!r}: no such module in {type(model).__name__} '
                         f'(its top-level modules: {heads})') from None


class ModuleTap:
    """Records (input features, output) of the forward calls of ``module`` that build a graph.

    Calls under ``torch.no_grad()`` (scoring without adaptation) are not recorded.
    Segmentors call the classifier once per image batch in 'whole' mode and once per
    window in 'slide' mode; :meth:`pixels` concatenates all calls as (P, D) rows.
    """

    def __init__(self, module: nn.Module, keep_inputs: bool = True) -> None:
        self.keep_inputs = keep_inputs
        self.inputs: list[Tensor] = []
        self.outputs: list[Tensor] = []
        self._handle = module.register_forward_hook(self._record)

    def _record(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        if not torch.is_grad_enabled():
            return
        if self.keep_inputs:
            self.inputs.append(args[0])
        self.outputs.append(output)

    def clear(self) -> None:
        self.inputs.clear()
        self.outputs.clear()

    def remove(self) -> None:
        self._handle.remove()
        self.clear()

    @property
    def called(self) -> bool:
        return bool(self.outputs)

    def logits(self) -> Tensor:
        """(N, K, h, w) for one call, else all calls as (P, K)."""
        return _join(self.outputs)

    def features(self) -> Tensor:
        """(N, C, h, w) for one call, else all calls as (P, C)."""
        return _join(self.inputs)


def _join(tensors: list[Tensor]) -> Tensor:
    if not tensors:
        raise RuntimeError('the tapped module was not called in this forward pass')
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat([pixels_last(t) for t in tensors])
