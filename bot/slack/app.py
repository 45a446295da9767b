"""The Bolt app factory and the WSGI applications: the Slack-facing one (``POST /slack/events``, health) and
the metrics one (``GET /metrics``), which runs on its own listener."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from slack_bolt import App, BoltResponse
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.db import Database
from bot.errors import ServiceUnavailable
from bot.ops.metrics import IngressMetrics, LedgerCollector
from bot.settings import Settings
from bot.slack.socket_mode import Ack, SocketModeLinks
from handlers import register_handlers
from handlers.context import HandlerContext

log = logging.getLogger(__name__)

MAX_BODY = 512 * 1024  # Slack payloads are far smaller; anything bigger is refused before parsing

# What every waitress server running Clawback is given. The body bound makes waitress answer 413 as soon as a
# request announces (Content-Length) or streams (chunked) more than MAX_BODY, instead of spooling up to its
# 1 GiB default to disk before the app can look at it (waitress refuses at >= its bound, hence the + 1).
SERVER_LIMITS: dict[str, int] = {"max_request_body_size": MAX_BODY + 1}


def make_slack_client(settings: Settings) -> WebClient:
    """A Web API client for ``SLACK_API_URL`` that honours Retry-After and retries connection errors."""
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=15)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(ConnectionErrorRetryHandler(max_retry_count=2))
    return client


def create_bolt_app(settings: Settings, ctx: HandlerContext, client: WebClient) -> App:
    """The Bolt app with every listener; the listener finishes before the HTTP response (no lost work)."""
    settings.require("slack_bot_token", "slack_signing_secret")
    app = App(
        client=client,
        signing_secret=settings.slack_signing_secret,
        process_before_response=True,
        ignoring_self_events_enabled=False,  # we record bot messages ourselves (no loops, but visible)
        token_verification_enabled=False,
        raise_error_for_unhandled_request=False,
    )

    @app.error
    def on_error(error: Exception, response: BoltResponse) -> BoltResponse | None:
        if isinstance(error, ServiceUnavailable):
            log.error("ingress unavailable: %s", error)
            response.status = 503
            response.body = json.dumps({"error": "temporarily unavailable, retry later"})
            return response
        log.exception("listener failed", exc_info=error)
        return None

    if not ctx.ingress.home_teams:
        ctx.ingress.home_teams = learn_home_teams(client)
    register_handlers(app, ctx)
    return app


def learn_home_teams(client: WebClient) -> tuple[str, ...]:
    """The team the bot token belongs to (``auth.test``): its people are ours, everyone else is from outside.

    An org-wide install on Enterprise Grid (``is_enterprise_install``) belongs to the organisation: its people
    are those of every workspace the app was added to (``auth.teams.list``), and the enterprise id itself.
    When Slack cannot be reached at start-up, ingress falls back to the installation each signed payload
    names (``authorizations``, ``team``), and says so in the log.
    """
    try:
        auth = client.auth_test()
    except Exception as exc:  # start anyway: the payload fallback still refuses other teams in events
        log.warning("auth.test failed (%s): the home team is taken from each request's installation", exc)
        return ()
    found = [t for t in (auth.get("team_id"), auth.get("enterprise_id")) if isinstance(t, str) and t]
    if auth.get("is_enterprise_install"):
        try:
            for page in client.auth_teams_list(limit=200):
                found += [t["id"] for t in page.get("teams") or [] if isinstance(t.get("id"), str)]
        except Exception as exc:
            log.warning("auth.teams.list failed (%s): only the enterprise id counts as home", exc)
    return tuple(dict.fromkeys(found))


def is_valid_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    now: float | None = None,
    tolerance: int = 300,
) -> bool:
    """Slack's v0 signature over the raw bytes, with a 5-minute replay window (constant-time compare)."""
    if not timestamp.isdigit() or not signature.startswith("v0="):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


_EVENT_STR_FIELDS = ("type", "ts", "thread_ts", "text", "bot_id", "subtype", "channel_type", "event_ts", "tab")
# Strings in message events; objects in others (``user_change``/``team_join`` carry a user object,
# ``channel_created``/``im_created`` a channel object): either shape is Slack's, anything else is not.
_EVENT_STR_OR_OBJECT_FIELDS = ("user", "channel", "team")


def _strings(obj: dict[str, Any], fields: Iterable[str]) -> bool:
    return all(isinstance(obj[f], str) for f in fields if f in obj)


def _str_or_object(value: Any, event_type: str) -> bool:
    """A string, or (outside the message events our listeners read) an object with a string ``id``."""
    if isinstance(value, str):
        return True
    return (
        event_type not in ("message", "app_mention")
        and isinstance(value, dict)
        and isinstance(value.get("id"), str)
    )


def _well_formed_event(data: dict[str, Any]) -> bool:
    event = data.get("event")
    return (
        isinstance(event, dict)
        and isinstance(event.get("type"), str)
        and _strings(event, _EVENT_STR_FIELDS)
        and all(_str_or_object(event[f], event["type"]) for f in _EVENT_STR_OR_OBJECT_FIELDS if f in event)
        and _strings(data, ("event_id", "team_id", "api_app_id", "enterprise_id"))
        and isinstance(data.get("authorizations", []), list)
    )


def _well_formed_interactive(payload: dict[str, Any]) -> bool:
    user, actions = payload.get("user"), payload.get("actions", [])
    legacy = payload.get("type") == "interactive_message"  # attachments' buttons: actions have a name, no id
    return (
        isinstance(user, dict)
        and isinstance(user.get("id"), str)
        and isinstance(actions, list)
        and (bool(actions) or payload.get("type") != "block_actions")  # Bolt reads the first action
        and all(isinstance(a, dict) and isinstance(a.get("name" if legacy else "action_id"), str) for a in actions)
        # ``team`` is null in payloads of org-wide (Enterprise Grid) installs
        and all(
            payload.get(k) is None or isinstance(payload[k], dict)
            for k in ("team", "channel", "container", "message", "enterprise")
        )
    )


def _has_nul(obj: Any) -> bool:
    """True if any string in a decoded payload holds a NUL (Slack never sends one; PostgreSQL rejects it)."""
    if isinstance(obj, str):
        return "\x00" in obj
    if isinstance(obj, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_nul(v) for v in obj)
    return False


def kind_of_json_body(data: Any) -> str | None:
    """Classify a decoded JSON request (Events API), or None if malformed; ``event`` for event callbacks."""
    if _has_nul(data) or not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    if data["type"] == "event_callback":
        return "event" if _well_formed_event(data) else None
    return data["type"]  # url_verification, app_rate_limited, …: Bolt answers or we ack


def kind_of_interactive(payload: Any) -> str | None:
    """``interactive`` for a well-formed interactivity payload, else None."""
    ok = (
        not _has_nul(payload)
        and isinstance(payload, dict)
        and isinstance(payload.get("type"), str)
        and _well_formed_interactive(payload)
    )
    return "interactive" if ok else None


def kind_of_command(form: Any) -> str | None:
    """``command`` for a well-formed slash command (string fields, a command and a user), else None."""
    ok = (
        isinstance(form, dict)
        and not _has_nul(form)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in form.items())
        and form.get("command", "").startswith("/")
        and bool(form.get("user_id"))
    )
    return "command" if ok else None


def kind_of_envelope(envelope_type: str, payload: Any) -> str | None:
    """Classify a Socket Mode envelope's payload with the same checks as HTTP mode, or None if malformed."""
    if envelope_type == "events_api":
        return kind_of_json_body(payload)
    if envelope_type == "interactive":
        return kind_of_interactive(payload)
    if envelope_type == "slash_commands":
        return kind_of_command(payload)
    return None


def _kind(body: bytes, content_type: str) -> str | None:
    """Classify a Slack request body, or None if it is malformed (wrong shapes, types or NUL characters)."""
    try:
        if "json" in content_type:
            return kind_of_json_body(json.loads(body))
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
    except (ValueError, UnicodeDecodeError):
        return None
    if _has_nul(form):
        return None
    if "payload" in form:
        try:
            return kind_of_interactive(json.loads(form["payload"][0]))
        except ValueError:
            return None
    if "command" in form and "user_id" in form:
        return "command"
    if "ssl_check" in form:
        return "ssl_check"
    return None


class MetricsApp:
    """WSGI app serving only ``GET /metrics``: run it on its own listener, never the one Slack posts to.

    The series are by surface, intent, model and outcome (never by person), but a series of a rarely used
    intent moves when one person acts, so reading them is an operator's privilege (see README, "Metrics").
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics" and environ.get("REQUEST_METHOD", "GET") == "GET":
            status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        else:
            status, ctype, body = "404 Not Found", "text/plain", b"not found"
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]


class WebApp:
    """WSGI entry: signature check and body validation first, then Bolt."""

    def __init__(
        self,
        bolt: App,
        *,
        signing_secret: str,
        db: Database,
        redis_conn: redis.Redis | None,
        registry: CollectorRegistry | None = None,
        metrics: IngressMetrics | None = None,
    ) -> None:
        self.bolt = bolt
        self.signing_secret = signing_secret
        self.db = db
        self.redis = redis_conn
        self.registry = registry or CollectorRegistry()
        self.metrics = metrics
        self.metrics_app = MetricsApp(self.registry)  # served apart: ``clawback web --metrics-port``

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        if path == "/slack/events" and method == "POST":
            status, headers, body = self._slack(environ)
        elif path == "/healthz" and method == "GET":
            status, headers, body = self._health()
        else:  # /metrics is not served here (the listener Slack posts to): see MetricsApp
            status, headers, body = 404, [("Content-Type", "text/plain")], b"not found"
        start_response(
            f"{status} {_REASONS.get(status, 'OK')}", [*headers, ("Content-Length", str(len(body)))]
        )
        return [body]

    def _slack(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        started = time.perf_counter()
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self._done("bad", started, 400, b"bad content-length")
        if length > MAX_BODY:
            return self._done("too_large", started, 413, b"request body too large")
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        ts, sig = headers.get("x-slack-request-timestamp", ""), headers.get("x-slack-signature", "")
        if not is_valid_signature(self.signing_secret, body, ts, sig):
            return self._done("unauthorized", started, 401, b"invalid signature")
        kind = _kind(body, headers["content-type"])
        if kind is None:
            return self._done("malformed", started, 400, b"malformed request body")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self._done("malformed", started, 400, b"malformed request body")
        try:
            req = BoltRequest(
                body=text, query=environ.get("QUERY_STRING", ""), headers={k: [v] for k, v in headers.items()}
            )
        except (TypeError, ValueError, AttributeError, KeyError):
            return self._done("malformed", started, 400, b"malformed request body")
        resp = self.bolt.dispatch(req)
        if resp.status == 404:
            # An event type we do not listen to: acknowledge it, or Slack would retry it for nothing.
            return self._done(f"{kind}_unhandled", started, 200, b"")
        out_headers = [
            (k, v) for k, values in resp.headers.items() for v in values if k.lower() != "content-length"
        ]
        payload = resp.body.encode() if isinstance(resp.body, str) else (resp.body or b"")
        return self._done(kind, started, resp.status, payload, out_headers)

    def _done(
        self,
        kind: str,
        started: float,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]] | None = None,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if self.metrics is not None:
            self.metrics.requests.labels(kind, str(status)).inc()
            self.metrics.ack_seconds.labels(kind).observe(time.perf_counter() - started)
        return status, headers or [("Content-Type", "text/plain")], body

    def _health(self) -> tuple[int, list[tuple[str, str]], bytes]:
        return health(self.db, self.redis)


def health(
    db: Database, redis_conn: redis.Redis | None, **extra: bool
) -> tuple[int, list[tuple[str, str]], bytes]:
    """``GET /healthz``: 200 when the database, Redis (and every ``extra`` check) answer, else 503."""
    db_ok = db.ping()
    try:
        redis_ok = bool(redis_conn.ping()) if redis_conn is not None else False
    except redis.RedisError:
        redis_ok = False
    ok = db_ok and redis_ok and all(extra.values())
    body = json.dumps({"ok": ok, "database": db_ok, "redis": redis_ok, **extra}).encode()
    return (200 if ok else 503), [("Content-Type", "application/json")], body


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def build_web(
    settings: Settings,
    *,
    db: Database,
    queue_conn: redis.Redis,
    ctx: HandlerContext,
    client: WebClient | None = None,
) -> WebApp:
    """Wire the whole web process: Bolt app, metrics registry (ingress + ledger), WSGI app."""
    registry = CollectorRegistry()
    metrics = IngressMetrics(registry)
    registry.register(LedgerCollector(db, k=lambda: ctx.ingress.policy.current.k_anonymity))
    ctx.metrics = metrics
    ctx.settings = ctx.settings or settings
    bolt = create_bolt_app(settings, ctx, client or make_slack_client(settings))
    assert settings.slack_signing_secret
    return WebApp(
        bolt,
        signing_secret=settings.slack_signing_secret,
        db=db,
        redis_conn=queue_conn,
        registry=registry,
        metrics=metrics,
    )


class SocketApp:
    """The same Bolt app over Socket Mode: each envelope is validated as HTTP mode validates a request,
    dispatched to Bolt, and acknowledged (with the listener's response payload, if any).

    The links to Slack are ``bot.slack.socket_mode.SocketModeLinks``: on a ``disconnect`` (``refresh_requested``)
    the new link is open before the old one is closed, so the first envelope after a refresh is acked at once
    (slack_sdk's clients left a gap of 0.5–10.5 s there; see README, "Socket Mode").
    """

    def __init__(
        self,
        bolt: App,
        *,
        app_token: str,
        client: WebClient,
        db: Database,
        redis_conn: redis.Redis | None,
        registry: CollectorRegistry | None = None,
        metrics: IngressMetrics | None = None,
        concurrency: int = 10,
    ) -> None:
        self.bolt = bolt
        self.db = db
        self.redis = redis_conn
        self.registry = registry or CollectorRegistry()
        self.metrics = metrics
        self.metrics_app = MetricsApp(self.registry)
        self.links = SocketModeLinks(
            app_token=app_token, web_client=client, on_request=self._on_request, concurrency=concurrency
        )

    def connect(self) -> SocketApp:
        """Open the first link (``apps.connections.open``, the WebSocket, Slack's hello)."""
        self.links.connect()
        return self

    def close(self) -> None:
        """Close the links and wait for the envelopes being handled."""
        self.links.close()

    def is_connected(self) -> bool:
        """True while a Socket Mode link is open."""
        return self.links.is_connected()

    def health_wsgi(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        """WSGI app for orchestrators: ``GET /healthz`` (database, Redis, the Socket Mode connection)."""
        if environ.get("PATH_INFO") == "/healthz":
            status, headers, body = health(self.db, self.redis, socket=self.is_connected())
        else:
            status, headers, body = 404, [("Content-Type", "text/plain")], b"not found"
        start_response(
            f"{status} {_REASONS.get(status, 'OK')}", [*headers, ("Content-Length", str(len(body)))]
        )
        return [body]

    def _on_request(self, req: SocketModeRequest, ack: Ack) -> None:
        started = time.perf_counter()
        kind = kind_of_envelope(req.type, req.payload)
        if kind is None:
            # HTTP mode answers 400; here an unacked envelope would only come back three more times.
            return self._ack(ack, None, "malformed", "400", started)
        headers: dict[str, str | list[str]] = {}
        if req.retry_attempt:
            headers = {"x-slack-retry-num": str(req.retry_attempt), "x-slack-retry-reason": req.retry_reason or ""}
        try:
            bolt_req = BoltRequest(mode="socket_mode", body=req.payload, headers=headers)
        except (TypeError, ValueError, AttributeError, KeyError):
            return self._ack(ack, None, "malformed", "400", started)
        resp = self.bolt.dispatch(bolt_req)
        if resp.status == 404:
            # Nothing listens to it: acknowledge, as HTTP mode does, or Slack shows the person an error.
            return self._ack(ack, None, f"{kind}_unhandled", "200", started)
        if resp.status != 200:
            # Not acked (503: ingress unavailable): Slack sends the envelope again, as it retries HTTP.
            log.warning("socket envelope %s not acked: status %s", req.envelope_id, resp.status)
            self._count(kind, str(resp.status), started)
            return None
        payload: dict[str, Any] | None = None
        if resp.body:
            ctype = resp.headers.get("content-type", [""])[0]
            payload = json.loads(resp.body) if ctype.startswith("application/json") else {"text": resp.body}
        return self._ack(ack, payload, kind, "200", started)

    def _ack(self, ack: Ack, payload: dict[str, Any] | None, kind: str, status: str, started: float) -> None:
        self._count(kind, status, started)  # before the ack: whoever reads the ack reads the count too
        ack(payload)

    def _count(self, kind: str, status: str, started: float) -> None:
        if self.metrics is not None:
            self.metrics.requests.labels(kind, status).inc()
            self.metrics.ack_seconds.labels(kind).observe(time.perf_counter() - started)


def build_socket(
    settings: Settings,
    *,
    db: Database,
    queue_conn: redis.Redis,
    ctx: HandlerContext,
    client: WebClient | None = None,
) -> SocketApp:
    """Wire the whole socket process like ``build_web``: Bolt app, metrics registry, Socket Mode client."""
    settings.require("slack_app_token")
    registry = CollectorRegistry()
    metrics = IngressMetrics(registry)
    registry.register(LedgerCollector(db, k=lambda: ctx.ingress.policy.current.k_anonymity))
    ctx.metrics = metrics
    ctx.settings = ctx.settings or settings
    web_client = client or make_slack_client(settings)
    bolt = create_bolt_app(settings, ctx, web_client)
    assert settings.slack_app_token
    return SocketApp(
        bolt,
        app_token=settings.slack_app_token,
        client=web_client,
        db=db,
        redis_conn=queue_conn,
        registry=registry,
        metrics=metrics,
    )


class BackgroundWeb:
    """A WSGI app under waitress in a background thread: by default on a free loopback port (demo, tests,
    benchmarks); ``clawback web`` runs its metrics listener this way."""

    def __init__(self, wsgi: Callable, *, threads: int = 8, host: str = "127.0.0.1", port: int = 0) -> None:
        import threading

        from waitress.server import create_server

        self.wsgi = wsgi
        self.server = create_server(wsgi, host=host, port=port, threads=threads, **SERVER_LIMITS)
        self.url = f"http://{host}:{self.server.effective_port}"
        self._closing = threading.Event()
        self.thread = threading.Thread(target=self._run, name="clawback-web", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.server.run()
        except OSError:
            if not self._closing.is_set():  # closing the sockets under select() is how waitress stops here
                raise

    def close(self) -> None:
        """Stop serving and wait for the loop to end."""
        self._closing.set()
        self.server.close()
        self.thread.join(timeout=5)

    def __enter__(self) -> BackgroundWeb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
