"""Atomic file replacement: a reader (or a kill) sees the old file or the new one, never half."""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import stat
import tempfile
from collections.abc import Iterator
from typing import IO


def _new_file_mode() -> int:
    """The mode ``open(path, 'w')`` would give a new file: 0o666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'w', **open_kwargs) -> Iterator[IO]:
    """Open a temp file next to ``path`` for writing; on success fsync it and ``os.replace``
    it onto ``path``.

    On any exception (KeyboardInterrupt included) the temp file is removed and ``path`` is
    left as it was. The new file keeps the mode of the file it replaces (a new file gets the
    umask-based mode ``open()`` would give). A symlink at ``path`` is followed, so its target
    is replaced. ``mode`` is ``'w'`` or ``'wb'``; ``open_kwargs`` go to ``open`` (encoding,
    newline).
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = osp.realpath(path)
    parent = osp.dirname(path)
    os.makedirs(parent, exist_ok=True)
    try:
        file_mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        file_mode = _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), file_mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_dir(parent)


def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
