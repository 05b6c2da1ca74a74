"""Where sweep runs execute: one after another in this process, or as Ray tasks.

A backend's ``run(payloads)`` yields ``worker.execute_run`` results as runs finish.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import os.path as osp
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence

from stag_seg import files
from stag_seg.sweep import reaper, worker

#: Ray's switch for a single-machine instance: with it off, every Ray process of a local
#: instance binds to 127.0.0.1 (its node address) instead of all interfaces
LOCAL_ONLY_ENV = 'RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'
#: times Ray reruns a run whose worker or node died (never for a run that failed by itself:
#: ``execute_run`` returns failures); the rerun resumes it from its state file
NODE_RETRIES = 3
#: Ray's notice that a new local instance uses token authentication (it does; noise)
TOKEN_NOTICE = 'Token authentication is enabled'


class InfeasibleRuns(ValueError):
    """A run's resources exceed what the local Ray instance has: Ray would wait forever."""


def _needs(resources: dict) -> dict[str, float]:
    """A run's Ray resource demand by Ray's names (CPU, GPU, memory, custom)."""
    need = {'CPU': resources.get('num_cpus', 1), 'GPU': resources.get('num_gpus', 0),
            'memory': resources.get('memory', 0), **(resources.get('resources') or {})}
    return {k: float(v) for k, v in need.items() if v}


def check_fits(resources: dict, available: dict[str, float]) -> None:
    """InfeasibleRuns naming each per-run resource above the instance's total."""
    short = [f'{key}={value:g} (the instance has {available.get(key, 0):g})'
             for key, value in _needs(resources).items() if value > available.get(key, 0)]
    if short:
        raise InfeasibleRuns('each run asks for ' + ', '.join(short) + ' on the local Ray '
                             'instance, so none could start; lower resources in the spec or '
                             'raise --num-cpus / --num-gpus')


class SerialBackend:
    """Runs one after another in this process (for debugging)."""

    def run(self, payloads: Sequence[dict]) -> Iterator[dict]:
        for payload in payloads:
            yield worker.execute_run(payload)


class _DropTokenNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_NOTICE)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f'signal {signum}')


class RayBackend:
    """Each run a Ray task with ``resources`` (num_cpus, num_gpus, memory, resources).

    Without ``address`` a local Ray instance with ``num_cpus``/``num_gpus`` (None: all of the
    machine's) is started for the sweep: bound to 127.0.0.1 only, without the dashboard, and
    shut down after it, also on SIGINT / SIGTERM (raised here as KeyboardInterrupt) and, by a
    watcher process (:mod:`~stag_seg.sweep.reaper`), when the driver is killed. With an
    ``address`` the sweep joins that cluster (whose nodes must see the same paths), as the
    cluster was started. A run whose node (or worker) dies is rerun by Ray on a live node,
    where it resumes (``NODE_RETRIES``).
    """

    def __init__(self, resources: dict, address: str | None = None,
                 num_cpus: int | None = None, num_gpus: int | None = None) -> None:
        if importlib.util.find_spec('ray') is None:
            raise ImportError('the Ray backend needs Ray: pip install "ray>=2.9,<3" (the '
                              '"sweep" extra), or use --backend serial')
        self.resources = resources
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus

    def _init(self, ray) -> subprocess.Popen | None:
        """Start or join Ray; for a local instance, return its watcher (None off Linux)."""
        common = dict(include_dashboard=False, log_to_driver=False, logging_level='WARNING')
        if self.address:
            ray.init(address=self.address, **common)
            return None
        from ray._private import ray_constants
        logging.getLogger('ray._private.authentication.authentication_token_setup') \
            .addFilter(_DropTokenNotice())
        token = uuid.uuid4().hex
        env = {LOCAL_ONLY_ENV: '0',               # for the processes ray.init starts
               reaper.MARKER_ENV: token}          # what the watcher finds them by
        saved = {k: os.environ.get(k) for k in env}, ray_constants.ENABLE_RAY_CLUSTER
        os.environ.update(env)
        ray_constants.ENABLE_RAY_CLUSTER = False  # read when ray.init picks the node IP
        try:
            ray.init(address='local', num_cpus=self.num_cpus, num_gpus=self.num_gpus, **common)
        finally:
            for key, value in saved[0].items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            ray_constants.ENABLE_RAY_CLUSTER = saved[1]
        if sys.platform != 'linux':
            return None
        node = getattr(ray._private.worker, '_global_node', None)   # the session's folder
        session = [node.get_session_dir_path()] if node is not None else []
        return subprocess.Popen([sys.executable, reaper.__file__, token, *session],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    def run(self, payloads: Sequence[dict]) -> Iterator[dict]:
        import ray
        from ray import cloudpickle

        # ship the run code by value: workers then need neither stag_seg nor mmseg
        cloudpickle.register_pickle_by_value(files)
        cloudpickle.register_pickle_by_value(worker)
        started = not ray.is_initialized()
        watcher = self._init(ray) if started else None
        main = threading.current_thread() is threading.main_thread()
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
        try:
            if started and not self.address:  # a cluster may grow (autoscaler): not checked
                check_fits(self.resources, ray.cluster_resources())
            task = ray.remote(max_retries=NODE_RETRIES, retry_exceptions=False,
                              **self.resources)(worker.execute_run)
            pending = {task.remote(p): p for p in payloads}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                payload = pending.pop(ready[0])
                try:
                    yield ray.get(ready[0])
                except ray.exceptions.RayError as e:
                    yield {'name': payload['name'], 'status': 'failed',
                           'log': osp.join(payload['work_dir'], worker.LOG_FILE),
                           'error': f'Ray: {type(e).__name__}: {e}'}
        finally:
            if started:
                ray.shutdown()
            if watcher is not None:
                watcher.stdin.close()          # the watcher kills what is left, and exits
                watcher.wait()
            if main:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if old_term is None else old_term)


def make_backend(name: str, resources: dict, address: str | None = None,
                 num_cpus: int | None = None, num_gpus: int | None = None):
    """'ray' or 'serial'."""
    if name == 'serial':
        return SerialBackend()
    if name == 'ray':
        return RayBackend(resources, address, num_cpus, num_gpus)
    raise ValueError(f'unknown sweep backend {name!r} (expected ray or serial)')
