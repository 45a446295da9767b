"""A Slack Web API stand-in: serves a seeded workspace and records every call.

It answers the methods Clawback uses with Slack's JSON shapes (``ok``/``error``), checks the bearer
token, and can fail on purpose (``ratelimited`` with Retry-After as HTTP 429, ``channel_not_found``,
``not_in_channel``, ...). ``msg_too_long`` is returned for texts over 40,000 characters, as Slack does.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

from bot.standins.base import QuietHandler, RecordedRequest, StandInServer

MAX_TEXT = 40_000


@dataclass
class Message:
    """A message in a channel of the stand-in workspace."""

    ts: str
    text: str
    user: str | None = None
    bot_id: str | None = None
    thread_ts: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    ephemeral_to: str | None = None

    def as_api(self, include_metadata: bool) -> dict[str, Any]:
        """The message as the Web API returns it."""
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "text": self.text}
        if self.user:
            out["user"] = self.user
        if self.bot_id:
            out["bot_id"] = self.bot_id
            out["subtype"] = "bot_message" if not self.user else None
            out = {k: v for k, v in out.items() if v is not None}
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.blocks:
            out["blocks"] = self.blocks
        if include_metadata and self.metadata:
            out["metadata"] = self.metadata
        return out


class SlackStandIn(StandInServer):
    """The stand-in server plus its workspace state."""

    def __init__(
        self,
        *,
        token: str = "xoxb-standin-token",
        team_id: str = "T0CLAWBACK",
        bot_user_id: str = "U0CLAWBOT",
        bot_id: str = "B0CLAWBOT",
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.handler_class = _Handler
        self.token = token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.users: dict[str, dict[str, Any]] = {
            bot_user_id: {"id": bot_user_id, "name": "clawback", "is_bot": True}
        }
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[Message]] = defaultdict(list)
        self.views: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self._failures: dict[str, list[dict[str, Any]]] = defaultdict(list)
        # Sent as ``x-oauth-scopes`` on every authenticated answer, as Slack does (None: the manifest's bot scopes).
        self.granted_scopes: list[str] | None = None
        self.hooks: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {}
        self._ts_lock = threading.Lock()
        self._last_ts = 0.0
        self.app_token = "xapp-1-standin-app-token"  # the app-level token of Socket Mode
        self.socket_mode: Any = None  # a bot.standins.socket_mode.SocketModeStandIn, when one is attached
        # An org-wide install on Enterprise Grid: the enterprise id, and the workspaces the app was added to
        self.enterprise_id: str | None = None
        self.org_teams: list[str] = []

    # -- seeding -----------------------------------------------------------------------------------
    def add_user(
        self, user_id: str, name: str, *, is_bot: bool = False, real_name: str | None = None
    ) -> None:
        """Add a person (or another bot) to the workspace."""
        self.users[user_id] = {
            "id": user_id,
            "name": name,
            "real_name": real_name or name.title(),
            "is_bot": is_bot,
        }

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        members: list[str] | None = None,
        bot_member: bool = True,
        is_im: bool = False,
    ) -> None:
        """Add a channel; the bot is a member unless ``bot_member`` is False."""
        people = list(members or [])
        if bot_member:
            people.append(self.bot_user_id)
        self.channels[channel_id] = {"id": channel_id, "name": name, "members": people, "is_im": is_im}

    def next_ts(self) -> str:
        """A unique, increasing message timestamp."""
        with self._ts_lock:
            now = max(time.time(), self._last_ts + 0.000001)
            self._last_ts = now
            return f"{now:.6f}"

    def post(
        self,
        channel: str,
        text: str,
        *,
        user: str | None = None,
        thread_ts: str | None = None,
        bot_id: str | None = None,
    ) -> str:
        """Seed a message as if a person (or bot) wrote it; returns its ts."""
        ts = self.next_ts()
        self.messages[channel].append(
            Message(ts=ts, text=text, user=user, bot_id=bot_id, thread_ts=thread_ts)
        )
        return ts

    def seed_demo(self) -> None:
        """A small workspace: three people, #general with a thread, and a DM per person."""
        for uid, name in (
            ("U0ALICE", "alice"),
            ("U0BOB", "bob"),
            ("U0CAROL", "carol"),
            ("U0DAVE", "dave"),
            ("U0EMMA", "emma"),
        ):
            self.add_user(uid, name)
        self.add_user("U0OTHERBOT", "otherbot", is_bot=True)
        self.add_channel("C0GENERAL", "general", members=["U0ALICE", "U0BOB", "U0CAROL"])
        self.add_channel("C0DEPLOYS", "deploys", members=["U0ALICE", "U0BOB", "U0CAROL", "U0DAVE"])
        self.add_channel("C0RANDOM", "random", members=["U0ALICE"], bot_member=False)
        for uid in ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0EMMA"):
            self.add_channel("D" + uid[1:], f"dm-{uid}", members=[uid], is_im=True)

    def on_call(self, method: str, hook: Callable[[dict[str, Any]], None], *, when: str = "after") -> None:
        """Run ``hook(params)`` once on the next ``method`` call (fault tests).

        ``when="after"``: after the call took effect, before the response is sent. ``when="before"``: instead of
        the effect; the caller then gets ``fatal_error``.
        """
        self.hooks[method] = (when, hook)

    def fail_next(self, method: str, error: str, *, retry_after: int | None = None, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` fail with Slack error ``error``."""
        for _ in range(times):
            self._failures[method].append({"error": error, "retry_after": retry_after})

    # -- inspection --------------------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """Parameters of recorded calls (of ``method`` if given), oldest first."""
        with self.lock:
            return [
                r.extra["params"] | {"_method": r.extra["method"]}
                for r in self.requests
                if method is None or r.extra.get("method") == method
            ]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """Messages of a thread: the parent and its replies."""
        return [m for m in self.messages[channel] if m.ts == thread_ts or m.thread_ts == thread_ts]

    def bot_messages(self, channel: str | None = None) -> list[Message]:
        """Messages the bot posted (non-ephemeral)."""
        chans = [channel] if channel else list(self.messages)
        return [m for c in chans for m in self.messages[c] if m.bot_id == self.bot_id and not m.ephemeral_to]

    # -- API ----------------------------------------------------------------------------------------
    def handle(
        self, method: str, params: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, Any], dict]:
        """Dispatch one API call; returns (HTTP status, JSON body, headers)."""
        queued = self._failures.get(method)
        if queued:
            failure = queued.pop(0)
            if failure["error"] == "ratelimited":
                return (
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(failure["retry_after"] or 1)},
                )
            return 200, {"ok": False, "error": failure["error"]}, {}
        if method == "apps.connections.open":  # only the app-level token opens Socket Mode connections
            if token != self.app_token or self.socket_mode is None:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            return 200, {"ok": True, "url": self.socket_mode.open_url()}, {}
        if token != self.token:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        fn = getattr(self, "api_" + method.replace(".", "_"), None)
        if fn is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        when, hook = self.hooks.pop(method, ("", None))
        if hook is not None and when == "before":
            hook(params)
            return 200, {"ok": False, "error": "fatal_error"}, {}
        with self.lock:
            result = fn(params)
        if hook is not None:
            hook(params)
        return 200, result, {"x-oauth-scopes": ",".join(self._scopes())}

    def _scopes(self) -> list[str]:
        if self.granted_scopes is not None:
            return list(self.granted_scopes)
        from bot.slack.manifest import manifest_bot_scopes

        return manifest_bot_scopes()

    def _channel(self, params: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
        cid = params.get("channel")
        if not cid or cid not in self.channels:
            return None, {"ok": False, "error": "channel_not_found"}
        if self.bot_user_id not in self.channels[cid]["members"]:
            return None, {"ok": False, "error": "not_in_channel"}
        return cid, None

    def api_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {
            "ok": True,
            "url": "https://standin.slack.local/",
            "team": "Clawback Stand-in",
            "user": "clawback",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
        }
        if self.enterprise_id:  # an org-level token: the org is the installation, not one workspace
            out |= {
                "team_id": self.enterprise_id,
                "enterprise_id": self.enterprise_id,
                "is_enterprise_install": True,
            }
        return out

    def api_auth_teams_list(self, params: dict[str, Any]) -> dict[str, Any]:
        """The workspaces an org-wide app was added to (one page per ``limit``, with a cursor)."""
        if not self.enterprise_id:
            return {"ok": False, "error": "not_allowed_token_type"}
        limit = int(params.get("limit") or 100)
        start = int(params.get("cursor") or 0)
        page = self.org_teams[start : start + limit]
        more = start + limit < len(self.org_teams)
        return {
            "ok": True,
            "teams": [{"id": t, "name": t.lower()} for t in page],
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def api_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        cid, err = self._channel(params)
        if err:
            return err
        text = params.get("text") or ""
        if len(text) > MAX_TEXT:
            return {"ok": False, "error": "msg_too_long"}
        blocks = _maybe_json(params.get("blocks")) or []
        if len(blocks) > 50:
            return {"ok": False, "error": "invalid_blocks"}
        msg = Message(
            ts=self.next_ts(),
            text=text,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            thread_ts=params.get("thread_ts"),
            blocks=blocks,
            metadata=_maybe_json(params.get("metadata")),
        )
        self.messages[cid].append(msg)
        return {"ok": True, "channel": cid, "ts": msg.ts, "message": msg.as_api(True)}

    def api_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        cid, err = self._channel(params)
        if err:
            return err
        msg = Message(
            ts=self.next_ts(),
            text=params.get("text") or "",
            bot_id=self.bot_id,
            thread_ts=params.get("thread_ts"),
            ephemeral_to=params.get("user"),
            blocks=_maybe_json(params.get("blocks")) or [],
        )
        self.messages[cid].append(msg)
        return {"ok": True, "message_ts": msg.ts}

    def api_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        cid, err = self._channel(params)
        if err:
            return err
        for m in self.messages[cid]:
            if m.ts == params.get("ts"):
                if "text" in params:
                    m.text = params["text"]
                if "blocks" in params:
                    m.blocks = _maybe_json(params["blocks"]) or []
                return {"ok": True, "channel": cid, "ts": m.ts, "text": m.text}
        return {"ok": False, "error": "message_not_found"}

    def api_chat_getPermalink(self, params: dict[str, Any]) -> dict[str, Any]:
        """A permalink for an extant message (``channel`` + ``message_ts``), in Slack's archive URL shape."""
        cid, ts = params.get("channel"), str(params.get("message_ts") or "")
        if not cid or cid not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        if not any(m.ts == ts and not m.ephemeral_to for m in self.messages[cid]):
            return {"ok": False, "error": "message_not_found"}
        link = f"https://standin.slack.local/archives/{cid}/p{ts.replace('.', '')}"
        return {"ok": True, "channel": cid, "permalink": link}

    def api_conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        cid, err = self._channel(params)
        if err:
            return err
        ts = params.get("ts")
        msgs = [m for m in self.thread(cid, ts) if not m.ephemeral_to]
        if not msgs:
            return {"ok": False, "error": "thread_not_found"}
        include = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        limit = int(params.get("limit") or 1000)
        start = int(params.get("cursor") or 0)
        page = msgs[start : start + limit]
        more = start + limit < len(msgs)
        return {
            "ok": True,
            "messages": [m.as_api(include) for m in page],
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def api_conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        cid, err = self._channel(params)
        if err:
            return err
        limit = int(params.get("limit") or 100)
        top = [m for m in self.messages[cid] if not m.thread_ts or m.thread_ts == m.ts]
        return {"ok": True, "messages": [m.as_api(False) for m in reversed(top)][:limit], "has_more": False}

    def api_conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = str(params.get("users") or "").split(",")
        if len(users) != 1 or users[0] not in self.users:
            return {"ok": False, "error": "user_not_found"}
        cid = "D" + users[0][1:]
        if cid not in self.channels:
            self.add_channel(cid, f"dm-{users[0]}", members=users, is_im=True)
        return {"ok": True, "channel": {"id": cid}}

    def api_users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(params.get("user") or "")
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def api_views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        uid = params.get("user_id")
        if uid not in self.users:
            return {"ok": False, "error": "user_not_found"}
        self.views[uid] = _maybe_json(params.get("view")) or {}
        return {"ok": True, "view": self.views[uid]}

    def api_usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self.usergroups.get(params.get("usergroup") or "")
        return (
            {"ok": True, "users": group} if group is not None else {"ok": False, "error": "no_such_subteam"}
        )


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value


class _Handler(QuietHandler):
    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        standin: SlackStandIn = self.server.standin  # type: ignore[attr-defined]
        path = urlparse(self.path).path
        method = path.rsplit("/", 1)[-1]
        body = self.read_body()
        ctype = self.headers.get("Content-Type", "")
        # GET methods (chat.getPermalink) carry their arguments in the query string.
        params = {k: v[-1] for k, v in parse_qs(urlparse(self.path).query, keep_blank_values=True).items()}
        if "json" in ctype:
            params |= json.loads(body or b"{}")
        else:
            params |= {k: v[-1] for k, v in parse_qs(body.decode("utf-8"), keep_blank_values=True).items()}
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else params.pop("token", None)
        standin.record(
            RecordedRequest(
                "POST", path, dict(self.headers), body, extra={"method": method, "params": params}
            )
        )
        status, payload, headers = standin.handle(method, params, token)
        self.send_json(status, payload, headers)

    do_GET = do_POST
