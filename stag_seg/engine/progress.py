"""A progress bar per stream stage: images done and the running mIoU."""
from __future__ import annotations

import time
from collections.abc import Callable

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: seconds between two reads of the running mIoU (each read waits for the device)
MIOU_INTERVAL = 1.0


class StageProgress:
    """``with StageProgress('round 1/10 fog', 400) as bar: bar.advance(1, metric.running_miou)``.

    The running mIoU is read at most once per :data:`MIOU_INTERVAL` and at the end, so the
    bar costs no host synchronisation per image. The finished bar stays as the stage's line.
    """

    def __init__(self, description: str, total: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn('{task.description}'), BarColumn(), MofNCompleteColumn(),
            TextColumn('mIoU {task.fields[miou]}'), TimeElapsedColumn(), TimeRemainingColumn())
        self._task = self._progress.add_task(description, total=total, miou='-')
        self._last_read = time.monotonic()
        self._miou: Callable[[], float] | None = None

    def __enter__(self) -> StageProgress:
        if self.enabled:
            self._progress.start()
        return self

    def advance(self, num: int, miou: Callable[[], float]) -> None:
        """``num`` more images done; ``miou`` reads the running mIoU when it is time."""
        self._miou = miou
        fields = {}
        if self.enabled and time.monotonic() - self._last_read >= MIOU_INTERVAL:
            fields['miou'] = f'{miou():.2f}'
            self._last_read = time.monotonic()
        self._progress.update(self._task, advance=num, **fields)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            if self._miou is not None and exc[0] is None:
                self._progress.update(self._task, miou=f'{self._miou():.2f}')
            self._progress.stop()
