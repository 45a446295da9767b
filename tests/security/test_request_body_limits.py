"""Unbounded request bodies (issue 11, item 10): `clawback web` must refuse a huge body before reading it.

The app refuses bodies over 512 KiB itself, but only after waitress has spooled the whole body (its own
default bound is 1 GiB). These tests talk to a real `clawback web` process over a raw socket: they announce
a 120 MiB body (or stream an endless chunked one), send only a small part of it, and expect the 413 at once.
Without the server-side bound the server waits for the rest of the body and the read times out.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from bot.slack.app import MAX_BODY
from tests.load.test_load import free_port, start_web

HUGE = 120 * 1024 * 1024


@pytest.fixture
def web_port(settings, deps, tmp_path) -> Iterator[int]:
    """A real `clawback web` process on a free loopback port."""
    port = free_port()
    proc = start_web(settings, tmp_path, port)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _head(port: int, extra: str) -> bytes:
    return (
        "POST /slack/events HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        "X-Slack-Request-Timestamp: 1\r\n"
        "X-Slack-Signature: v0=unsigned\r\n"
        f"{extra}\r\n"
    ).encode()


def _send_then_read(port: int, parts: list[bytes]) -> bytes:
    """Send what we can of ``parts`` (the server may hang up early), then read the reply (5 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            for part in parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before we finished: what we want
        reply = b""
        try:
            while b"\r\n\r\n" not in reply:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            pytest.fail("the server kept waiting for the rest of a 120 MiB body instead of refusing it")
        except ConnectionResetError:
            pass
    return reply


def test_announced_huge_body_is_refused_before_it_is_read(web_port):
    """Content-Length: 120 MiB with 64 KiB sent: 413 comes back at once; the rest is never awaited."""
    reply = _send_then_read(web_port, [_head(web_port, f"Content-Length: {HUGE}\r\n"), b"x" * 65536])
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_endless_chunked_body_is_refused_once_it_passes_the_bound(web_port):
    """A chunked body never terminated: refused as soon as it exceeds the app's bound, not at 1 GiB."""
    chunk = b"x" * 65536
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    parts = [_head(web_port, "Transfer-Encoding: chunked\r\n")] + [framed] * (2 * MAX_BODY // len(chunk))
    reply = _send_then_read(web_port, parts)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_body_at_the_bound_still_reaches_the_app(web_port):
    """A body of exactly the bound is read and judged by the app (unsigned here: 401, not 413)."""
    body = b"x" * MAX_BODY
    reply = _send_then_read(web_port, [_head(web_port, f"Content-Length: {len(body)}\r\n"), body])
    assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
