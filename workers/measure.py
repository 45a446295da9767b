"""Measurement jobs: the person's own week on the App Home tab, the outcome sweep, the facts refresh.

Builders here are pure (numbers in, Block Kit or text out); the jobs load, build and publish.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import or_, select

from bot import autonomy
from bot.db import Action, Database, Task, utcnow
from bot.measure import facts, outcomes
from bot.measure.report import own_usage
from bot.measure.usage import _money
from bot.policy import Policy
from workers import chat_reply, runtime
from workers.actuators import _classify

log = logging.getLogger(__name__)

HOME_DAYS = 7
RECEIPTS_MAX = 15
NO_USAGE_SCOPE = "Your role does not include seeing usage (scope `usage.self`). Ask an admin if you need it."
HOME_TITLE = "Your week with Clawback"
AUTONOMY_TITLE = "What Clawback may do for you"
AUTONOMY_MAX = 20  # lines of the autonomy section (the view holds 100 blocks)
LEVEL_WORDS = {
    "shadow": "watches and learns (shows nothing)",
    "suggest": "suggests, you apply",
    "auto": "acts, you can correct or undo",
}
HOME_PRIVACY = (
    "Only you see these numbers. Team reports are aggregates over at least {k} people; "
    "nobody is ranked by tokens."
)


def build_home_view(
    numbers: dict[str, Any],
    receipts: list[dict[str, Any]],
    *,
    k: int,
    standings: list[autonomy.Standing] | None = None,
) -> dict[str, Any]:
    """The Home tab view: own week, outcome mix, cost per accepted outcome, receipts of actions taken, and
    (with an ``[autonomy]`` policy) what Clawback may do for the person."""
    t = numbers["totals"]

    def section(text: str) -> dict[str, Any]:
        return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}

    mix = ", ".join(f"{name} {n}" for name, n in numbers["outcome_mix"].items()) or "none yet"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": HOME_TITLE}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Tasks*\n{t['tasks']:,}"},
                {"type": "mrkdwn", "text": f"*Tokens*\n{t['total_tokens']:,}"},
                {"type": "mrkdwn", "text": f"*Accepted outcomes*\n{t['accepted_outcomes']:,}"},
                {
                    "type": "mrkdwn",
                    "text": f"*Cost per accepted outcome*\n{_money(t['cost_per_accepted_outcome'])}",
                },
            ],
        },
        section(f"*Outcomes:* {mix}"),
    ]
    for r in numbers["by_intent"]:
        blocks.append(
            section(
                f"*{r['intent']}*: {r['tasks']:,} tasks · {r['total_tokens']:,} tokens · "
                f"{r['accepted_outcomes']:,} accepted · {_money(r['cost_per_accepted_outcome'])} each"
            )
        )
    if standings:
        blocks.append({"type": "divider"})
        blocks.append(section(f"*{AUTONOMY_TITLE}*"))
        for r in standings[:AUTONOMY_MAX]:
            what = f"{r.action} ({r.category.replace('_', ' ')})" if r.category else r.action
            blocks.append(
                section(
                    f"*{what}*: {LEVEL_WORDS.get(r.level, r.level)} · {r.accepted}/{r.judged} accepted "
                    f"at this level\n_{r.next_step}_"
                )
            )
    blocks.append({"type": "divider"})
    blocks.append(section("*What Clawback did on your behalf*"))
    if not receipts:
        blocks.append(section("Nothing this week."))
    for r in receipts:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"{r['at']:%a %H:%M} UTC · {r['kind']} → {r['target'] or '—'} · "
                        f"{r['status']} · task `{r['task_id']}`",
                    }
                ],
            }
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": HOME_PRIVACY.format(k=k)}]})
    return {"type": "home", "blocks": blocks[:100]}


def receipts_for(db: Database, user: str, since: datetime, limit: int = RECEIPTS_MAX) -> list[dict[str, Any]]:
    """The latest actions taken for ``user``'s tasks (requested by or on behalf of them), newest first."""
    with db.session() as s:
        rows = s.execute(
            select(Action.kind, Action.target, Action.status, Action.created_at, Action.task_id)
            .join(Task, Task.id == Action.task_id)
            .where(or_(Task.requester == user, Task.on_behalf_of == user), Action.created_at >= since)
            .order_by(Action.created_at.desc(), Action.id.desc())
            .limit(limit)
        ).all()
    return [{"kind": k, "target": tg, "status": st, "at": at, "task_id": tid} for k, tg, st, at, tid in rows]


def publish_home(user: str) -> str:
    """RQ entry: publish the person's own week on their App Home tab."""
    return show_home(runtime.current(), user)


def show_home(deps: runtime.WorkerDeps, user: str) -> str:
    """Build and publish the Home tab for ``user`` (only their own numbers)."""
    policy = deps.policy.current
    if not policy.has_scope(user, "usage.self"):
        view = {
            "type": "home",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": NO_USAGE_SCOPE}}],
        }
        result = "denied"
    else:
        since = utcnow() - timedelta(days=HOME_DAYS)
        numbers = own_usage(deps.db, user, since=since, settings=deps.settings)
        rows = autonomy.standings(deps.db, policy, user) if policy.autonomy.configured else None
        view = build_home_view(
            numbers, receipts_for(deps.db, user, since), k=policy.k_anonymity, standings=rows
        )
        result = "published"
    try:
        deps.slack.views_publish(user_id=user, view=view)
    except SlackApiError as exc:
        raise _classify(exc) from exc
    return result


def sweep_outcomes() -> int:
    """RQ entry: judge earned-autonomy mail decisions past the outcome window, record ``none`` for tasks past it,
    then refresh the facts."""
    from workers.mail import verdicts

    deps = runtime.current()
    verdicts.sweep(deps)
    return sweep(deps.db, deps.settings, policy=deps.policy.current, queue=deps.queue)


def sweep(
    db: Database,
    settings: Any,
    *,
    now: datetime | None = None,
    policy: Policy | None = None,
    queue: Any = None,
) -> int:
    """The outcome sweep plus a facts refresh; returns how many tasks got ``none``.

    With ``policy``, earned autonomy's channel-answer decisions are caught up too (``none`` when nobody reacted,
    the click when its job was lost); with ``queue`` (a ``bot.queue.TaskQueue``: the workers' housekeeping has
    one) each offer or demotion this causes is announced, so the person gets its DM.
    """
    window = timedelta(hours=settings.clawback_outcome_window_hours)
    n = outcomes.sweep_none(db, window=window, now=now)
    if policy is not None:
        tell = None if queue is None else (lambda change: autonomy.announce(db, policy, queue, change))
        judged = chat_reply.judge_unanswered(db, policy, announce=tell)
        if judged:
            log.info("outcome sweep: %d channel answer decision(s) judged none", judged)
    facts.refresh(db, outcomes.config_from_settings(settings))
    log.info("outcome sweep: %d task(s) marked none after %s", n, window)
    return n
