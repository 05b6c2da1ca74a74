"""StreamRunner: mmengine's Runner handed the front door's validated setup, with a console
for streams (progress and warnings) and its default hooks (the stream's scalars)."""
from __future__ import annotations

import functools
import itertools
import logging

from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from stag_seg.engine.config import TTASetup, plugin_hook_cfgs

#: numbers the runners of this process (their loggers' names)
_SERIAL = itertools.count()
#: default hooks of a stream run (besides mmengine's), by their default_hooks key
STREAM_HOOKS = dict(stream_scalars=dict(type='StreamScalarsHook'))


@RUNNERS.register_module()
class StreamRunner(Runner):
    """mmengine's ``Runner`` for a stream config, built by :meth:`from_setup`.

    The plug-ins among ``custom_hooks`` are registered as the setup's objects (built once, by
    the front door), not built again; the loop takes the setup's options and method from
    :attr:`tta`. With ``console_log_level`` in the config (e.g. 'WARNING'), the console shows
    only that level and above while the log file keeps everything (system environment,
    config, per-class tables, stage lines); tools/test_tta.py sets it unless ``--verbose``.

    Its default hooks add :data:`STREAM_HOOKS` (the stream's scalars to the visualizer); a
    config changes one through ``default_hooks.<key>`` (options merged into the default) or
    turns it off with ``default_hooks.<key>=None``.
    """

    def __init__(self, *args, tta: TTASetup | None = None, **kwargs) -> None:
        if tta is None:
            raise ValueError('a stream runs through stag_seg.engine.launch (load_tta_config, '
                             'then run_tta or build_runner), which validates the config and '
                             'builds its method and plug-ins once')
        self.tta = tta
        super().__init__(*args, **kwargs)

    @classmethod
    def from_setup(cls, cfg: Config, tta: TTASetup) -> StreamRunner:
        """``Runner.from_cfg(cfg)`` with the validated setup handed to the runner."""
        return Runner.from_cfg.__func__(functools.partial(cls, tta=tta), cfg)

    def register_custom_hooks(self, hooks: list) -> None:
        plugins = {index: plugin for (index, _, _), plugin
                   in zip(plugin_hook_cfgs(self.cfg), self.tta.plugins, strict=True)}
        for index, hook in enumerate(hooks):
            if index in plugins:
                self.register_hook(plugins[index], hook.get('priority'))
            else:
                self.register_hook(hook)

    def dump_config(self) -> None:
        """Deferred from ``__init__`` to :meth:`dump_checked_config`: a start that fails its
        checks (checkpoint, data, device) leaves a finished run's copy of its config as it
        was."""
        if getattr(self, '_start_checked', False):
            super().dump_config()

    def dump_checked_config(self) -> None:
        """Writes the config to the work dir, once the loop's start has been checked."""
        self._start_checked = True
        self.dump_config()

    def test(self) -> dict:
        """mmengine's, then the log file closed: later messages of this process (e.g. the
        start check of another run) do not go to this run's log."""
        try:
            return super().test()
        finally:
            for handler in list(self.logger.handlers):
                if isinstance(handler, logging.FileHandler):
                    self.logger.removeHandler(handler)
                    handler.close()

    def build_logger(self, log_level: int | str = 'INFO', log_file: str | None = None,
                     **kwargs) -> MMLogger:
        # a name of this runner's own: mmengine names loggers by config and second, so a
        # second run of a config in the same second would get the first one's (closed) log
        kwargs.setdefault('name', f'{self._experiment_name}@{next(_SERIAL)}')
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
