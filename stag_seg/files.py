"""Atomic file writes and exclusive lock files, for the engine's work dirs and the sweeps
(standard library only: also used on Ray workers)."""
from __future__ import annotations

import json
import os
import os.path as osp
import tempfile
import time
from collections.abc import Callable

try:
    import fcntl
except ImportError:               # not POSIX: no lock
    fcntl = None


class LockBusy(RuntimeError):
    """Another process holds the lock; ``pid`` is the holder's process id, if it wrote one."""

    def __init__(self, path: str, pid: int | None) -> None:
        super().__init__(f'{path} is held by another process'
                         + (f' (pid {pid})' if pid else ''))
        self.path, self.pid = path, pid


def _holder(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def hold_lock(path: str, timeout: float = 0.0) -> int:
    """An exclusive ``flock`` on ``path`` (created if missing), waiting up to ``timeout`` s;
    returns its fd, whose process id is then written in the file. Raises :class:`LockBusy`
    (with the holder's pid) if it stays held. Release: ``os.close(fd)`` (or exit)."""
    writable = True
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:               # a read-only dir: the lock file of an earlier run
        fd, writable = os.open(path, os.O_RDONLY), False
    if fcntl is None:
        return fd
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                pid = _holder(fd)
                os.close(fd)
                raise LockBusy(path, pid) from None
            time.sleep(0.2)
    if writable:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    """Releases a :func:`hold_lock` lock now (also for forked children sharing the fd)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def write_atomic(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the file onto ``path``: readers see old or new."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=directory)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
    write_atomic(path, write)


def write_json_atomic(path: str, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1) + '\n')


def read_json(path: str) -> dict | None:
    """The JSON object in ``path``, or None if the file is missing or not a JSON object."""
    try:
        with open(path, encoding='utf-8') as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None
