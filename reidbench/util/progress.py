"""Progress bars (rich) that stay quiet when asked or when not on a terminal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def make_progress(*extra: TextColumn, transient: bool = False) -> Progress:
    """A rich Progress with description, bar, count, elapsed and remaining time, plus extra columns."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra,
        transient=transient,
    )


def progress_bar(
    items: Iterable[T], description: str, show: bool = True, total: int | None = None
) -> Iterator[T]:
    """Iterate over ``items`` with a transient progress bar when ``show``."""
    if not show:
        yield from items
        return
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    with make_progress(transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


class NullProgress:
    """A stand-in for :class:`rich.progress.Progress` that shows nothing."""

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def update(self, *args: object, **kwargs: object) -> None:
        return None

    def advance(self, *args: object, **kwargs: object) -> None:
        return None
