"""Kills the processes of a local Ray instance when the sweep driver that started it dies.

Standard library only, Linux (``/proc``). ``ray.shutdown()`` stops the instance when the driver
ends normally (or on SIGINT / SIGTERM), but a driver killed by SIGKILL runs no code, and Ray's
agents (``DashboardAgent``, ``RuntimeEnvAgent``) then outlive it. So the driver starts Ray with
a marker in the environment (``MARKER_ENV=<token>``), which every process Ray starts inherits,
and starts this watcher in its own session with a pipe on its stdin. When the pipe closes (the
driver exited, however it died), the watcher SIGKILLs every process whose environment holds
the marker or that has a file open in the Ray session's directory (a process that renames
itself, as Ray's agents do, may overwrite its environment as /proc shows it; every Ray process
keeps its log files open there).

    python reaper.py TOKEN SESSION_DIR
"""
from __future__ import annotations

import os
import signal
import sys
import time

MARKER_ENV = 'STAG_SEG_RAY_SESSION'


def _has_open_file_under(pid: str, folder: str) -> bool:
    try:
        for fd in os.listdir(f'/proc/{pid}/fd'):
            try:
                if os.readlink(f'/proc/{pid}/fd/{fd}').startswith(folder):
                    return True
            except OSError:
                pass
    except OSError:                           # gone, or not ours to read
        pass
    return False


def marked(token: str, session_dir: str | None = None, spare: tuple[int, ...] = ()) -> list[int]:
    """Pids of the live processes whose environment (as /proc shows it) has
    ``MARKER_ENV=token``, or that have a file open under ``session_dir``; never this one or
    those in ``spare``."""
    needle = f'{MARKER_ENV}={token}'.encode()
    folder = session_dir.rstrip('/') + '/' if session_dir else None
    found = []
    for name in os.listdir('/proc'):
        if not name.isdigit() or int(name) == os.getpid() or int(name) in spare:
            continue
        try:
            with open(f'/proc/{name}/environ', 'rb') as f:
                if needle in f.read().split(b'\0'):
                    found.append(int(name))
                    continue
        except OSError:                       # gone, or not ours to read
            continue
        if folder and _has_open_file_under(name, folder):
            found.append(int(name))
    return found


def kill_marked(token: str, session_dir: str | None = None, spare: tuple[int, ...] = (),
                rounds: int = 5) -> int:
    """SIGKILL the marked processes, again while new ones appear; returns how many."""
    killed = 0
    for _ in range(rounds):
        pids = marked(token, session_dir, spare)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        time.sleep(0.1)
    return killed


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the driver's to handle
    driver = os.getppid()                         # alive and done with Ray: spared
    while os.read(0, 4096):                       # until EOF: the driver is done or dead
        pass
    kill_marked(argv[0], argv[1] if len(argv) > 1 else None, spare=(driver,))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
