"""Config paths as given or relative to the repository."""
from __future__ import annotations

import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def resolve_config(config: str) -> str:
    """``config`` as given, or relative to the repository when it is not found as given."""
    if not osp.isfile(config) and osp.isfile(osp.join(REPO, config)):
        return osp.join(REPO, config)
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    return config
