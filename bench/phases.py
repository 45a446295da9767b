"""Where a benchmark's time goes: SQL, Redis, HTTP and the Python around them, as time and counts per task.

Used by P2 on one extra, instrumented run (the ratio runs stay unmetered). Each hook meters *exclusive* time on
its own thread (SQL inside an HTTP call would count as SQL only), through public extension points:

- SQL: a ``Database`` whose units of work are timed (session open → commit/close, ORM included) and an
  engine listener counting statements; ``transactions`` counts units of work.
- Redis: a connection class (``connection_class=``) timing each send and each reply read; ``round_trips``
  counts sends (a pipeline or a Lua script call is one), ``commands`` what they carried.
- HTTP: a urllib handler installed as the process's opener (``slack_sdk`` and the bare job use ``urlopen``)
  and an ``httpx2`` transport for the ``openai`` client: time from request to response headers.
- Python: the phase's wall time less the three above.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import redis
from sqlalchemy import event

from bot.db import Database

KINDS = ("sql", "redis", "http")


class PhaseMeter:
    """Exclusive time and counts per kind, summed over every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, counter: str, n: int = 1) -> None:
        """Count something (statements, commands) without timing it."""
        with self._lock:
            self.counts[counter] += n

    @contextmanager
    def timed(self, kind: str) -> Iterator[None]:
        """Time a block as ``kind``, less the time of blocks nested in it on the same thread."""
        stack = self._local.__dict__.setdefault("stack", [])
        frame = [0.0]  # time spent in nested blocks
        stack.append(frame)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - t0
            stack.pop()
            if stack:
                stack[-1][0] += elapsed
            with self._lock:
                self.seconds[kind] += elapsed - frame[0]

    def snapshot(self) -> dict[str, Any]:
        """The totals so far (subtract two snapshots to get a phase)."""
        with self._lock:
            return {"seconds": dict(self.seconds), "counts": dict(self.counts)}


def per_task(before: dict[str, Any], after: dict[str, Any], wall: float, n: int) -> dict[str, Any]:
    """One phase's breakdown per task: ms and counts for SQL, Redis and HTTP, Python as the rest of ``wall``."""

    def diff(part: str, key: str) -> float:
        return after[part].get(key, 0) - before[part].get(key, 0)

    out: dict[str, Any] = {"wall_ms": round(1000 * wall / n, 3)}
    metered = 0.0
    for kind in KINDS:
        seconds = diff("seconds", kind)
        metered += seconds
        out[f"{kind}_ms"] = round(1000 * seconds / n, 3)
    out["python_ms"] = round(1000 * (wall - metered) / n, 3)
    keys = set(after["counts"]) | set(before["counts"])
    for key in sorted(keys):
        out[key] = round(diff("counts", key) / n, 2)
    return out


class MeteredDatabase(Database):
    """A ``Database`` on an existing engine whose units of work are timed as SQL."""

    def __init__(self, db: Database, meter: PhaseMeter) -> None:
        super().__init__(db.url, engine=db.engine)
        self.meter = meter

        @event.listens_for(self.engine, "before_cursor_execute")
        def _count(*_args: Any) -> None:
            meter.add("sql_statements")

    @contextmanager
    def _unit(self, factory: Any) -> Iterator[Any]:
        self.meter.add("sql_transactions")
        with self.meter.timed("sql"), super()._unit(factory) as sess:
            yield sess


def metered_redis(url: str, meter: PhaseMeter, **kwargs: Any) -> redis.Redis:
    """A Redis client whose connections time their traffic and count round trips and commands."""
    base = redis.ConnectionPool.from_url(url).connection_class

    class Metered(base):  # type: ignore[misc, valid-type]
        def send_command(self, *args: Any, **kw: Any) -> None:
            meter.add("redis_commands")
            super().send_command(*args, **kw)

        def pack_commands(self, commands: Any) -> Any:
            commands = list(commands)
            meter.add("redis_commands", len(commands))
            return super().pack_commands(commands)

        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            meter.add("redis_round_trips")
            with meter.timed("redis"):
                super().send_packed_command(command, check_health)

        def read_response(self, *args: Any, **kw: Any) -> Any:
            with meter.timed("redis"):
                return super().read_response(*args, **kw)

    return redis.Redis.from_url(url, connection_class=Metered, **kwargs)


class MeteredTransport(httpx2.BaseTransport):
    """An httpx2 transport (the HTTP client under ``openai``) timing each request until its response arrives."""

    def __init__(self, meter: PhaseMeter) -> None:
        self.meter = meter
        self.inner = httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send through the default transport, timed as HTTP."""
        self.meter.add("http_requests")
        with self.meter.timed("http"):
            response = self.inner.handle_request(request)
            response.read()
        return response

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()


def install_urllib(meter: PhaseMeter) -> None:
    """Make ``urlopen`` (no TLS context given) time and count its plain-HTTP requests."""

    class Timed(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            meter.add("http_requests")
            with meter.timed("http"):
                return super().http_open(req)

    urllib.request.install_opener(urllib.request.build_opener(Timed()))


def uninstall_urllib() -> None:
    """Back to the default opener."""
    urllib.request.install_opener(None)  # type: ignore[arg-type]
