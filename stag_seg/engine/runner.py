"""StreamRunner: mmengine's Runner with a console for streams (progress, warnings) and its hooks."""
from __future__ import annotations

import logging

from mmengine.logging import MMLogger
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

#: default hooks of a stream run (besides mmengine's), by their default_hooks key
STREAM_HOOKS = dict(stream_scalars=dict(type='StreamScalarsHook'))


@RUNNERS.register_module()
class StreamRunner(Runner):
    """mmengine's ``Runner``; with ``console_log_level`` in the config (e.g. 'WARNING'), the
    console shows only that level and above while the log file keeps everything (system
    environment, config, per-class tables, stage lines). tools/test_tta.py sets it unless
    ``--verbose``.

    Its default hooks add :data:`STREAM_HOOKS` (the stream's scalars to the visualizer); a
    config changes one through ``default_hooks.<key>`` (options merged into the default) or
    turns it off with ``default_hooks.<key>=None``.
    """

    def build_logger(self, log_level: int | str = 'INFO', log_file: str | None = None,
                     **kwargs) -> MMLogger:
        logger = super().build_logger(log_level, log_file, **kwargs)
        console_level = self.cfg.get('console_log_level') if self.cfg else None
        if console_level is not None:
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler:
                    handler.setLevel(console_level)
        return logger

    def build_visualizer(self, visualizer=None):
        """mmengine's, under a name of this runner's own: visualizers are named global
        instances, so a second runner in one process (the demo's methods) would otherwise get
        the first one's, writing its scalars to that run's log dir."""
        if isinstance(visualizer, dict):
            name = visualizer.get('name', 'visualizer')
            visualizer = {**visualizer, 'name': f'{name}@{self._experiment_name}:{id(self)}'}
        return super().build_visualizer(visualizer)

    def register_default_hooks(self, hooks: dict | None = None) -> None:
        hooks = dict(hooks or {})
        for key, default in STREAM_HOOKS.items():
            if key not in hooks:
                hooks[key] = default
            elif hooks[key] is None:
                del hooks[key]
            elif isinstance(hooks[key], dict):
                hooks[key] = {**default, **hooks[key]}
        super().register_default_hooks(hooks)
