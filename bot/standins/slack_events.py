"""Sends signed requests to a Clawback web app the way Slack does (events, commands, interactivity).

Used by ``clawback demo``, the tests and the load benchmarks. Signatures follow Slack's scheme:
``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{raw body}`` with the signing secret.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlparse


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class Reply:
    """The HTTP response Clawback gave."""

    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        """Body as JSON (None if empty)."""
        return json.loads(self.body) if self.body else None


class SlackEventSender:
    """Builds Slack-shaped payloads and POSTs them, signed, to ``url`` (…/slack/events)."""

    def __init__(
        self,
        url: str,
        signing_secret: str,
        *,
        team_id: str = "T0CLAWBACK",
        api_app_id: str = "A0CLAWBACK",
        bot_user_id: str = "U0CLAWBOT",
        timeout: float = 10.0,
    ) -> None:
        parsed = urlparse(url)
        if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the event sender only talks to loopback addresses")
        self.url = url
        self._parsed = parsed
        self.secret = signing_secret
        self.team_id = team_id
        self.api_app_id = api_app_id
        self.bot_user_id = bot_user_id
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    # -- transport ---------------------------------------------------------------------------------
    def post(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        extra_headers: dict[str, str] | None = None,
        signed: bool = True,
    ) -> Reply:
        """POST a raw body, signed unless told otherwise (keeps one keep-alive connection)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        if signed:
            headers["X-Slack-Request-Timestamp"] = ts
            headers["X-Slack-Signature"] = signature or sign(self.secret, ts, body)
        headers.update(extra_headers or {})
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self._parsed.hostname, self._parsed.port, timeout=self.timeout
                )
            try:
                try:
                    self._conn.request("POST", self._parsed.path or "/", body=body, headers=headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a server may refuse (413) and hang up before the body is sent: read its answer
                resp = self._conn.getresponse()
                data = resp.read()
                return Reply(resp.status, data, {k.lower(): v for k, v in resp.getheaders()})
            except (http.client.HTTPException, ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the keep-alive connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- payloads ----------------------------------------------------------------------------------
    def event_envelope(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """Wrap an inner event like the Events API does."""
        return {
            "token": "deprecated-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or "Ev" + secrets.token_hex(5).upper(),
            "event_time": int(time.time()),
            "authorizations": [{"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True}],
        }

    def send_event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None, **kw: Any
    ) -> Reply:
        """Send an Events API callback (``retry_num`` adds Slack's retry headers)."""
        body = json.dumps(self.event_envelope(event, event_id)).encode()
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return self.post(body, "application/json", extra_headers=headers, **kw)

    def mention(
        self,
        user: str,
        channel: str,
        text: str,
        *,
        ts: str | None = None,
        thread_ts: str | None = None,
        event_id: str | None = None,
        retry_num: int | None = None,
        bot_id: str | None = None,
        user_team: str | None = None,
    ) -> Reply:
        """An ``app_mention`` event from ``user`` in ``channel``.

        ``user_team`` makes the author a member of another organisation in a Slack Connect channel: Slack then
        sets the event's ``user_team`` (and ``team``) to the author's own team, while the envelope's
        ``team_id`` and ``authorizations`` still name the installation that receives the event.
        """
        event: dict[str, Any] = {
            "type": "app_mention",
            "user": user,
            "text": f"<@{self.bot_user_id}> {text}",
            "ts": ts or f"{time.time():.6f}",
            "channel": channel,
            "event_ts": f"{time.time():.6f}",
            "team": user_team or self.team_id,
        }
        if user_team:
            event["user_team"] = event["source_team"] = user_team
        if thread_ts:
            event["thread_ts"] = thread_ts
        if bot_id:
            event["bot_id"] = bot_id
        return self.send_event(event, event_id=event_id, retry_num=retry_num)

    def dm(
        self,
        user: str,
        channel: str,
        text: str,
        *,
        ts: str | None = None,
        event_id: str | None = None,
        bot_id: str | None = None,
        subtype: str | None = None,
    ) -> Reply:
        """A ``message`` event in an IM channel."""
        event: dict[str, Any] = {
            "type": "message",
            "channel_type": "im",
            "user": user,
            "text": text,
            "ts": ts or f"{time.time():.6f}",
            "channel": channel,
            "event_ts": f"{time.time():.6f}",
        }
        if bot_id:
            event["bot_id"] = bot_id
        if subtype:
            event["subtype"] = subtype
        return self.send_event(event, event_id=event_id)

    def block_action(
        self,
        user: str,
        action_id: str,
        value: str,
        *,
        channel: str,
        message_ts: str,
        thread_ts: str | None = None,
        trigger_id: str | None = None,
        selected_option: str | None = None,
        user_team: str | None = None,
    ) -> Reply:
        """A ``block_actions`` interactivity payload (a button click or a select).

        ``user_team``: the clicker's own team (``user.team_id``), for a member of another organisation.
        """
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": "b",
            "type": "button",
            "value": value,
            "action_ts": f"{time.time():.6f}",
        }
        if selected_option is not None:
            action = {
                "action_id": action_id,
                "block_id": "b",
                "type": "static_select",
                "selected_option": {
                    "value": selected_option,
                    "text": {"type": "plain_text", "text": selected_option},
                },
                "action_ts": f"{time.time():.6f}",
            }
        payload = {
            "type": "block_actions",
            "team": {"id": self.team_id},
            "user": {"id": user, "team_id": user_team or self.team_id},
            "api_app_id": self.api_app_id,
            "token": "deprecated",
            "trigger_id": trigger_id or secrets.token_hex(8),
            "channel": {"id": channel},
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
            "message": {"ts": message_ts, "thread_ts": thread_ts, "type": "message"},
            "response_url": "https://hooks.slack.com/actions/T0/1/none",
            "actions": [action],
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, "application/x-www-form-urlencoded")

    def command(
        self,
        user: str,
        command: str,
        text: str,
        *,
        channel: str = "C0GENERAL",
        trigger_id: str | None = None,
        team_id: str | None = None,
    ) -> Reply:
        """A slash command invocation (``team_id``: the workspace the person invoked it from)."""
        form = {
            "token": "deprecated",
            "team_id": team_id or self.team_id,
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "response_url": "https://hooks.slack.com/commands/T0/1/none",
            "trigger_id": trigger_id or secrets.token_hex(8),
        }
        return self.post(urlencode(form).encode(), "application/x-www-form-urlencoded")

    def home_opened(self, user: str) -> Reply:
        """An ``app_home_opened`` event for the Home tab."""
        return self.send_event(
            {
                "type": "app_home_opened",
                "user": user,
                "channel": "D" + user[1:],
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            }
        )
