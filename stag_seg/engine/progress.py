"""A progress bar per stream stage: images done and the running mIoU."""
from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class StageProgress:
    """``with StageProgress('round 1/10 fog', 400) as bar: bar.advance(miou)``."""

    def __init__(self, description: str, total: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress = Progress(
            TextColumn('{task.description}'), BarColumn(), MofNCompleteColumn(),
            TextColumn('mIoU {task.fields[miou]}'), TimeElapsedColumn(), TimeRemainingColumn())
        self._task = self._progress.add_task(description, total=total, miou='-')

    def __enter__(self) -> StageProgress:
        if self.enabled:
            self._progress.start()
        return self

    def advance(self, miou: float, num: int = 1) -> None:
        self._progress.update(self._task, advance=num, miou=f'{miou:.2f}')

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._progress.stop()
