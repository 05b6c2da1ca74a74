"""Where sweep runs execute: one after another in this process, or as Ray tasks.

A backend's ``run(payloads)`` yields ``worker.execute_run`` results as runs finish.
"""
from __future__ import annotations

import importlib.util
import os.path as osp
from collections.abc import Iterator, Sequence

from stag_seg import files
from stag_seg.sweep import worker


class SerialBackend:
    """Runs one after another in this process (for debugging)."""

    def run(self, payloads: Sequence[dict]) -> Iterator[dict]:
        for payload in payloads:
            yield worker.execute_run(payload)


class RayBackend:
    """Each run a Ray task with ``resources`` (num_cpus, num_gpus, memory, resources).

    Without ``address`` a local Ray instance with ``num_cpus``/``num_gpus`` (None: all of the
    machine's) is started for the sweep and shut down after it; with one, the sweep joins that
    cluster (whose workers must see the same paths).
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

    def _init(self, ray) -> None:
        common = dict(include_dashboard=False, log_to_driver=False, logging_level='WARNING')
        if self.address:
            ray.init(address=self.address, **common)
        else:
            ray.init(address='local', num_cpus=self.num_cpus, num_gpus=self.num_gpus, **common)

    def run(self, payloads: Sequence[dict]) -> Iterator[dict]:
        import ray
        from ray import cloudpickle

        # ship the run code by value: workers then need neither stag_seg nor mmseg
        cloudpickle.register_pickle_by_value(files)
        cloudpickle.register_pickle_by_value(worker)
        started = not ray.is_initialized()
        if started:
            self._init(ray)
        try:
            task = ray.remote(max_retries=0, **self.resources)(worker.execute_run)
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


def make_backend(name: str, resources: dict, address: str | None = None,
                 num_cpus: int | None = None, num_gpus: int | None = None):
    """'ray' or 'serial'."""
    if name == 'serial':
        return SerialBackend()
    if name == 'ray':
        return RayBackend(resources, address, num_cpus, num_gpus)
    raise ValueError(f'unknown sweep backend {name!r} (expected ray or serial)')
