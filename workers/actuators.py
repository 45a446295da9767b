"""Actuators: the only code that causes side effects. Each re-checks scope and pause, is idempotent,
and writes its audit entry *before* acting (if the audit write fails, nothing happens: fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from bot import audit, controls, ledger, messages
from bot.db import Database, Task
from bot.errors import Denied, TransientError, UserFacingError
from bot.policy import PolicyStore

log = logging.getLogger(__name__)

METADATA_EVENT = "clawback_reply"


class SlackActuator:
    """Posts to Slack on a task's behalf, exactly once per idempotency key."""

    def __init__(self, client: WebClient, db: Database, policy: PolicyStore) -> None:
        self.client = client
        self.db = db
        self.policy = policy

    def guard(self, task: Task, scope: str, *, channel: str | None) -> None:
        """Defense in depth: scope, channel rule and kill switch, checked right before acting."""
        self._require(task, scope, channel=channel)
        if controls.active_pause(self.db, user=task.requester, intent=task.intent):
            raise Denied(messages.PAUSED, reason="paused by an administrator")

    def _require(self, task: Task, scope: str, *, channel: str | None) -> None:
        self.policy.current.require(task.requester, scope, channel=channel if task.surface != "dm" else None)

    @staticmethod
    def _not_paused(task: Task) -> Callable[[Session], None]:
        """The kill switch, checked in the transaction that records the action and its audit entry."""

        def check(session: Session) -> None:
            if controls.is_paused(session, user=task.requester, intent=task.intent):
                raise Denied(messages.PAUSED, reason="paused by an administrator")

        return check

    def post_reply(
        self,
        task: Task,
        *,
        text: str,
        blocks_pages: list[list[dict[str, Any]]],
        scope: str = "chat.reply",
        key: str = "reply",
        to: str | None = None,
        level: str | None = None,
    ) -> list[str]:
        """Post the answer in the task's thread (one message per page); returns the message timestamps.

        ``to``: another conversation to post in instead (the asker's DM), outside any thread; the scope and the
        rule of the channel the question was asked in are checked all the same. ``level``: the earned-autonomy
        level recorded on each action row (None = not governed).
        """
        assert task.channel_id
        self._require(task, scope, channel=task.channel_id)  # the kill switch: in each page's begin_action below
        channel = to or task.channel_id
        thread_ts = None if to else task.thread_ts
        timestamps = []
        for n, blocks in enumerate(blocks_pages):
            idem = f"{task.id}:slack.post:{key}:{n}"
            entry = {
                "actor": "clawback",
                "on_behalf_of": task.requester,
                "action": "slack.post",
                "details": {"key": idem, "chars": len(text)},
            }
            # The audit entry is committed with the pending action, before the post: fail closed.
            action, created = ledger.begin_action(
                self.db,
                task_id=task.id,
                key=idem,
                kind="slack.post",
                scope=scope,
                target=channel,
                detail={"thread_ts": thread_ts, "page": n},
                audit_entry=entry,
                check=self._not_paused(task),
                autonomy_level=level,
            )
            if not created:
                if action.status == "done":
                    timestamps.append(action.result["ts"])
                    continue
                found = self._find_posted(channel, thread_ts, idem)
                if found:
                    ledger.complete_action(self.db, idem, "done", {"ts": found, "recovered": True})
                    timestamps.append(found)
                    continue
                audit.record(self.db, task_id=task.id, scope=scope, target=channel, **entry)
            last = n == len(blocks_pages) - 1
            ts = self._post(channel, thread_ts, text if last else text[:200], blocks, idem, task)
            ledger.complete_action(self.db, idem, "done", {"ts": ts})
            timestamps.append(ts)
        return timestamps

    def _post(
        self,
        channel: str,
        thread_ts: str | None,
        text: str,
        blocks: list[dict[str, Any]],
        idem: str,
        task: Task,
    ) -> str:
        try:
            resp = self.client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                text=text[:3000] or " ",
                blocks=blocks,
                unfurl_links=False,
                unfurl_media=False,
                metadata={"event_type": METADATA_EVENT, "event_payload": {"task_id": task.id, "key": idem}},
            )
        except SlackApiError as exc:
            raise _classify(exc) from exc
        return str(resp["ts"])

    def _find_posted(self, channel: str, thread_ts: str | None, idem: str) -> str | None:
        """Look in the thread for a message we posted under ``idem`` (a crash after posting, before recording)."""
        if not thread_ts:
            return None
        try:
            resp = self.client.conversations_replies(
                channel=channel, ts=thread_ts, include_all_metadata=True, limit=200
            )
        except SlackApiError as exc:
            if exc.response.get("error") == "thread_not_found":
                return None
            raise _classify(exc) from exc
        for m in resp.get("messages", []):
            payload = (m.get("metadata") or {}).get("event_payload") or {}
            if payload.get("key") == idem:
                return str(m["ts"])
        return None

    def tell(self, task: Task, text: str) -> None:
        """A note about a task's fate: in the mention's thread if possible, else privately (DM fallback)."""
        if task.surface == "mention" and task.channel_id and task.thread_ts:
            try:
                self.client.chat_postMessage(
                    channel=task.channel_id,
                    thread_ts=task.thread_ts,
                    text=text,
                    unfurl_links=False,
                    unfurl_media=False,
                )
                return
            except SlackApiError as exc:
                log.info(
                    "task %s: note not postable in the thread (%s); sending a DM",
                    task.id,
                    exc.response.get("error"),
                )
                self._dm(task.requester, text)
                return
        self.notify(task, text)

    def _dm(self, user: str, text: str) -> None:
        dm = self.client.conversations_open(users=user)["channel"]["id"]
        self.client.chat_postMessage(channel=dm, text=text, unfurl_links=False, unfurl_media=False)

    def notify(self, task: Task, text: str) -> None:
        """Tell the requester something privately (ephemeral in a channel, a DM message in DMs).

        Notices are not actions on anyone's behalf, so they go out even while paused.
        """
        channel = task.channel_id
        try:
            if channel and task.surface == "dm":
                self.client.chat_postMessage(
                    channel=channel, text=text, thread_ts=None, unfurl_links=False, unfurl_media=False
                )
            elif channel:
                self.client.chat_postEphemeral(
                    channel=channel, user=task.requester, text=text, thread_ts=task.thread_ts
                )
            else:
                self._dm(task.requester, text)
        except SlackApiError as exc:
            if exc.response.get("error") not in (
                "channel_not_found",
                "not_in_channel",
                "user_not_in_channel",
            ):
                raise _classify(exc) from exc
            self._dm(task.requester, text)

    def open_dm(self, user: str) -> str:
        """The id of the bot's DM with ``user`` (opened if needed)."""
        try:
            return str(self.client.conversations_open(users=user)["channel"]["id"])
        except SlackApiError as exc:
            raise _classify(exc) from exc

    def update_message(
        self, task: Task, *, ts: str, text: str, blocks: list[dict[str, Any]], channel: str | None = None
    ) -> None:
        """Edit a message we posted (feedback acknowledgement); ``channel``: where, if not the task's."""
        assert channel or task.channel_id
        try:
            self.client.chat_update(channel=channel or task.channel_id, ts=ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            raise _classify(exc) from exc


def _classify(exc: SlackApiError) -> Exception:
    """Map Slack errors: rate limits and server trouble retry; the rest fail with a clear reason."""
    error = exc.response.get("error") if exc.response is not None else None
    if error in ("ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"):
        retry_after = None
        if exc.response is not None and exc.response.headers:
            try:
                retry_after = float(exc.response.headers.get("Retry-After", ""))
            except ValueError:
                retry_after = None
        return TransientError(f"Slack said {error}", retry_after=retry_after)
    reasons = {
        "channel_not_found": "I can't find that channel",
        "not_in_channel": "I'm not a member of that channel (invite me with /invite)",
        "is_archived": "the channel is archived",
        "msg_too_long": "the answer was too long for Slack",
    }
    return UserFacingError(
        reasons.get(error or "", f"Slack refused the message ({error})"), reason=f"slack:{error}"
    )
