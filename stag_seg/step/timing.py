"""The engine's phase-timing hook: named phases of a run that a timer may measure.

The engine marks its phases with ``with phase(name):``: 'step' (the method's whole step),
and inside it 'forward' (every forward of a model, ``Learner.forward`` / ``infer``),
'postprocess' (predictions at the label's resolution), 'plugin terms', 'backward' and
'update' (the optimizer step); 'scoring' (the IoU metric) in the loop. Without a timer
installed a phase costs one global lookup. A timer is a
callable ``timer(name)`` returning a context manager; :func:`timed` installs one for a block
(the benchmark's ``PhaseTimers``, a future ``--profile``). Phases may nest (postprocess
inside step); the timer decides how to count them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import ContextManager

#: the phases the engine marks
PHASES = ('step', 'forward', 'postprocess', 'plugin terms', 'backward', 'update', 'scoring')

_timer: Callable[[str], ContextManager] | None = None


def phase(name: str) -> ContextManager:
    """The installed timer's context for phase ``name`` (a no-op without one)."""
    return contextlib.nullcontext() if _timer is None else _timer(name)


@contextlib.contextmanager
def timed(timer: Callable[[str], ContextManager]) -> Iterator[None]:
    """Installs ``timer`` for the block (the previous one is put back after it)."""
    global _timer
    previous, _timer = _timer, timer
    try:
        yield
    finally:
        _timer = previous
