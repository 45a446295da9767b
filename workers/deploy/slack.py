"""Slack helpers of the deploy jobs: once-per-key thread posts, private notes, and closing a message's buttons."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bot import audit, ledger
from bot.db import Task
from bot.deploy import blocks
from bot.deploy.models import DeployRequest
from workers.actuators import METADATA_EVENT, SlackActuator, _classify
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)


def _actuator(deps: WorkerDeps) -> SlackActuator:
    return SlackActuator(deps.slack, deps.db, deps.policy)


def _post_in_thread(
    deps: WorkerDeps, task: Task, key: str, text: str, blocks_: list[dict] | None = None
) -> str | None:
    """Post a status message in the deploy's thread once per ``key`` (informational: no scope needed)."""
    if not task.channel_id:
        return None
    idem = f"{task.id}:slack.post:{key}"
    action, created = ledger.begin_action(
        deps.db,
        task_id=task.id,
        key=idem,
        kind="slack.post",
        scope=None,
        target=task.channel_id,
        detail={"thread_ts": task.thread_ts},
    )
    if not created and action.status == "done":
        return action.result.get("ts")
    audit.record(
        deps.db,
        actor="clawback",
        on_behalf_of=task.requester,
        action="slack.post",
        decision="info",
        target=task.channel_id,
        task_id=task.id,
        details={"key": idem, "chars": len(text)},
    )
    try:
        resp = deps.slack.chat_postMessage(
            channel=task.channel_id,
            thread_ts=task.thread_ts,
            text=text,
            blocks=blocks_ or blocks.build_status_blocks(text),
            unfurl_links=False,
            unfurl_media=False,
            metadata={"event_type": METADATA_EVENT, "event_payload": {"task_id": task.id, "key": idem}},
        )
    except SlackApiError as exc:
        raise _classify(exc) from exc
    ledger.complete_action(deps.db, idem, "done", {"ts": resp["ts"]})
    return str(resp["ts"])


def _tell_user(
    deps: WorkerDeps, channel: str | None, user: str, text: str, thread_ts: str | None = None
) -> None:
    """An ephemeral note to one person (best effort: the decision is already recorded)."""
    try:
        if channel:
            deps.slack.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
        else:
            dm = deps.slack.conversations_open(users=user)["channel"]["id"]
            deps.slack.chat_postMessage(channel=dm, text=text, unfurl_links=False, unfurl_media=False)
    except SlackApiError:
        log.exception("could not tell %s: %s", user, text[:80])


def _close_message(
    deps: WorkerDeps, channel: str | None, ts: str | None, blocks_now: list[dict], note: str
) -> None:
    """Replace a message's buttons with a note (best effort)."""
    if not channel or not ts:
        return
    try:
        deps.slack.chat_update(
            channel=channel, ts=ts, text=note, blocks=blocks.build_closed_blocks(blocks_now, note)
        )
    except SlackApiError:
        log.exception("could not update message %s in %s", ts, channel)


def _message_blocks(deps: WorkerDeps, channel: str, ts: str) -> list[dict]:
    """The current blocks of one of our top-level messages (to keep its content when closing it)."""
    try:
        resp = deps.slack.conversations_replies(channel=channel, ts=ts, limit=1)
        for m in resp.get("messages", []):
            if m.get("ts") == ts:
                return list(m.get("blocks") or [])
    except SlackApiError:
        log.warning("could not read message %s in %s", ts, channel)
    return []


def _close_approval(deps: WorkerDeps, request: DeployRequest, note: str) -> None:
    """Replace the approval message's buttons with ``note``."""
    text = (request.detail or {}).get("approval_text") or ""
    _close_message(deps, request.channel_id, request.approval_ts, blocks.build_status_blocks(text), note)


def _announce(deps: WorkerDeps, request: DeployRequest, key: str, text: str) -> None:
    """Post in the request's thread (under the request task)."""
    request_task = ledger.get_task(deps.db, request.task_id)
    if request_task is not None:
        _post_in_thread(deps, request_task, key, text)
