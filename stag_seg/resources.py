"""Where the shipped files are: configs and the demo checkpoint (clone or wheel), the user cache.

A clone has them at its root (``configs/``, ``checkpoints/``); a wheel carries copies under
the package's ``.mim/`` folder (setup.py copies them at build time), where OpenMMLab packages
keep theirs and where mmengine looks for ``package::path`` configs. Config names resolve
from any directory: a path, ``stag_seg::segformer/<name>.py``, a clone-relative
``configs/...`` path, or a config's short name (``segformer_mit-b5_cs2acdc_tent-stag``).
"""
from __future__ import annotations

import glob
import os
import os.path as osp

PACKAGE = 'stag_seg'
PACKAGE_DIR = osp.dirname(osp.abspath(__file__))
#: the copies a wheel ships (setup.py's build step writes them)
MIM_DIR = osp.join(PACKAGE_DIR, '.mim')
#: a clone's root (in a wheel install: site-packages, which holds no configs/)
CLONE_DIR = osp.dirname(PACKAGE_DIR)
PREFIX = f'{PACKAGE}::'


def shipped_root() -> str:
    """The folder holding ``configs/`` and ``checkpoints/``: the wheel's ``.mim`` copy if it
    exists, else the clone's root."""
    return MIM_DIR if osp.isdir(osp.join(MIM_DIR, 'configs')) else CLONE_DIR


def in_clone() -> bool:
    """Whether stag_seg runs from a clone (its configs/ beside the package, no wheel copy)."""
    return shipped_root() == CLONE_DIR and osp.isdir(osp.join(CLONE_DIR, 'configs'))


def shipped_path(rel: str) -> str:
    """``rel`` (e.g. ``checkpoints/segformer_mini_minicity.pth``) under :func:`shipped_root`."""
    return osp.join(shipped_root(), rel)


def configs_dir() -> str:
    return shipped_path('configs')


def cache_dir() -> str:
    """The user cache of generated files (the demo's data when run outside a clone):
    ``$STAG_SEG_CACHE``, else ``$XDG_CACHE_HOME/stag-seg``, else ``~/.cache/stag-seg``."""
    if os.environ.get('STAG_SEG_CACHE'):
        return os.environ['STAG_SEG_CACHE']
    base = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return osp.join(base, 'stag-seg')


def short_names() -> dict[str, list[str]]:
    """Short name (file name without ``.py``) -> the shipped configs with that name."""
    names: dict[str, list[str]] = {}
    for path in sorted(glob.glob(osp.join(configs_dir(), '**', '*.py'), recursive=True)):
        rel = osp.relpath(path, configs_dir())
        if not rel.startswith(('_base_', 'sweeps')):
            names.setdefault(osp.splitext(osp.basename(path))[0], []).append(path)
    return names


def find_shipped(path: str) -> str | None:
    """``path`` if it is a file; else the shipped file it names (``stag_seg::<path>`` under
    configs/, or a clone-relative path such as ``configs/...`` or ``checkpoints/...``);
    else None."""
    if osp.isfile(path):
        return path
    if path.startswith(PREFIX):
        shipped = osp.join(configs_dir(), path[len(PREFIX):])
    elif not osp.isabs(path):
        shipped = shipped_path(osp.normpath(path))
    else:
        return None
    return shipped if osp.isfile(shipped) else None


def resolve_config(config: str) -> str:
    """The file of ``config``: an existing path as it is; ``stag_seg::<path>`` in the shipped
    configs; a clone-relative ``configs/...`` path in the shipped ones; a short name (no
    folder, optional ``.py``) by search. Anything else is one FileNotFoundError naming it."""
    found = find_shipped(config)
    if found is not None:
        return found
    if config.startswith(PREFIX):
        raise FileNotFoundError(f'config file not found: {config} (the shipped configs are '
                                f'under {configs_dir()})')
    rel = osp.normpath(config)
    if os.sep not in rel and '::' not in config:
        matches = short_names().get(rel[:-3] if rel.endswith('.py') else rel, [])
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise FileNotFoundError(f'config {config!r} is ambiguous: {matches}; give its path')
    raise FileNotFoundError(f'config file not found: {config} (a path, {PREFIX}<folder>/'
                            "<name>.py, or a shipped config's name, e.g. "
                            'segformer_mit-b5_cs2acdc_tent-stag)')
