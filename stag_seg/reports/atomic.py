"""Atomic file replacement: a reader (or a kill) sees the old file or the new one, never half."""
from __future__ import annotations

import contextlib
import errno
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


def _no_space(error: BaseException | None) -> bool:
    """True if ``error`` or an error it came from is ENOSPC / EDQUOT (torch's writer reports a
    full disk as ``[enforce fail at inline_container.cc] unexpected pos``, raised from it)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full_error(error: BaseException, path: str) -> OSError | None:
    """For a write of ``path`` that failed with ``error``: an ENOSPC OSError whose message
    says "no space left on device" and names ``path``, or None if the disk is not full."""
    if not _no_space(error):
        return None
    full = OSError(f'no space left on device: could not write {path}')
    full.errno = errno.ENOSPC
    return full


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'w', **open_kwargs) -> Iterator[IO]:
    """Open a temp file next to ``path`` for writing; on success fsync it and ``os.replace``
    it onto ``path``.

    On any exception (KeyboardInterrupt included) the temp file is removed and ``path`` is
    left as it was; a full disk is an OSError (ENOSPC) naming ``path``. The new file keeps
    the mode of the file it replaces (a new file gets the umask-based mode ``open()`` would
    give). A symlink at ``path`` is followed, so its target
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
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        full = disk_full_error(e, path)
        if full is not None:
            raise full from e
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
