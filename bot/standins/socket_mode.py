"""A Socket Mode stand-in: a real WebSocket server (RFC 6455, stdlib only) on 127.0.0.1 speaking Slack's protocol.

What Slack does, as documented for Socket Mode: ``apps.connections.open`` (called with the app-level ``xapp-``
token on the Web API stand-in) hands out a one-use ``ws://`` URL; on connecting the app gets ``{"type":
"hello"}``; requests come as envelopes ``{"type": "events_api" | "slash_commands" | "interactive", "envelope_id",
"payload", "accepts_response_payload", "retry_attempt", "retry_reason"}``; the app acks with ``{"envelope_id",
"payload"?}``; an envelope not acked within 3 s is sent again (``retry_attempt`` + 1, ``retry_reason: "timeout"``,
up to 3 retries); ``{"type": "disconnect", "reason": "refresh_requested" | "warning" | ...}`` asks the app to open
a new connection before this one is closed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RESEND_AFTER = 3.0  # Slack's ack deadline
MAX_RETRIES = 3


@dataclass
class Ack:
    """An acknowledgement the app sent: which envelope, its payload, and how long after the first send."""

    envelope_id: str
    payload: dict[str, Any] | None
    seconds: float
    connection: int


@dataclass
class _Pending:
    envelope: dict[str, Any]
    first_sent: float
    last_sent: float
    retries: int = 0
    sends: list[int] = field(default_factory=list)  # connection numbers it went out on


class _Conn:
    """One accepted WebSocket connection (server side: reads masked frames, writes unmasked ones)."""

    def __init__(self, sock: socket.socket, number: int) -> None:
        self.sock = sock
        self.number = number
        self.open = True
        self.mute = False  # a half-open link: nothing comes back on it (no pong, no ack is read)
        self._send_lock = threading.Lock()

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, data: bytes) -> None:
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([n])
        elif n < 65536:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        with self._send_lock:
            self.sock.sendall(head + data)

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def read_message(self) -> tuple[int, bytes]:
        """One whole message (opcode, data), reassembling fragments; control frames come back alone."""
        parts: list[bytes] = []
        first_op = 0
        while True:
            b1, b2 = self._read_exact(2)
            fin, opcode = b1 & 0x80, b1 & 0x0F
            n = b2 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read_exact(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read_exact(8))
            mask = self._read_exact(4) if b2 & 0x80 else b""
            data = self._read_exact(n)
            if mask:
                data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
            if opcode >= 0x8:
                return opcode, data
            if opcode:
                first_op = opcode
            parts.append(data)
            if fin:
                return first_op, b"".join(parts)

    def close(self, code: int = 1000) -> None:
        if not self.open:
            return
        self.open = False
        try:
            self._send(0x8, struct.pack("!H", code))
        except OSError:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class SocketModeStandIn:
    """Slack's Socket Mode side: hands out URLs, sends envelopes, records acks, resends unacked ones."""

    def __init__(self, *, host: str = "127.0.0.1", resend_after: float = RESEND_AFTER) -> None:
        self.host = host
        self.resend_after = resend_after
        self.max_retries = MAX_RETRIES
        self.lock = threading.Condition()
        self.connections: list[_Conn] = []
        self.acks: list[Ack] = []
        self.pending: dict[str, _Pending] = {}
        self.sent: list[dict[str, Any]] = []  # every envelope as sent, resends included
        self.resends = 0  # envelopes sent again because no ack came within ``resend_after`` (Slack's 3 s)
        self._tickets: set[str] = set()
        self._numbered = 0
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> SocketModeStandIn:
        """Listen on a free loopback port; accept and resend in background threads."""
        self._sock = socket.create_server((self.host, 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="socket-standin", daemon=True).start()
        threading.Thread(target=self._resend_loop, name="socket-standin-resend", daemon=True).start()
        return self

    def stop(self) -> None:
        """Close every connection and the listener."""
        self._stopping.set()
        for conn in list(self.connections):
            conn.close()
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> SocketModeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def open_url(self) -> str:
        """A fresh one-use URL, as ``apps.connections.open`` returns."""
        ticket = secrets.token_hex(8)
        with self.lock:
            self._tickets.add(ticket)
        return f"ws://{self.host}:{self.port}/link/?ticket={ticket}&app_id=A0CLAWBACK"

    # -- what Slack sends --------------------------------------------------------------------------
    def current(self) -> _Conn | None:
        """The newest open connection (Slack sends on any; the newest is the one a refresh asked for)."""
        with self.lock:
            live = [c for c in self.connections if c.open and not c.mute]
            return live[-1] if live else None

    def send(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
        envelope_id: str | None = None,
    ) -> str:
        """Send one envelope on the current connection; returns its ``envelope_id``."""
        eid = envelope_id or f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(6)}"
        envelope = {
            "envelope_id": eid,
            "payload": payload,
            "type": envelope_type,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        now = time.monotonic()
        with self.lock:
            self.pending[eid] = _Pending(envelope, now, now)
        self._transmit(eid)
        return eid

    def events_api(self, body: dict[str, Any], **kw: Any) -> str:
        """An Events API callback (the JSON body HTTP mode would get) as an ``events_api`` envelope."""
        return self.send("events_api", body, **kw)

    def slash_command(self, form: dict[str, str]) -> str:
        """A slash command (the form HTTP mode would get, as a JSON object) as a ``slash_commands`` envelope."""
        return self.send("slash_commands", form, accepts_response_payload=True)

    def interactive(self, payload: dict[str, Any]) -> str:
        """An interactivity payload as an ``interactive`` envelope."""
        return self.send("interactive", payload, accepts_response_payload=True)

    def disconnect(self, reason: str = "refresh_requested", *, close_after: float | None = 5.0) -> int | None:
        """Ask the app to reconnect (``refresh_requested``, ``warning``, ...) on the newest link and close that
        link ``close_after`` seconds later (if the app has not closed it first); returns the link's number."""
        conn = self.current()
        if conn is None:
            return None
        conn.send_text(json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "standin"}}))
        if close_after is not None:
            timer = threading.Timer(close_after, conn.close)
            timer.daemon = True
            timer.start()
        return conn.number

    def drop(self) -> int | None:
        """Close the newest link without a word (a restart on Slack's side, a network fault); its number."""
        conn = self.current()
        if conn is None:
            return None
        conn.close(1011)
        return conn.number

    def mute(self) -> int | None:
        """Make the newest link half-open: it stays "connected" but nothing comes back (a NAT that dropped it);
        Slack sends on the app's other links from now on. Returns its number."""
        with self.lock:
            conn = next((c for c in reversed(self.connections) if c.open and not c.mute), None)
            if conn is None:
                return None
            conn.mute = True
            return conn.number

    # -- what the test reads -----------------------------------------------------------------------
    def wait_connections(self, n: int, timeout: float = 10.0) -> None:
        """Block until ``n`` connections have said hello."""
        with self.lock:
            if not self.lock.wait_for(lambda: len(self.connections) >= n, timeout):
                raise TimeoutError(f"{len(self.connections)} connection(s), wanted {n}")

    def wait_closed(self, number: int, timeout: float = 10.0) -> None:
        """Block until link ``number`` is closed (by either side)."""
        with self.lock:
            if not self.lock.wait_for(lambda: all(not c.open for c in self.connections if c.number == number), timeout):
                raise TimeoutError(f"connection {number} still open after {timeout} s")

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> Ack:
        """Block until the envelope is acked; returns the (first) ack."""
        with self.lock:
            found = self.lock.wait_for(lambda: self._ack(envelope_id), timeout)
            if not found:
                raise TimeoutError(f"envelope {envelope_id} not acked in {timeout} s")
            return found

    def _ack(self, envelope_id: str) -> Ack | None:
        return next((a for a in self.acks if a.envelope_id == envelope_id), None)

    # -- internals ---------------------------------------------------------------------------------
    def _transmit(self, eid: str) -> None:
        conn = self.current()
        with self.lock:
            item = self.pending.get(eid)
            if item is None or conn is None:
                return
            item.last_sent = time.monotonic()
            item.sends.append(conn.number)
            self.sent.append(dict(item.envelope))
        try:
            conn.send_text(json.dumps(item.envelope))
        except OSError:
            pass  # the resend loop tries again on the next connection

    def _resend_loop(self) -> None:
        while not self._stopping.wait(0.05):
            now = time.monotonic()
            due = []
            with self.lock:
                for eid, item in list(self.pending.items()):
                    if now - item.last_sent < self.resend_after:
                        continue
                    if item.retries >= self.max_retries:
                        del self.pending[eid]
                        continue
                    item.retries += 1
                    self.resends += 1
                    item.envelope = {**item.envelope, "retry_attempt": item.retries, "retry_reason": "timeout"}
                    due.append(eid)
            for eid in due:
                self._transmit(eid)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _handshake(self, sock: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return False
            data += chunk
        lines = data.split(b"\r\n")
        path = lines[0].split(b" ")[1].decode() if len(lines[0].split(b" ")) > 1 else ""
        headers = {}
        for line in lines[1:]:
            if b":" in line:
                k, v = line.split(b":", 1)
                headers[k.strip().lower()] = v.strip()
        ticket = path.split("ticket=", 1)[-1].split("&", 1)[0] if "ticket=" in path else ""
        with self.lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)  # one use, like Slack's
        key = headers.get(b"sec-websocket-key")
        if not valid or not key:
            sock.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        return True

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._handshake(sock):
            sock.close()
            return
        # Numbered in order of connecting, and listed (sent to) from its hello on. Hello and listing happen
        # under one lock: an app that has read its hello finds its link listed (mute/drop/current see it), and
        # no envelope goes out on the link before the hello.
        with self.lock:
            self._numbered += 1
            conn = _Conn(sock, self._numbered)
            live = 1 + sum(c.open for c in self.connections)
            conn.send_text(json.dumps({"type": "hello", "num_connections": live, "connection_info": {"app_id": "A0"},
                                       "debug_info": {"host": "standin", "approximate_connection_time": 3600}}))
            self.connections.append(conn)
            self.lock.notify_all()
        try:
            while conn.open:
                opcode, data = conn.read_message()
                if opcode == 0x8:
                    break
                if conn.mute:
                    continue
                if opcode == 0x9:
                    conn._send(0xA, data)  # pong
                    continue
                if opcode != 0x1:
                    continue
                self._on_text(conn, data)
        except (OSError, ConnectionError, ValueError):
            pass
        finally:
            conn.close()
            with self.lock:
                self.lock.notify_all()

    def _on_text(self, conn: _Conn, data: bytes) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            return
        eid = msg.get("envelope_id") if isinstance(msg, dict) else None
        if not isinstance(eid, str):
            return
        with self.lock:
            item = self.pending.pop(eid, None)
            if item is None and self._ack(eid) is None:
                return
            seconds = time.monotonic() - item.first_sent if item else float("nan")
            self.acks.append(Ack(eid, msg.get("payload"), seconds, conn.number))
            self.lock.notify_all()
