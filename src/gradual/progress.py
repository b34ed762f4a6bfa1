"""One progress bar for every long step: probe passes, eval, training epochs, a compare's runs.

Run as: used by gradual.probe.run, gradual.evaluate, gradual.train.callbacks and gradual.compare.

Every bar reads the same way from the left: what is running, the bar, done / total; each step adds
the columns that matter to it (a rate, an ETA, the loss). Bars go to stderr (stdout carries tables),
unless a caller hands the console its own bars nest under.
"""

from __future__ import annotations

from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
from rich.text import Text


class ItemRate(ProgressColumn):
    """Items per second (a probe's questions), or dashes before the first estimate."""

    def render(self, task: Any) -> Text:
        return Text(f"{task.speed:.2f} items/s" if task.speed else "-- items/s", style="cyan")


def progress_bar(*columns: ProgressColumn, console: Console | None = None, transient: bool = False,
                 width: int | None = 40) -> Progress:
    """description | bar | done/total | `columns`..., on `console` (default: a stderr console).
    width None lets the bar take whatever the text leaves (the line then fits the terminal)."""
    return Progress(TextColumn("{task.description}"), BarColumn(bar_width=width), MofNCompleteColumn(), *columns,
                    console=console if console is not None else Console(stderr=True), transient=transient)


class Bars:
    """A context holding one bar per task (a probe's passes: items done, rate, elapsed, ETA), or nothing
    when disabled (a quiet run, a rank other than the main one)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p: Progress | None = None

    def __enter__(self) -> "Bars":
        if self.enabled:
            from rich.progress import TimeElapsedColumn, TimeRemainingColumn

            self._p = progress_bar(ItemRate(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
            self._p.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)

    def task(self, desc: str, total: int) -> Callable[[float], None]:
        """A new bar; the returned function advances it."""
        if self._p is None:
            return lambda _n: None
        p, tid = self._p, self._p.add_task(desc, total=total)
        return lambda n: p.advance(tid, n)
