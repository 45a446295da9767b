"""Earned-autonomy jobs: the promotion offer DM, the answered offer, the demotion notice.

``announce(deps, change)`` is what a worker calls after ``bot.autonomy.judge``: it opens the offer and enqueues
its DM, or enqueues the notice of a demotion (listeners call ``bot.autonomy.announce`` with their own deps).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot import autonomy, messages
from bot.db import AutonomyChange, AutonomyDecision, AutonomyOffer, Task
from bot.mail.blocks import escape
from bot.mail.models import MailItem
from bot.slack.blocks import build_offer_answered_blocks, build_offer_blocks
from workers import runtime
from workers.actuators import _classify

log = logging.getLogger(__name__)
MAX_ITEMS = 10  # corrected items listed in a demotion notice


def announce(deps: runtime.WorkerDeps, change: autonomy.Change | None) -> str:
    """After ``judge``: open an offer and enqueue its DM, or enqueue the demotion notice."""
    return autonomy.announce(deps.db, deps.policy.current, deps.queue, change)


def _dm(deps: runtime.WorkerDeps, user: str, text: str, blocks: list[dict[str, Any]]) -> tuple[str, str]:
    try:
        channel = deps.slack.conversations_open(users=user)["channel"]["id"]
        resp = deps.slack.chat_postMessage(
            channel=channel, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
        )
    except SlackApiError as exc:
        raise _classify(exc) from exc
    return channel, resp["ts"]


def send_offer(offer_id: int) -> str:
    """RQ entry: DM the person their promotion offer."""
    return offer_dm(runtime.current(), offer_id)


def offer_dm(deps: runtime.WorkerDeps, offer_id: int) -> str:
    """DM the offer with its evidence, a Yes button and Not now (once: a sent offer is not sent again)."""
    with deps.db.read() as s:
        offer = s.get(AutonomyOffer, offer_id)
    if offer is None or offer.status != "pending" or offer.slack_ts:
        return "skipped"
    text = autonomy.offer_text(offer)
    channel, ts = _dm(deps, offer.user, text, build_offer_blocks(offer.id, text))
    with deps.db.session() as s:
        row = s.get(AutonomyOffer, offer_id)
        row.slack_channel, row.slack_ts = channel, ts
    return "sent"


def show_offer_answer(offer_id: int, ref: str) -> str:
    """RQ entry: show the answer in the offer's DM, or tell a clicker the offer is not theirs."""
    return offer_answered(runtime.current(), offer_id, ref)


def offer_answered(deps: runtime.WorkerDeps, offer_id: int, ref: str) -> str:
    """``ref`` is the answer (accepted, declined, expired, already …) or ``deny:<user>:<channel>``."""
    with deps.db.read() as s:
        offer = s.get(AutonomyOffer, offer_id)
    if offer is None:
        return "skipped"
    try:
        if ref.startswith("deny:"):
            user, _, channel = ref.removeprefix("deny:").partition(":")
            if channel:
                deps.slack.chat_postEphemeral(channel=channel, user=user, text=messages.AUTONOMY_NOT_YOURS)
            return "told"
        if not offer.slack_channel or not offer.slack_ts:
            return "skipped"
        rule = deps.policy.current.autonomy.rule(offer.action, offer.category or None)
        notes = {
            "accepted": messages.AUTONOMY_ACCEPTED.format(user=offer.user, level=offer.to_level),
            "declined": messages.AUTONOMY_DECLINED.format(
                user=offer.user, n=rule.promote_after if rule else "more"
            ),
            "expired": messages.AUTONOMY_EXPIRED,
        }
        note = notes.get(offer.status)
        if note is None:
            return "skipped"
        text = autonomy.offer_text(offer)
        deps.slack.chat_update(
            channel=offer.slack_channel,
            ts=offer.slack_ts,
            text=f"{text}\n{note}",
            blocks=build_offer_answered_blocks(text, note),
        )
    except SlackApiError as exc:
        raise _classify(exc) from exc
    return "updated"


def tell_demotion(change_id: int) -> str:
    """RQ entry: tell the person why Clawback went back to suggesting."""
    return demotion_dm(runtime.current(), change_id)


def demotion_dm(deps: runtime.WorkerDeps, change_id: int) -> str:
    """DM the demotion: the rule and the corrected items, each linked to where the person saw it (a triage
    item's digest or DM; a channel answer's private copy, or the reply in the thread)."""
    with deps.db.read() as s:
        change = s.get(AutonomyChange, change_id)
        if change is None or change.kind != "demotion":
            return "skipped"
        ids = list((change.evidence or {}).get("decision_ids") or [])[:MAX_ITEMS]
        rows = s.execute(
            select(
                AutonomyDecision.task_id,
                AutonomyDecision.detail,
                MailItem.subject,
                MailItem.slack_channel,
                MailItem.slack_ts,
                Task.payload,
                Task.channel_id,
            )
            .outerjoin(MailItem, MailItem.task_id == AutonomyDecision.task_id)
            .outerjoin(Task, Task.id == AutonomyDecision.task_id)
            .where(AutonomyDecision.id.in_(ids))
            .order_by(AutonomyDecision.id)
        ).all()
    items = [_corrected(deps, change.user, *row) for row in rows]
    text = autonomy.demotion_text(change, items)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]
    _dm(deps, change.user, text, blocks)
    return "told"


def first_words(text: str, words: int = 8, chars: int = 80) -> str:
    """The start of a question: its first ``words`` words, at most ``chars`` characters, "…" when cut."""
    parts = (text or "").split()
    head = " ".join(parts[:words])
    if len(head) > chars:
        head = head[:chars].rstrip()
    return head + ("…" if head != " ".join(parts) else "")


def _corrected(
    deps: runtime.WorkerDeps,
    user: str,
    task_id: str,
    detail: dict[str, Any] | None,
    subject: str | None,
    mail_channel: str | None,
    mail_ts: str | None,
    payload: dict[str, Any] | None,
    task_channel: str | None,
) -> str:
    """One corrected item of a demotion notice. Subjects and questions are untrusted: escaped as the triage
    messages escape them (no links but the permalink, no mentions)."""
    detail = detail or {}
    question = str((payload or {}).get("text") or "") if subject is None else ""
    if subject is not None:
        label, where = f"{escape(subject or 'item', user)[:120]}", (mail_channel, mail_ts)
    elif question:
        label = f"“{escape(first_words(question), user)}”"
        where = (detail.get("dm_channel"), detail.get("dm_ts"))
        if not all(where):
            where = (task_channel, detail.get("reply_ts"))
    else:
        label, where = "item", (None, None)
    link = _permalink(deps, *where)
    shown = f"<{link}|{label}>" if link else label
    return shown if question else f"{shown} (task `{task_id}`)"


def _permalink(deps: runtime.WorkerDeps, channel: str | None, ts: str | None) -> str | None:
    """Slack's permalink for a message, or None (plain text) when there is none or Slack refuses."""
    if not channel or not ts:
        return None
    try:
        link = deps.slack.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
    except SlackApiError as exc:
        log.info("no permalink for %s %s: %s", channel, ts, exc.response.get("error"))
        return None
    return (
        str(link)
        if link and str(link).startswith("https://") and "|" not in link and ">" not in link
        else None
    )
