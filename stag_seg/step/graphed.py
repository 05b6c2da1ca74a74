"""The whole adaptation step as one CUDA graph: forward, losses (plug-ins' included), backward,
finite check and optimizer update, captured once per input shape and replayed per image.

A SegFormer-B5 step launches ~4,500 kernels; eager, the GPU waits for the host to launch them.
Replaying a captured graph launches them all at once. What makes a step capturable:

- no host synchronisation inside it: the finite check is a device flag (``found_inf``) that a
  fused Adam reads to skip the update, so a non-finite step leaves parameters, moments and step
  count as they were (what the eager adapter does by not calling ``step``);
- static shapes and addresses: the batch is copied into a static input tensor; a new input
  shape (or image meta) captures again; the optimizer's state must be the tensors captured
  (``invalidate`` after a state load);
- methods and plug-ins that declare ``capturable = True`` (their step is tensor work only).

Capture needs a few eager warm-up steps (lazy optimizer state, cuDNN plans); they run on the
real batch and the model, optimizer and BatchNorm state are restored afterwards, so the replay
takes the same first step as eager.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

#: optimizers whose fused CUDA kernel reads ``found_inf`` (skip the update on device)
CAPTURABLE_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)
#: captures of new shapes after which the graph is dropped for eager steps
MAX_CAPTURES = 4


def graph_blocker(method, plugins, optimizer, wrapper, amp: str | None) -> str | None:
    """Why the step of ``method`` + ``plugins`` cannot be captured, or None if it can."""
    if not getattr(method, 'capturable', False):
        return (f'{type(method).__name__} is not capturable with these options '
                f'({getattr(method, "host_work", "its step decides on the host")})')
    blocked = [type(p).__name__ for p in plugins if not getattr(p, 'capturable', False)]
    if blocked:
        return f'plug-in(s) {", ".join(blocked)} do not declare capturable = True'
    if not isinstance(optimizer, CAPTURABLE_OPTIMIZERS):
        return f'optimizer {type(optimizer).__name__} (only Adam/AdamW skip updates on device)'
    group = optimizer.param_groups[0]
    if not group.get('fused') or (group['params'][0].is_cuda and not group.get('capturable')):
        return 'the optimizer is not built with fused=True, capturable=True'
    if amp == 'fp16':
        return "amp='fp16' needs a GradScaler, which decides on the host"
    if type(wrapper).__name__ not in ('OptimWrapper', 'AmpOptimWrapper'):
        return f'optim wrapper {type(wrapper).__name__}'
    if getattr(wrapper, 'clip_grad_kwargs', None):
        return 'optim_wrapper.clip_grad'
    if getattr(wrapper, 'accumulative_counts', 1) != 1:
        return 'optim_wrapper.accumulative_counts'
    return None


def batch_key(inputs: Tensor, metas: list[dict]) -> tuple:
    """What a captured graph depends on besides tensor values: the input's shape and dtype
    and the image metas the segmentor reads for its output size."""
    fields = ('img_shape', 'pad_shape', 'ori_shape', 'flip', 'flip_direction')
    return (tuple(inputs.shape), inputs.dtype,
            tuple(tuple(repr(m.get(f)) for f in fields) for m in metas))


class GraphedStep:
    """Captures ``body(inputs, metas)`` as a CUDA graph and replays it.

    Args:
        body: ``body(inputs, metas) -> outputs`` (a tuple of tensors): one full step whose
            side effects (parameter and optimizer-state updates) are in-place tensor work.
        model: the model whose parameters and buffers ``body`` updates.
        optimizer: the optimizer ``body`` steps (its state is created by the warm-up).
        warmup: eager steps before capture (restored afterwards).
        logger: where capture lines go.
        use_graph: capture and replay (CUDA); False runs ``body`` eagerly after the same
            warm-up and restore (the CPU path of the tests).
        extra_state: ``extra_state()`` lists other tensors ``body`` updates in place (a
            method's device counters), restored after the warm-up like the model's.
    """

    def __init__(self, body: Callable[[Tensor, list], tuple], model: nn.Module,
                 optimizer: torch.optim.Optimizer, warmup: int = 2,
                 logger: logging.Logger | None = None, use_graph: bool = True,
                 extra_state: Callable[[], list[Tensor]] = list) -> None:
        self.body, self.model, self.optimizer = body, model, optimizer
        self.extra_state = extra_state
        self.warmup = warmup
        self.use_graph = use_graph
        self.logger = logger or logging.getLogger(__name__)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.key: tuple | None = None
        self.captures = 0
        self.disabled: str | None = None
        self.static_inputs: Tensor | None = None
        self.outputs: tuple = ()

    def invalidate(self) -> None:
        """Forgets the graph (after the model's or the optimizer's state was loaded: the
        graph refers to the tensors it captured)."""
        self.graph, self.key, self.outputs, self.static_inputs = None, None, (), None

    def __call__(self, inputs: Tensor, metas: list[dict]) -> tuple | None:
        """Replays the step on ``inputs`` (captured first if needed); None if the graph is
        disabled (too many shapes), for the caller to run the eager step."""
        if self.disabled:
            return None
        key = batch_key(inputs, metas)
        if key != self.key:
            if self.captures >= MAX_CAPTURES:
                self.disabled = (f'{self.captures} input shapes captured; the stream\'s shapes '
                                 'vary, so the rest of it runs eager')
                self.logger.warning(f'test_cfg.cuda_graph: {self.disabled}')
                self.invalidate()
                return None
            self._capture(inputs, metas, key)
        self.static_inputs.copy_(inputs)
        if not self.use_graph:        # as captured: the backward assigns, not accumulates
            self.optimizer.zero_grad(set_to_none=True)
            return self.body(self.static_inputs, metas)
        self.graph.replay()
        return self.outputs

    # ---------------------------------------------------------------- capture
    def _state_tensors(self) -> list[Tensor]:
        tensors = list(self.model.state_dict(keep_vars=True).values()) + self.extra_state()
        for state in self.optimizer.state.values():
            tensors += [t for t in state.values() if isinstance(t, Tensor)]
        return [t for t in tensors if isinstance(t, Tensor)]

    def _capture(self, inputs: Tensor, metas: list[dict], key: tuple) -> None:
        self.invalidate()
        had_state = {id(p) for p in self.optimizer.state}
        saved = [(t, t.detach().clone()) for t in self._state_tensors()]
        self.static_inputs = inputs.clone()
        graph, outputs = None, ()
        with _side_stream(self.use_graph):
            for _ in range(self.warmup):
                self.optimizer.zero_grad(set_to_none=True)
                self.body(self.static_inputs, metas)
        self.optimizer.zero_grad(set_to_none=True)
        if self.use_graph:
            graph = torch.cuda.CUDAGraph()
            # thread-local: the loader's pin-memory thread may use CUDA during the capture
            with torch.cuda.graph(graph, capture_error_mode='thread_local'):
                outputs = self.body(self.static_inputs, metas)
        with torch.no_grad():
            for tensor, value in saved:
                tensor.copy_(value)
        zero_optimizer_state(s for p, s in self.optimizer.state.items()   # made by the warm-up
                             if id(p) not in had_state)
        self.graph, self.key, self.outputs = graph, key, outputs
        self.captures += 1
        self.logger.info(f'test_cfg.cuda_graph: captured the step for input '
                         f'{tuple(inputs.shape)} ({self.warmup} warm-up steps, state restored)')


def zero_optimizer_state(states: Iterable[dict]) -> None:
    """Zeroes every tensor of these per-parameter optimizer states in place: Adam's fresh
    state (no moments, step 0), kept at the addresses a captured graph uses."""
    with torch.no_grad():
        for state in states:
            for value in state.values():
                if isinstance(value, Tensor):
                    value.zero_()


@contextlib.contextmanager
def _side_stream(cuda: bool):
    """The warm-up's own CUDA stream (as graph capture asks); nothing on CPU."""
    if not cuda:
        yield
        return
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream().wait_stream(side)


@contextlib.contextmanager
def capture_safe_autocast(device_type: str, dtype: torch.dtype | None):
    """Autocast without its weight-cast cache (a cache would outlive the captured graph)."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type, dtype=dtype, cache_enabled=False):
        yield


def slides(model: nn.Module) -> bool:
    """Whether ``model`` infers in mmseg's slide mode (``test_cfg.mode == 'slide'``)."""
    test_cfg = getattr(model, 'test_cfg', None) or {}
    return test_cfg.get('mode', 'whole') == 'slide'


class GraphedInference:
    """No-grad forwards (``model.inference``) captured per (model, input shape) and replayed:
    the scored forward of methods that do not update (source, BN-adapt), stages without
    updates, and CoTTA's anchor and teacher over its views. The graphs share one memory pool
    (they run one after another); each keeps its own static input and output. A model in
    slide mode (CoTTA's protocol configs) runs eager, with one logged line.

    Args:
        autocast: ``autocast()`` context factory of the forward's precision (capture-safe).
        max_graphs: graphs kept at most; past it, new shapes run eager.
        logger: where capture lines go.
    """

    def __init__(self, autocast: Callable[[], contextlib.AbstractContextManager],
                 max_graphs: int = 32, logger: logging.Logger | None = None) -> None:
        self.autocast = autocast
        self.max_graphs = max_graphs
        self.logger = logger or logging.getLogger(__name__)
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}
        self.eager: set[int] = set()
        self.pool = None

    def __call__(self, model: nn.Module, inputs: Tensor, metas: list[dict]) -> Tensor | None:
        """(N, K, H, W) logits of ``model`` on ``inputs`` from the replayed graph (a static
        tensor: overwritten by the next replay of this graph), or None to run eager."""
        key = (id(model), batch_key(inputs, metas))
        entry = self.graphs.get(key)
        if entry is None:
            if slides(model):
                if id(model) not in self.eager:
                    self.eager.add(id(model))
                    self.logger.info(f'cuda_graph: the forwards of {type(model).__name__} run '
                                     "eager (test_cfg mode='slide': windows decided per view)")
                return None
            if len(self.graphs) >= self.max_graphs:
                return None
            entry = self._capture(model, inputs, metas)
            self.graphs[key] = entry
        graph, static_in, static_out = entry
        static_in.copy_(inputs)
        graph.replay()
        return static_out

    def _capture(self, model: nn.Module, inputs: Tensor, metas: list[dict]) -> tuple:
        buffers = [(b, b.detach().clone()) for b in model.buffers()]
        static_in = inputs.clone()
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        with torch.no_grad(), self.autocast():
            with _side_stream(True):
                model.inference(static_in, metas)          # warm-up (cuDNN plans, caches)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, capture_error_mode='thread_local'):
                static_out = model.inference(static_in, metas)
            for buffer, value in buffers:                  # e.g. BatchNorm running stats
                buffer.copy_(value)
        self.logger.debug(f'cuda_graph: captured the forward of {type(model).__name__} for '
                          f'input {tuple(inputs.shape)}')
        return graph, static_in, static_out

    def clear(self) -> None:
        self.graphs.clear()
