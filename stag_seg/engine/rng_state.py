"""The process's random-number state (torch, CUDA, numpy, Python), in a form that loads with
``torch.load(weights_only=True)``, so that a resumed stream draws what the uninterrupted one
would have drawn."""
from __future__ import annotations

import random

import numpy as np
import torch


def get_rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {'torch': torch.get_rng_state(), 'python': random.getstate(),
             'numpy': (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                       float(cached))}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    if 'python' in state:
        version, internal, gauss = state['python']
        random.setstate((version, tuple(internal), gauss))
    if 'numpy' in state:
        name, keys, pos, has_gauss, cached = state['numpy']
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
