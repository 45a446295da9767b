"""Interactivity on triage messages: "Right", "Wrong category", "Send draft", "Confirm send", "Discard draft".

Only the mailbox owner's clicks count (the verified Slack user id, never text). Feedback is recorded as an
explicit outcome here (one SQL transaction). Sending takes two clicks, each a task with the ``mail.send``
scope: "Send draft" shows the draft's exact text and recipients (``mail_preview``); only "Confirm send" under
that preview sends, bound to the fingerprint of what was shown (``mail_send``). Relabelling
the message in Exchange after "Wrong category" is a task with the ``mail.categorize`` scope (only when the owner
holds it); deleting the draft after "Discard draft" a ``mail_discard`` task with ``mail.draft``; all run by a
worker.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App
from sqlalchemy import select

from bot import audit, autonomy
from bot.db import Outcome, Task
from bot.ingress import submit
from bot.ledger import NewTask
from bot.mail import autonomy as mail_autonomy
from bot.mail.blocks import (
    MAIL_APPLY,
    MAIL_CONFIRM_SEND,
    MAIL_DISCARD_DRAFT,
    MAIL_DISMISS,
    MAIL_RIGHT,
    MAIL_SEND_DRAFT,
    MAIL_UNDO_MOVE,
    MAIL_WRONG,
)
from bot.mail.config import CATEGORIES, CATEGORY_LABELS
from bot.mail.models import MailItem
from bot.measure import outcomes
from bot.queue import INTERACTIVE
from handlers.context import HandlerContext

log = logging.getLogger(__name__)

REFRESH = "workers.mail.refresh_mail_message"  # RQ job by name (listeners never import workers)
_OUTCOME_OF = {"right": "label_kept", "wrong": "label_corrected", "discard": "draft_discarded"}
_FINGERPRINT = re.compile(r"[0-9a-f]{32}")


def _where(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(channel, message ts) of the clicked message."""
    container = body.get("container") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    return channel, container.get("message_ts") or (body.get("message") or {}).get("ts")


def _refresh(ctx: HandlerContext, channel: str | None, ts: str | None) -> None:
    if not channel or not ts:
        return
    try:
        ctx.ingress.queue.queues[INTERACTIVE].enqueue(
            REFRESH, channel, ts, job_timeout=60, result_ttl=60, failure_ttl=86400
        )
    except Exception:  # the outcome is recorded; the visible update is best effort
        log.warning("mail feedback recorded but the message refresh was not enqueued (%s %s)", channel, ts)


def record_mail_feedback(
    ctx: HandlerContext, kind: str, task_id: Any, user: str, category: str | None = None
) -> str:
    """Record "right", "wrong:<category>" or "discard" from the owner; returns what happened."""
    if not isinstance(task_id, str) or len(task_id) > 32:
        return "malformed"
    if kind == "wrong" and category not in CATEGORIES:
        return "malformed"
    with ctx.ingress.db.session() as s:
        task = s.get(Task, task_id)
        item = s.execute(select(MailItem).where(MailItem.task_id == task_id)).scalar_one_or_none()
        if task is None or item is None or task.intent != "triage":
            return "unknown task"
        allowed = outcomes.click_refusal(task, user, _OUTCOME_OF[kind]) is None
        outcome, detail = None, {}
        if allowed and kind == "right" and item.feedback is None:
            outcome, item.feedback = "label_kept", "right"
            detail = {"category": item.category}
        elif allowed and kind == "wrong" and item.feedback is None:
            outcome, item.feedback = "label_corrected", f"wrong:{category}"
            item.corrected = 1  # recorded explicitly: later syncs must not count it again
            detail = {"from": item.category, "to": category, "label": CATEGORY_LABELS.get(category or "")}
        elif allowed and kind == "discard" and item.draft_status == "open":
            outcome, item.draft_status = "draft_discarded", "discarded"
            detail = {"draft_id": item.draft_id}
        if outcome:
            s.add(Outcome(task_id=task_id, kind=outcome, source="explicit", actor=user, detail=detail))
        audit.append(
            s,
            actor=user,
            action=f"outcome.mail.{kind}",
            task_id=task_id,
            decision="allow" if allowed else "deny",
            target=item.mailbox,
            details={"outcome": outcome, "reason": None if allowed else "not the mailbox owner"},
        )
    if not allowed:
        return "not owner"
    return outcome or "already recorded"


def request_send(
    ctx: HandlerContext,
    task_id: Any,
    user: str,
    channel: str | None,
    *,
    confirm: str | None = None,
    click: str = "",
) -> str:
    """ "Send draft" (no ``confirm``): create the ``mail_preview`` task that shows the exact draft; "Confirm
    send" (``confirm`` is the fingerprint shown): create the ``mail_send`` task. Scopes are checked at ingress
    and in the worker; a click is handled once (Slack's retries of it carry the same trigger id)."""
    if not isinstance(task_id, str) or len(task_id) > 32:
        return "malformed"
    if confirm is not None and not _FINGERPRINT.fullmatch(confirm):
        return "malformed"
    with ctx.ingress.db.session() as s:
        task = s.get(Task, task_id)
        owner = task.requester if task is not None and task.intent == "triage" else None
        if owner is not None and user != owner:
            audit.append(
                s,
                actor=user,
                action="mail.send.request",
                task_id=task_id,
                decision="deny",
                scope="mail.send",
                details={"reason": "not the mailbox owner"},
            )
    if owner is None:
        return "unknown task"
    if user != owner:
        return "not owner"
    if confirm is None:
        key = f"mail-preview:{task_id}:{click[:64]}"
        return _follow_up(ctx, key, "mail_preview", "mail.send", task_id, user, channel)
    key = f"mail-send:{task_id}:{confirm}"
    return _follow_up(ctx, key, "mail_send", "mail.send", task_id, user, channel, confirm=confirm)


def request_relabel(ctx: HandlerContext, task_id: str, user: str, category: str, channel: str | None) -> str:
    """After "Wrong category": relabel the message in Exchange, if the owner holds ``mail.categorize``."""
    if not ctx.ingress.policy.current.has_scope(user, "mail.categorize"):
        audit.record(
            ctx.ingress.db,
            actor=user,
            action="mail.categorize",
            decision="deny",
            task_id=task_id,
            scope="mail.categorize",
            details={
                "reason": "missing scope mail.categorize",
                "effect": "the label in Exchange is unchanged",
            },
        )
        return "no scope"
    return _follow_up(
        ctx, f"mail-relabel:{task_id}", "mail_relabel", "mail.categorize", task_id, user, channel,
        category=category,
    )  # fmt: skip


def _follow_up(
    ctx: HandlerContext,
    key: str,
    intent: str,
    scope: str,
    task_id: str,
    user: str,
    channel: str | None,
    **payload: Any,
) -> str:
    """Submit the task an owner's click on triage task ``task_id`` creates (scope checked at ingress and again
    by the worker); returns denied, queued or duplicate (the same click again)."""
    sub = submit(
        ctx.ingress,
        NewTask(
            idempotency_key=key,
            requester=user,
            surface="dm",
            intent=intent,
            trigger="human",
            channel_id=channel,
            parent_id=task_id,
            payload={"triage_task": task_id, **payload},
        ),
        scope=scope,
        queue=INTERACTIVE,
    )
    return "denied" if sub.denied else ("queued" if sub.created else "duplicate")


def request_discard(ctx: HandlerContext, task_id: str, user: str, channel: str | None) -> str:
    """After "Discard draft": a ``mail_discard`` task deletes the draft Clawback saved (scope ``mail.draft``)."""
    return _follow_up(ctx, f"mail-discard:{task_id}", "mail_discard", "mail.draft", task_id, user, channel)


# -- earned autonomy: verdicts from the owner's clicks, Apply, Dismiss, Undo move -------------------------------

_APPLY_ACTIONS = {v: k for k, v in MAIL_APPLY.items()}
_JUDGED_BY = {  # feedback recorded above → (actions it judges, levels, verdict)
    "label_kept": (("mail.categorize", "mail.move"), ("auto",), "accepted"),
    "label_corrected": (("mail.categorize", "mail.move"), ("auto", "suggest"), "rejected"),
    "draft_discarded": (("mail.draft",), ("auto",), "rejected"),
}


def _announce(ctx: HandlerContext, changes: list[autonomy.Change]) -> None:
    for change in changes:
        autonomy.announce(ctx.ingress.db, ctx.ingress.policy.current, ctx.ingress.queue, change)


def judge_feedback(ctx: HandlerContext, task_id: str, outcome: str, user: str) -> int:
    """After recorded feedback: judge the email's pending decisions it speaks for; returns how many."""
    actions, levels, verdict = _JUDGED_BY[outcome]
    db = ctx.ingress.db
    decisions = [d for d in mail_autonomy.pending(db, task_id) if d.action in actions and d.level in levels]
    if not decisions:
        return 0
    with db.read() as s:
        oid = s.execute(
            select(Outcome.id)
            .where(Outcome.task_id == task_id, Outcome.kind == outcome)
            .order_by(Outcome.id.desc())
            .limit(1)
        ).scalar_one_or_none()
    policy = ctx.ingress.policy.current
    _announce(
        ctx, mail_autonomy.settle(db, policy, decisions, verdict, outcome_id=oid, actor=user, why=outcome)
    )
    return len(decisions)


def _owner_click(ctx: HandlerContext, task_id: Any, user: str, kind: str, action: str) -> Task | str:
    """The triage task if ``user`` may record ``kind`` on it; else why not (a refusal is audited)."""
    if not isinstance(task_id, str) or len(task_id) > 32:
        return "malformed"
    with ctx.ingress.db.session() as s:
        task = s.get(Task, task_id)
        if task is None or task.intent != "triage":
            return "unknown task"
        refusal = outcomes.click_refusal(task, user, kind)
        if refusal is not None:
            audit.append(
                s, actor=user, action=action, task_id=task_id, decision="deny", details={"reason": refusal}
            )
            return "not owner"
    return task


def dismiss(ctx: HandlerContext, task_id: Any, user: str, channel: str | None, ts: str | None) -> str:
    """Dismiss: every open proposal on the email is rejected; nothing is done."""
    task = _owner_click(ctx, task_id, user, "suggestion_dismissed", "mail.dismiss")
    if isinstance(task, str):
        return task
    db = ctx.ingress.db
    decisions = mail_autonomy.pending(db, task.id, level="suggest")
    if not decisions:
        return "already recorded"
    with db.session() as s:
        row = outcomes.record_click(
            s, task, "suggestion_dismissed", user, {"actions": [d.action for d in decisions]}
        )
        item = s.execute(select(MailItem).where(MailItem.task_id == task.id)).scalar_one_or_none()
        if item is not None and item.draft_status == "proposed":
            item.draft_status = "discarded"
        audit.append(s, actor=user, action="mail.dismiss", task_id=task.id, details={"outcome_id": row.id})
        oid = row.id
    _announce(ctx, mail_autonomy.settle(db, ctx.ingress.policy.current, decisions, "rejected", outcome_id=oid,
                                        actor=user, why="dismissed"))  # fmt: skip
    _refresh(ctx, channel, ts)
    return "dismissed"


def request_apply(ctx: HandlerContext, task_id: Any, action: str, user: str, channel: str | None) -> str:
    """Apply: a ``mail_apply`` task performs exactly the proposed action (scopes checked at ingress and again by
    the worker's actuator); a double click is the same task."""
    if not isinstance(task_id, str) or len(task_id) > 32:
        return "malformed"
    with ctx.ingress.db.session() as s:
        task = s.get(Task, task_id)
        owner = task.requester if task is not None and task.intent == "triage" else None
        if owner is not None and user != owner:
            audit.append(
                s, actor=user, action=f"{action}.apply", task_id=task_id, decision="deny", scope=action,
                details={"reason": "not the mailbox owner"},
            )  # fmt: skip
    if owner is None:
        return "unknown task"
    if user != owner:
        return "not owner"
    if not mail_autonomy.pending(ctx.ingress.db, task_id, action, "suggest"):
        return "nothing to apply"
    return _follow_up(
        ctx, f"mail-apply:{task_id}:{action}", mail_autonomy.APPLY_INTENT, action, task_id, user, channel,
        action=action,
    )  # fmt: skip


def request_undo(ctx: HandlerContext, task_id: Any, user: str, channel: str | None) -> str:
    """Undo move: the automatic move is rejected at once and a ``mail_undo`` task moves the message back."""
    task = _owner_click(ctx, task_id, user, "move_undone", "mail.move.undo")
    if isinstance(task, str):
        return task
    db = ctx.ingress.db
    decisions = mail_autonomy.pending(db, task.id, "mail.move", "auto")
    if not decisions:
        return "already recorded"
    with db.session() as s:
        oid = outcomes.record_click(s, task, "move_undone", user, {"decision_id": decisions[0].id}).id
    _announce(ctx, mail_autonomy.settle(db, ctx.ingress.policy.current, decisions, "rejected", outcome_id=oid,
                                        actor=user, why="move undone"))  # fmt: skip
    result = _follow_up(
        ctx, f"mail-undo:{task.id}", mail_autonomy.UNDO_INTENT, "mail.move", task.id, user, channel
    )
    return "denied" if result == "denied" else "queued"


def register(app: App, ctx: HandlerContext) -> None:
    """Attach the triage buttons' listeners."""

    def on_right(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        if record_mail_feedback(ctx, "right", action.get("value"), body["user"]["id"]) == "label_kept":
            judge_feedback(ctx, action["value"], "label_kept", body["user"]["id"])
            _refresh(ctx, *_where(body))
        ack()

    def on_wrong(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        value = str((action.get("selected_option") or {}).get("value") or "")
        task_id, _, category = value.partition(":")
        user = body["user"]["id"]
        if record_mail_feedback(ctx, "wrong", task_id, user, category) == "label_corrected":
            judge_feedback(ctx, task_id, "label_corrected", user)
            request_relabel(ctx, task_id, user, category, _where(body)[0])
            _refresh(ctx, *_where(body))
        ack()

    def on_discard(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        if record_mail_feedback(ctx, "discard", action.get("value"), body["user"]["id"]) == "draft_discarded":
            judge_feedback(ctx, action["value"], "draft_discarded", body["user"]["id"])
            request_discard(ctx, action["value"], body["user"]["id"], _where(body)[0])
            _refresh(ctx, *_where(body))
        ack()

    def on_send(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        click = str(body.get("trigger_id") or action.get("action_ts") or "")
        request_send(ctx, action.get("value"), body["user"]["id"], _where(body)[0], click=click)
        ack()

    def on_confirm(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        task_id, _, fingerprint = str(action.get("value") or "").partition(":")
        request_send(ctx, task_id, body["user"]["id"], _where(body)[0], confirm=fingerprint)
        ack()

    app.action(MAIL_RIGHT)(on_right)
    app.action(MAIL_WRONG)(on_wrong)
    app.action(MAIL_DISCARD_DRAFT)(on_discard)
    app.action(MAIL_SEND_DRAFT)(on_send)
    app.action(MAIL_CONFIRM_SEND)(on_confirm)

    def on_apply(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        what = _APPLY_ACTIONS[action["action_id"]]
        request_apply(ctx, action.get("value"), what, body["user"]["id"], _where(body)[0])
        ack()

    def on_dismiss(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        dismiss(ctx, action.get("value"), body["user"]["id"], *_where(body))
        ack()

    def on_undo(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        request_undo(ctx, action.get("value"), body["user"]["id"], _where(body)[0])
        ack()

    for action_id in MAIL_APPLY.values():
        app.action(action_id)(on_apply)
    app.action(MAIL_DISMISS)(on_dismiss)
    app.action(MAIL_UNDO_MOVE)(on_undo)
