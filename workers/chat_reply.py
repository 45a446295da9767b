"""``chat.reply.channel``: an answer to a question asked in a channel thread, delivered at the asker's level.

DMs are not governed, and without an ``[autonomy]`` section in the policy nothing here changes what is posted.

- ``auto``: posted in the thread at once, as always. Resolved = accepted, Not helpful = rejected.
- ``suggest``: sent to the asker privately, in a DM with **Post to thread** and Dismiss. A DM rather than an
  ephemeral message: an ephemeral message cannot be updated once the person clicks and vanishes when Slack
  reloads, a DM stays with its outcome written on it. Post to thread = accepted (the exact text shown is posted
  through the SlackActuator, every check made again at the click), Dismiss = rejected.
- ``shadow``: the asker gets the same private answer with the same buttons (a person asked a question: not
  answering at all would be absurd), but nothing counts: the decision is recorded and its click kept as the
  outcome, judged ``none``. Posting from a private copy is the person's own act, so it is no evidence that Clawback
  could have posted on its own; shadow earns no promotion, an admin moves a person on (``clawback autonomy set``).

No click within the outcome window: ``none``, from the outcome sweep (``judge_unanswered``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import select

from bot import audit, autonomy, ledger, messages
from bot.db import AutonomyDecision, Database, Outcome, Task
from bot.errors import Denied, UserFacingError
from bot.measure import outcomes
from bot.policy import Policy
from bot.slack.blocks import build_feedback_done_blocks, build_suggested_answer_pages, split_answer_messages
from workers import autonomy as autonomy_jobs
from workers import runtime
from workers.actuators import SlackActuator

log = logging.getLogger(__name__)

ACTION = "chat.reply.channel"
POSTED, DISMISSED = "answer_posted", "answer_dismissed"
VERDICT_OF = {"resolved": "accepted", "not_helpful": "rejected", POSTED: "accepted", DISMISSED: "rejected"}


def level_of(deps: runtime.WorkerDeps, task: Task) -> str | None:
    """The level the answer to ``task`` is delivered at; None when not governed (a DM, or no [autonomy])."""
    policy = deps.policy.current
    if task.surface != "mention" or "autonomy" not in policy.raw:
        return None
    return autonomy.level_for(deps.db, policy, task.requester, ACTION, intent=task.intent)


def decision_of(db: Database, task_id: str) -> AutonomyDecision | None:
    """The task's ``chat.reply.channel`` decision, if one was recorded."""
    with db.read() as s:
        return (
            s.execute(
                select(AutonomyDecision)
                .where(AutonomyDecision.task_id == task_id, AutonomyDecision.action == ACTION)
                .order_by(AutonomyDecision.id)
                .limit(1)
            )
            .scalars()
            .first()
        )


def _decide(deps: runtime.WorkerDeps, task: Task, level: str, detail: dict[str, Any]) -> AutonomyDecision:
    """Record the task's decision once (a retried job finds the one it recorded)."""
    found = decision_of(deps.db, task.id)
    if found is None:
        autonomy.record_decision(
            deps.db,
            task_id=task.id,
            user=task.requester,
            action=ACTION,
            category=None,
            level=level,
            detail=detail,
        )
        found = decision_of(deps.db, task.id)
    assert found is not None
    return found


def deliver(deps: runtime.WorkerDeps, task: Task, *, text: str, footer: str) -> dict[str, Any]:
    """Post the answer in the thread, or send it to the asker privately, by level; returns result fields."""
    level = level_of(deps, task)
    actuator = SlackActuator(deps.slack, deps.db, deps.policy)
    if level is None or level == "auto":
        pages = split_answer_messages(text, footer, task.id)
        timestamps = actuator.post_reply(task, text=text, blocks_pages=pages, level=level)
        if level is None:
            return {"reply_ts": timestamps[-1], "messages": len(timestamps)}
        _decide(deps, task, level, {"reply_ts": timestamps[-1]})
        return {"reply_ts": timestamps[-1], "messages": len(timestamps), "autonomy_level": level}
    d = _decide(deps, task, level, {"text": text, "footer": footer})
    dm = actuator.open_dm(task.requester)
    note = messages.ANSWER_SUGGESTED.format(channel=task.channel_id)
    pages = build_suggested_answer_pages(text, footer, d.id, note)
    timestamps = actuator.post_reply(task, text=text, blocks_pages=pages, key="suggested", to=dm, level=level)
    with deps.db.session() as s:
        row = s.get(AutonomyDecision, d.id)
        row.detail = {**(row.detail or {}), "dm_channel": dm, "dm_ts": timestamps[-1]}
    return {"suggested_ts": timestamps[-1], "messages": len(timestamps), "autonomy_level": level}


# -- the asker's clicks on the private answer -----------------------------------------------------------------


def on_click(decision_id: int, choice: str, user: str, channel: str = "") -> str:
    """RQ entry: Post to thread (``post``), Dismiss (``dismiss``), or tell ``user`` it is not theirs (``deny``)."""
    deps = runtime.current()
    if choice == "post":
        return post_suggested(deps, decision_id, user)
    if choice == "dismiss":
        return dismiss_suggested(deps, decision_id, user)
    if channel:
        deps.slack.chat_postEphemeral(channel=channel, user=user, text=messages.ANSWER_NOT_YOURS)
    return "told"


def _load(deps: runtime.WorkerDeps, decision_id: int, user: str) -> tuple[AutonomyDecision, Task] | None:
    """The decision and its task when ``user`` is the asker it was made for (the listener checked it too)."""
    with deps.db.read() as s:
        d = s.get(AutonomyDecision, decision_id)
        task = s.get(Task, d.task_id) if d is not None else None
    if d is None or task is None or d.action != ACTION or user != d.user or user != task.requester:
        return None
    return d, task


def _clicked(db: Database, task_id: str, kind: str) -> Outcome | None:
    with db.read() as s:
        return (
            s.execute(select(Outcome).where(Outcome.task_id == task_id, Outcome.kind == kind).limit(1))
            .scalars()
            .first()
        )


def _record(deps: runtime.WorkerDeps, d: AutonomyDecision, task: Task, kind: str, user: str) -> int:
    """The click as an explicit outcome (once), judged at once: the verdict, or ``none`` at shadow."""
    with deps.db.session() as s:
        row = outcomes.record_click(s, s.get(Task, task.id), kind, user, {"decision_id": d.id})
        assert row is not None  # the asker, on an answer: _load checked both
        outcome_id = row.id
    verdict = "none" if d.level == "shadow" else VERDICT_OF[kind]
    change = autonomy.judge(deps.db, deps.policy.current, d.id, verdict, outcome_id=outcome_id, actor=user)
    autonomy_jobs.announce(deps, change)
    return outcome_id


def _show(deps: runtime.WorkerDeps, d: AutonomyDecision, task: Task, note: str) -> None:
    """Write the outcome on the private answer in place of its buttons."""
    detail = d.detail or {}
    if not detail.get("dm_channel") or not detail.get("dm_ts"):
        return
    last = build_suggested_answer_pages(
        detail.get("text", ""),
        detail.get("footer", ""),
        d.id,
        messages.ANSWER_SUGGESTED.format(channel=task.channel_id),
    )[-1]
    SlackActuator(deps.slack, deps.db, deps.policy).update_message(
        task,
        channel=detail["dm_channel"],
        ts=detail["dm_ts"],
        text=note,
        blocks=build_feedback_done_blocks(last, note),
    )


def post_suggested(deps: runtime.WorkerDeps, decision_id: int, user: str) -> str:
    """Post the exact text the asker was shown into the original thread, checking scope, channel rule and the
    kill switch now; idempotent (a second click posts nothing). Returns posted, already posted, dismissed,
    denied, refused or skipped."""
    loaded = _load(deps, decision_id, user)
    if loaded is None:
        return "skipped"
    d, task = loaded
    if _clicked(deps.db, task.id, POSTED) is not None:
        return "already posted"
    if _clicked(deps.db, task.id, DISMISSED) is not None:
        SlackActuator(deps.slack, deps.db, deps.policy).notify(task, messages.ANSWER_ALREADY_DISMISSED)
        return "dismissed"
    detail = d.detail or {}
    text, footer = detail.get("text", ""), detail.get("footer", "")
    actuator = SlackActuator(deps.slack, deps.db, deps.policy)
    try:
        timestamps = actuator.post_reply(
            task, text=text, blocks_pages=split_answer_messages(text, footer, task.id), level=d.level
        )
    except (Denied, UserFacingError) as exc:
        audit.record(
            deps.db,
            actor="clawback",
            on_behalf_of=user,
            action="answer.post_to_thread",
            decision="deny",
            task_id=task.id,
            scope="chat.reply",
            target=task.channel_id,
            details={"reason": exc.reason, "decision_id": d.id},
        )
        actuator.notify(task, messages.task_denied(task.id, exc.user_message))
        return "denied" if isinstance(exc, Denied) else "refused"
    # Resolved / Not helpful under the posted answer update that message.
    ledger.update_result(deps.db, task.id, reply_ts=timestamps[-1])
    _record(deps, d, task, POSTED, user)
    _show(deps, d, task, messages.ANSWER_POSTED.format(user=user))
    return "posted"


def dismiss_suggested(deps: runtime.WorkerDeps, decision_id: int, user: str) -> str:
    """Dismiss the private answer: nothing is posted; rejected (none at shadow). Returns dismissed, already
    dismissed, already posted or skipped."""
    loaded = _load(deps, decision_id, user)
    if loaded is None:
        return "skipped"
    d, task = loaded
    if _clicked(deps.db, task.id, POSTED) is not None:
        return "already posted"
    if _clicked(deps.db, task.id, DISMISSED) is not None:
        return "already dismissed"
    _record(deps, d, task, DISMISSED, user)
    _show(deps, d, task, messages.ANSWER_DISMISSED.format(user=user))
    return "dismissed"


# -- verdicts from the feedback buttons and the sweep ---------------------------------------------------------


def judge_feedback(deps: runtime.WorkerDeps, task: Task, outcome: Outcome) -> str:
    """Resolved / Not helpful on an answer posted at ``auto`` judge its decision (accepted / rejected).

    Below auto the decision was judged by the asker's Post to thread or Dismiss; ratings there change nothing.
    """
    verdict = VERDICT_OF.get(outcome.kind)
    if verdict is None or outcome.kind not in ("resolved", "not_helpful"):
        return "nothing"
    d = decision_of(deps.db, task.id)
    if d is None or d.level != "auto":
        return "nothing"
    change = autonomy.judge(
        deps.db, deps.policy.current, d.id, verdict, outcome_id=outcome.id, actor=outcome.actor or "clawback"
    )
    return autonomy_jobs.announce(deps, change)


def judge_unanswered(
    db: Database,
    policy: Policy,
    *,
    batch: int = 1000,
    announce: Callable[[autonomy.Change], Any] | None = None,
) -> int:
    """Catch up on unjudged channel-answer decisions whose task has an outcome: the click that judges it at its
    level (a click whose job was lost), else ``none`` once the sweep marked the task ``none`` (no click within the
    outcome window). Each offer or demotion this causes goes to ``announce`` (the sweep's way to tell the
    person). Returns how many decisions were judged."""
    with db.read() as s:
        rows = s.execute(
            select(AutonomyDecision.id, AutonomyDecision.level, Outcome.id, Outcome.kind, Outcome.actor)
            .join(Outcome, Outcome.task_id == AutonomyDecision.task_id)
            .where(
                AutonomyDecision.action == ACTION,
                AutonomyDecision.verdict.is_(None),
                Outcome.kind.in_([*VERDICT_OF, outcomes.NONE]),
            )
            .order_by(AutonomyDecision.id, Outcome.id)
            .limit(batch)
        ).all()
    clicks: dict[int, tuple[str, int, str]] = {}
    timeouts: dict[int, tuple[str, int, str]] = {}
    for decision_id, level, outcome_id, kind, actor in rows:
        judging = ("resolved", "not_helpful") if level == "auto" else (POSTED, DISMISSED)
        if kind in judging and level != "shadow":  # the first click that judges at this level
            clicks.setdefault(decision_id, (VERDICT_OF[kind], outcome_id, actor or "clawback"))
        elif kind in judging or kind == outcomes.NONE:
            timeouts.setdefault(decision_id, ("none", outcome_id, "clawback"))
    found = {**timeouts, **clicks}
    for decision_id, (verdict, outcome_id, actor) in found.items():
        change = autonomy.judge(db, policy, decision_id, verdict, outcome_id=outcome_id, actor=actor)
        if change is not None and announce is not None:
            announce(change)
    return len(found)
