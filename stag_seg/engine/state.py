"""Checkpoints of the stream's position with the adapted model and optimizer, for --resume."""
from __future__ import annotations

import os
import os.path as osp

import torch

STATE_FILE = 'tta_state.pth'


def save_state(work_dir: str, state: dict) -> str:
    """Writes ``state`` atomically (a crash mid-write leaves the previous state intact)."""
    path = osp.join(work_dir, STATE_FILE)
    tmp = path + '.tmp'
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_state(work_dir: str, stream: list[str]) -> dict | None:
    """The saved state of this stream, or None when there is none to resume from."""
    path = osp.join(work_dir, STATE_FILE)
    if not osp.exists(path):
        return None
    state = torch.load(path, map_location='cpu', weights_only=True)
    if state.get('stream') != stream:
        raise ValueError(f'{path} was written for another stream (domains, rounds or order '
                         'differ); use another --work-dir or delete the file to start over')
    return state
