"""Progress that also shows when stdout is not a terminal (nohup, CI, ``> log``).

rich's ``Progress`` draws a live bar on a terminal; on a pipe or file it draws nothing until it
stops (and nothing at all when transient). ``LoggingProgress`` keeps the bar on a terminal and,
elsewhere, prints one plain line per task every ``DONNA_NAS_LOG_EVERY`` seconds (default 30) and
when a task finishes::

    [12:03:41] depth ep 2 loss 0.1432: 57/120 (48%), 41s elapsed, ~45s left

``install()`` (called by the ``donna-nas`` entry point) makes every ``rich.progress.Progress``
created afterwards a ``LoggingProgress``, so existing progress bars log without changes.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import rich.progress
from rich.progress import Progress as _RichProgress, TaskID, TaskProgressColumn, TextColumn

__all__ = ["LoggingProgress", "install", "log_interval"]

_ORIGINAL = _RichProgress


def log_interval() -> float:
    try:
        return max(0.0, float(os.environ.get("DONNA_NAS_LOG_EVERY", "30")))
    except ValueError:
        return 30.0


def _fmt_s(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LoggingProgress(_ORIGINAL):
    """A rich ``Progress`` that logs plain, periodic lines instead of a bar when not on a terminal."""

    def __init__(self, *columns: Any, **kwargs: Any):
        super().__init__(*columns, **kwargs)
        self._plain = (not self.disable) and not self.console.is_terminal
        self._last_log: dict[TaskID, float] = {}
        self._logged_done: set[TaskID] = set()
        if self._plain:
            self.disable = True  # no live display, no final render: the lines below replace it

    # ---- plain lines
    def _describe(self, task) -> str:
        parts = []
        for col in self.columns:
            if isinstance(col, TextColumn) and not isinstance(col, TaskProgressColumn):
                try:
                    parts.append(col.render(task).plain.strip())
                except Exception:  # a column that needs fields this task lacks
                    continue
            elif isinstance(col, str):
                try:
                    parts.append(_strip_markup(col.format(task=task)).strip())
                except Exception:
                    continue
        return " ".join(p for p in parts if p) or _strip_markup(task.description)

    def _line(self, task) -> str:
        done, total = task.completed, task.total
        elapsed = task.elapsed or 0.0
        if total:
            pct = f" ({100 * done / total:.0f}%)"
            rest = ""
            if done and done < total and elapsed > 0:
                rest = f", ~{_fmt_s(elapsed * (total - done) / done)} left"
            count = f"{done:g}/{total:g}{pct}"
        else:
            count, rest = f"{done:g}", ""
        return f"[{time.strftime('%H:%M:%S')}] {self._describe(task)}: {count}, {_fmt_s(elapsed)} elapsed{rest}"

    def _emit(self, line: str) -> None:
        out = self.console.file if self.console.file is not None else sys.stdout
        try:
            out.write(line + "\n")
            out.flush()
        except (OSError, ValueError):
            pass

    def _maybe_log(self, task_id: TaskID, force: bool = False) -> None:
        if not self._plain:
            return
        with self._lock:
            task = self._tasks.get(task_id)
        if task is None or not task.visible and not force:
            return
        now = time.monotonic()
        finished = task.total is not None and task.completed >= task.total
        if finished and task_id in self._logged_done:
            return
        last = self._last_log.get(task_id)
        if last is None:
            self._last_log[task_id] = now  # first line after one interval, or when finished
            if not (finished or force):
                return
        if force or finished or now - self._last_log[task_id] >= log_interval():
            self._last_log[task_id] = now
            if finished:
                self._logged_done.add(task_id)
            self._emit(self._line(task))

    # ---- rich API
    def add_task(self, *args: Any, **kwargs: Any) -> TaskID:
        task_id = super().add_task(*args, **kwargs)
        if self._plain:
            self._last_log[task_id] = time.monotonic()
        return task_id

    def update(self, task_id: TaskID, *args: Any, **kwargs: Any) -> None:
        super().update(task_id, *args, **kwargs)
        self._maybe_log(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_log(task_id)

    def stop(self) -> None:
        if self._plain:
            for task_id, task in list(self._tasks.items()):
                if task_id not in self._logged_done and task.completed:
                    self._logged_done.add(task_id)
                    self._emit(self._line(task))
        super().stop()


def _strip_markup(text: str) -> str:
    from rich.text import Text

    try:
        return Text.from_markup(text).plain
    except Exception:
        return text


def install() -> None:
    """Make ``rich.progress.Progress`` (as imported from now on) a ``LoggingProgress``."""
    rich.progress.Progress = LoggingProgress  # type: ignore[misc]
