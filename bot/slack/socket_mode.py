"""The Socket Mode client: Slack's WebSocket links, opened with the app-level token, kept open and replaced.

Why not slack_sdk's clients: its websocket-client one closes the old link before it opens the new one, from a
thread other than the link's reader. The close handshake drops envelopes that arrive meanwhile, and its single
session runner starts the new link only after the old reader notices the close, which websocket-client's
dispatcher may do only at its 10 s ``select`` timeout (the descriptor was closed under it). Every refresh left
the app without a link for 0.5 s, 4 refreshes in 30 for 10.5 s: Slack resent, or after three resends dropped,
what it sent then. Its built-in client holds a lock inside a 3 s ``recv`` while the new link waits.

Here each link has its own reader thread, which alone reads, and closes, its socket. On ``disconnect``
(``refresh_requested``, ``warning``, ...) or a link that dies, the replacement is opened and has said
``hello`` before the old link is sent its close frame (Slack allows several open links per app and delivers
on any of them); envelopes still arriving on the old link are handled and acked. An ack goes back on the
envelope's link, or on the current one when that link is closing (Slack takes an ack on any of the app's
links).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import websocket
from slack_sdk import WebClient
from slack_sdk.socket_mode.request import SocketModeRequest
from websocket import ABNF, WebSocketException, WebSocketTimeoutException

log = logging.getLogger(__name__)

Ack = Callable[[dict[str, Any] | None], None]
RequestListener = Callable[[SocketModeRequest, Ack], None]

HELLO_TIMEOUT = 10.0  # seconds from the WebSocket handshake to Slack's hello
RETRY_DELAYS = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)  # between attempts to open a link; the last one repeats


class _Link:
    """One WebSocket connection and its reader thread."""

    def __init__(self, number: int, ws: websocket.WebSocket) -> None:
        self.number = number
        self.ws = ws
        self.hello = threading.Event()
        self.closing = False  # our close frame is sent (or about to be): send nothing more on it
        self.open = True  # until the reader has stopped
        self.awaiting_pong = False
        self.reader: threading.Thread | None = None

    def send(self, text: str) -> bool:
        """Send a text frame; False when the link is closing or the send failed."""
        if self.closing or not self.open:
            return False
        try:
            self.ws.send(text)
        except (WebSocketException, OSError):
            return False
        return True

    def retire(self) -> None:
        """Start the close handshake; the reader finishes it when Slack's close frame (or EOF) arrives."""
        if self.closing:
            return
        self.closing = True
        try:
            self.ws.send_close()
        except (WebSocketException, OSError):
            self.abort()

    def abort(self) -> None:
        """Wake the reader at once (shutdown, not close: the reader still owns the descriptor)."""
        try:
            self.ws.abort()
        except (WebSocketException, OSError):
            pass


class SocketModeLinks:
    """Keeps the app connected to Slack over Socket Mode and hands each envelope to ``on_request``.

    ``on_request(request, ack)`` runs on a pool of ``concurrency`` threads; ``ack(payload)`` acknowledges the
    envelope (``payload`` is the response payload, or None).
    """

    def __init__(
        self,
        *,
        app_token: str,
        web_client: WebClient,
        on_request: RequestListener,
        concurrency: int = 10,
        ping_interval: float = 10.0,
    ) -> None:
        self.app_token = app_token
        self.web_client = web_client
        self.on_request = on_request
        self.ping_interval = ping_interval
        self._workers = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="socket-envelope")
        self._lock = threading.Lock()
        self._switch = threading.Lock()  # one replacement at a time
        self._stopping = threading.Event()
        self._links: list[_Link] = []
        self._current: _Link | None = None
        self._opened = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the first link (``apps.connections.open``, WebSocket, Slack's hello); raises on failure."""
        link = self._open()
        with self._lock:
            self._current = link

    def close(self) -> None:
        """Close every link (close handshake, bounded) and wait for the envelopes being handled."""
        self._stopping.set()
        with self._switch, self._lock:  # after any replacement under way: it stops at its next step
            links = list(self._links)
            self._current = None
        for link in links:
            link.retire()
        for link in links:
            if link.reader is not None:
                link.reader.join(timeout=2)
            if link.open:
                link.abort()
                if link.reader is not None:
                    link.reader.join(timeout=2)
        self._workers.shutdown(wait=True)

    def is_connected(self) -> bool:
        """True while a link that has said hello is open."""
        with self._lock:
            link = self._current
        return link is not None and link.open and not link.closing

    # -- links -------------------------------------------------------------------------------------
    def _open(self) -> _Link:
        """A new link that has said hello, its reader running."""
        url = self.web_client.apps_connections_open(app_token=self.app_token)["url"]
        ws = websocket.create_connection(url, timeout=HELLO_TIMEOUT, enable_multithread=True)
        with self._lock:
            self._opened += 1
            link = _Link(self._opened, ws)
            self._links.append(link)
        link.reader = threading.Thread(
            target=self._read, args=(link,), name=f"socket-link-{link.number}", daemon=True
        )
        link.reader.start()
        if not link.hello.wait(HELLO_TIMEOUT) or not link.open:
            link.retire()
            link.abort()
            raise ConnectionError(f"Socket Mode link {link.number}: no hello from Slack")
        log.info("socket mode link %s open", link.number)
        return link

    def _replace(self, old: _Link, reason: str) -> None:
        """Open a new link, make it current, then retire ``old``; retried with backoff until it works."""
        with self._switch:
            with self._lock:
                if self._current is not old or self._stopping.is_set():
                    return  # already replaced, or shutting down
            attempt = 0
            while not self._stopping.is_set():
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                if delay and self._stopping.wait(delay):
                    return
                attempt += 1
                try:
                    new = self._open()
                except Exception as exc:  # whatever failed (API, network, no hello): logged, retried
                    log.warning(
                        "socket mode: opening a link after %s failed (attempt %s): %s", reason, attempt, exc
                    )
                    continue
                if self._stopping.is_set():
                    new.retire()
                    return
                with self._lock:
                    self._current = new
                log.info("socket mode link %s replaces link %s (%s)", new.number, old.number, reason)
                old.retire()
                return

    def _read(self, link: _Link) -> None:
        """The link's reader: frames in, envelopes to the pool, a ping when idle; closes the socket last."""
        ws = link.ws
        ws.settimeout(self.ping_interval)
        try:
            while True:
                try:
                    opcode, frame = ws.recv_data_frame(True)
                except WebSocketTimeoutException:
                    if link.closing or link.awaiting_pong:
                        break  # no close frame, or no pong for a whole interval: the link is gone
                    link.awaiting_pong = True
                    ws.ping()
                    continue
                link.awaiting_pong = False
                if opcode == ABNF.OPCODE_CLOSE:
                    break
                if opcode == ABNF.OPCODE_TEXT:
                    self._on_text(link, frame.data)
        except (WebSocketException, OSError, ValueError) as exc:
            if not link.closing:
                log.warning("socket mode link %s failed: %s", link.number, exc)
        except Exception:  # a bug here must not leave the app without a link: logged, then replaced
            log.exception("socket mode link %s: reader failed", link.number)
        finally:
            link.open = False
            ws.shutdown()
            with self._lock:
                self._links.remove(link)
                current = self._current is link
            log.info("socket mode link %s closed", link.number)
        if current and not self._stopping.is_set():
            self._replace(link, "link lost")

    def _on_text(self, link: _Link, data: bytes | str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("socket mode link %s: a frame that is not JSON", link.number)
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "hello":
            link.hello.set()
        elif kind == "disconnect":
            reason = str(message.get("reason") or "disconnect")
            log.info("socket mode link %s: disconnect (%s)", link.number, reason)
            # Off the reader: the old link keeps delivering while the new one opens.
            threading.Thread(
                target=self._replace, args=(link, reason), name="socket-replace", daemon=True
            ).start()
        else:
            request = SocketModeRequest.from_dict(message)
            if request is not None:
                try:
                    self._workers.submit(self._dispatch, link, request)
                except RuntimeError:  # closing: not acked, so Slack sends it again to the next process
                    log.info("socket mode envelope %s left to Slack's resend (closing)", request.envelope_id)

    def _dispatch(self, link: _Link, request: SocketModeRequest) -> None:
        def ack(payload: dict[str, Any] | None) -> None:
            body: dict[str, Any] = {"envelope_id": request.envelope_id}
            if payload is not None:
                body["payload"] = payload
            self._send(link, json.dumps(body))

        try:
            self.on_request(request, ack)
        except Exception:
            log.exception("socket mode envelope %s: listener failed", request.envelope_id)

    def _send(self, link: _Link, text: str) -> None:
        """On the envelope's link, else on the current one."""
        if link.send(text):
            return
        with self._lock:
            current = self._current
        if current is None or current is link or not current.send(text):
            log.warning("socket mode: no open link to send on; Slack will resend the envelope")
