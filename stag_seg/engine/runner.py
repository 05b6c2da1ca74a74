"""StreamRunner: mmengine's Runner with a console for streams (progress and warnings)."""
from __future__ import annotations

import logging

from mmengine.logging import MMLogger
from mmengine.registry import RUNNERS
from mmengine.runner import Runner


@RUNNERS.register_module()
class StreamRunner(Runner):
    """mmengine's ``Runner``; with ``console_log_level`` in the config (e.g. 'WARNING'), the
    console shows only that level and above while the log file keeps everything (system
    environment, config, per-class tables, stage lines). tools/test_tta.py sets it unless
    ``--verbose``."""

    def build_logger(self, log_level: int | str = 'INFO', log_file: str | None = None,
                     **kwargs) -> MMLogger:
        logger = super().build_logger(log_level, log_file, **kwargs)
        console_level = self.cfg.get('console_log_level') if self.cfg else None
        if console_level is not None:
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler:
                    handler.setLevel(console_level)
        return logger
