"""A small threaded HTTP server base shared by the stand-ins."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class RecordedRequest:
    """One request a stand-in served: method, path, headers and raw body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    extra: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body or b"null")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class StandInServer:
    """Runs a ``BaseHTTPRequestHandler`` subclass on 127.0.0.1 in a background thread.

    Subclasses set ``handler_class``; the handler reaches its stand-in as ``self.server.standin``.
    """

    handler_class: type[BaseHTTPRequestHandler]

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("stand-ins listen on loopback only")
        self._host = host
        self._port = port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.requests: list[RecordedRequest] = []
        self.lock = threading.RLock()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._httpd is None:
            raise RuntimeError("stand-in is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandInServer:
        """Start serving in a daemon thread; returns self."""
        self._httpd = _Server((self._host, self._port), self.handler_class)
        self._httpd.standin = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def record(self, req: RecordedRequest) -> None:
        """Remember a served request (thread-safe)."""
        with self.lock:
            self.requests.append(req)

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class QuietHandler(BaseHTTPRequestHandler):
    """Request handler that does not log every request to stderr and speaks HTTP/1.1."""

    protocol_version = "HTTP/1.1"
    # One write per response and no Nagle delay: otherwise keep-alive clients wait ~40 ms per request for
    # the delayed ACK between the header and body segments — a stand-in artefact no real API has.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def read_body(self) -> bytes:
        """Read the request body by Content-Length."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_bytes(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """Send a complete response (a client that went away is not an error for a stand-in)."""
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        """Send a JSON response."""
        self.send_bytes(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)
