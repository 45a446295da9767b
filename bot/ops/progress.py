"""Progress bars for long CLI work, on stderr and only when stderr is a terminal (never in piped or JSON output)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def wanted(stream: IO[str] | None = None) -> bool:
    """True when ``stream`` (default stderr) is an interactive terminal."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def on_terminal(console: Console | None = None) -> bool:
    """True when a bar would be drawn: ``console`` is a terminal (default: stderr is one)."""
    return console.is_terminal if console is not None else wanted()


@contextmanager
def progress_bar(
    description: str, *, enabled: bool | None = None, console: Console | None = None
) -> Iterator[Callable[..., None]]:
    """Yield ``update(done, total, step=None)``; draws a transient Rich bar on ``console`` (default: a console on
    stderr) when enabled (default: when that is a terminal) from the first update on, otherwise the callback
    does nothing. Log lines written to the same terminal meanwhile are printed above the bar, not through it."""
    if not (on_terminal(console) if enabled is None else enabled):
        yield lambda *args, **kwargs: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(description, total=None)
    with ExitStack() as shown:

        def update(done: int, total: int, step: Any = None) -> None:
            if not bar.live.is_started:  # drawn only once there is something to show
                shown.enter_context(bar)
                shown.enter_context(_logs_above(bar.console))
            text = f"{description}: {step}" if step else description
            bar.update(task, completed=done, total=total or None, description=text)

        yield update


@contextmanager
def _logs_above(console: Console) -> Iterator[None]:
    """Route the root logger's handlers that write to a terminal through ``console`` while a bar is live."""
    from rich.file_proxy import FileProxy

    moved: list[tuple[logging.StreamHandler, IO[str]]] = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and wanted(handler.stream):
            moved.append((handler, handler.stream))
            handler.setStream(FileProxy(console, handler.stream))
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.flush()
            handler.setStream(stream)
