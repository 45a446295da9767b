"""Progress bars for long CLI work, on stderr and only when stderr is a terminal (never in piped or JSON output)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any


def wanted(stream: IO[str] | None = None) -> bool:
    """True when ``stream`` (default stderr) is an interactive terminal."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def progress_bar(description: str, *, enabled: bool | None = None) -> Iterator[Callable[..., None]]:
    """Yield ``update(done, total, step=None)``; draws a transient Rich bar on stderr when enabled (default: when
    stderr is a terminal), otherwise the callback does nothing."""
    if not (wanted() if enabled is None else enabled):
        yield lambda *args, **kwargs: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int, step: Any = None) -> None:
            text = f"{description}: {step}" if step else description
            bar.update(task, completed=done, total=total, description=text)

        yield update
