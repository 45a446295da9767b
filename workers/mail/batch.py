"""Batching and its leases: which queued short emails of a mailbox share the leader's classification call,
and how a claimed email's own job waits for, or takes back, its decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from bot import audit, ledger
from bot.db import Task, utcnow
from bot.mail import messages as mail_messages
from bot.mail import text as mail_text
from bot.mail.base import Mailbox
from bot.mail.config import MailboxConfig
from bot.mail.models import MailItem
from workers.mail.decide import Entry, Verdict, email_cost
from workers.mail.items import fetch, load_item, prepare
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchLimits:
    """When several queued emails of one mailbox share one model call (``deps.extras["triage_batch"]``).

    Only emails whose cleaned text is short are batched: a short email is judged the same alone or beside a
    few others, while long ones (newsletters, long threads) keep a call of their own.
    """

    max_emails: int = 8  # emails per call, the leading one included (1 turns batching off)
    email_tokens: int = 300  # an email's cleaned text must be at most this long to share a call
    batch_tokens: int = 2400  # the emails' blocks of one call together
    scan: int = 32  # queued triage tasks of the mailbox looked at per batch
    fetches: int = 16  # at most this many of them fetched from the mailbox per batch (one GetItem each)
    lease_seconds: float = 180.0  # a claimed email waits this long for a silent leader, then triages itself
    poll_seconds: float = 0.2  # how often a claimed email's own job looks for its decision


def may_join(limits: BatchLimits, used: int, prepared: mail_text.PreparedEmail) -> bool:
    """Whether an email may share a call whose emails already take ``used`` tokens: short, and room left."""
    return (
        not prepared.is_empty
        and prepared.body_tokens <= limits.email_tokens
        and used + email_cost(prepared) <= limits.batch_tokens
    )


# A triage record moves pending -> b:<record id of the triage holding it> -> decided -> triaged | needs_human |
# skipped. The task that runs first ("the leader") holds its own record and may also claim records of other
# queued triage tasks of the same mailbox whose emails are short (an atomic SQL update from ``pending``, only
# while their task is still ``queued``). One model call decides them all; each decision (with the email's
# share of the reported tokens) is stored on its own task, and each task's own job acts on it: its own
# actions, audit entries and result. A claimed task whose job starts early waits for the decision; if the
# leader fails it gives its claims back, and if it dies silently the claimed tasks take over after a lease.
# The batch call only classifies; a reply draft is written afterwards by the email's own job, in a call of its
# own that sees only that email (``write_draft``).

DECIDED = "decided"
FINAL = ("triaged", "needs_human", "skipped")


def hold_status(record_id: int) -> str:
    """The status of a record claimed by the triage of record ``record_id`` (a leader, or itself)."""
    return f"b:{record_id}"


def limits_for(deps: WorkerDeps) -> BatchLimits:
    """Batching limits: ``deps.extras["triage_batch"]`` or the defaults."""
    value = deps.extras.get("triage_batch")
    return value if isinstance(value, BatchLimits) else BatchLimits()


def _cas(deps: WorkerDeps, record_id: int, old: str, new: str) -> bool:
    """Move a record from status ``old`` to ``new`` atomically; False if someone else moved it first."""
    with deps.db.session() as s:
        changed = s.execute(
            update(MailItem).where(MailItem.id == record_id, MailItem.status == old).values(status=new)
        ).rowcount
    return changed == 1


def release(deps: WorkerDeps, hold: str) -> int:
    """Give back every record held under ``hold`` (its triages run on their own)."""
    with deps.db.session() as s:
        return s.execute(update(MailItem).where(MailItem.status == hold).values(status="pending")).rowcount


def _aware(value: Any) -> Any:
    return value if value is None or value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


def _leader_gone(deps: WorkerDeps, row: MailItem, limits: BatchLimits) -> bool:
    """Whether the triage holding ``row`` finished without deciding it, or has been silent past the lease."""
    try:
        leader_record = int(row.status.removeprefix("b:"))
    except ValueError:
        return True
    with deps.db.session() as s:
        leader = s.get(MailItem, leader_record)
        leader_task = s.get(Task, leader.task_id) if leader is not None else None
    if leader_task is None or leader_task.status in ledger.TERMINAL:
        return True
    held_for = (utcnow() - _aware(row.updated_at)).total_seconds()
    return held_for > limits.lease_seconds


def take_own(deps: WorkerDeps, task: Task, record_id: int, limits: BatchLimits) -> str:
    """Hold this task's own record, or wait for the batch holding it; returns the hold or ``decided``."""
    own = hold_status(record_id)
    while True:
        row = load_item(deps, task.id)
        assert row is not None
        status = row.status
        if status in (DECIDED, own):
            return status
        if status in FINAL and "batch" in ((ledger.get_task(deps.db, task.id) or task).result or {}):
            return DECIDED  # decided earlier; an attempt died before finishing: act again (idempotent)
        if not status.startswith("b:"):
            if _cas(deps, row.id, status, own):
                return own
            continue
        if _leader_gone(deps, row, limits):
            if _cas(deps, row.id, status, own):
                log.warning(
                    "task %s: the batch holding it (%s) went silent; triaging it alone", task.id, status
                )
                return own
            continue
        time.sleep(limits.poll_seconds)


def gather(
    deps: WorkerDeps, task: Task, cfg: MailboxConfig, mailbox: Mailbox, lead: Entry, limits: BatchLimits
) -> list[Entry]:
    """Claim short emails of other queued triage tasks of this mailbox (and re-adopt this leader's own)."""
    own = hold_status(lead.record_id)
    with deps.db.session() as s:
        held = list(
            s.execute(
                select(MailItem.id, MailItem.task_id, MailItem.current_item_id)
                .where(MailItem.status == own, MailItem.id != lead.record_id)
                .order_by(MailItem.id)
            ).all()
        )
        queued = list(
            s.execute(
                select(MailItem.id, MailItem.task_id, MailItem.current_item_id)
                .join(Task, Task.id == MailItem.task_id)
                .where(
                    MailItem.mailbox == cfg.address,
                    MailItem.status == "pending",
                    Task.status == "queued",
                    Task.intent == "triage",
                    Task.requester == task.requester,
                    Task.id != task.id,
                )
                .order_by(Task.created_at, Task.id)
                .limit(limits.scan)
            ).all()
        )
    entries: list[Entry] = []
    used = lead.cost
    candidates = [(r, True) for r in held] + [(r, False) for r in queued]
    for n, ((record_id, task_id, item_id), adopted) in enumerate(candidates):
        if len(entries) + 1 >= limits.max_emails or n >= limits.fetches:
            for (rid, _t, _i), was_held in candidates[n:]:
                if was_held:
                    _cas(deps, rid, own, "pending")
            break
        try:
            msg = fetch(mailbox, cfg.address, item_id)
        except Exception as exc:  # noqa: BLE001 - a batch is an optimisation: stop growing it, never fail
            log.info("task %s: not batching further (%s)", task.id, exc)
            for (rid, _t, _i), was_held in candidates[n:]:
                if was_held:
                    _cas(deps, rid, own, "pending")
            break
        entry = Entry(task_id, record_id, msg, prepare(deps, msg), adopted) if msg is not None else None
        if entry is None or not may_join(limits, used, entry.prepared):
            if adopted:
                _cas(deps, record_id, own, "pending")  # its own job triages (or skips) it
            continue
        if not adopted:
            with deps.db.session() as s:
                claimed = s.execute(
                    update(MailItem)
                    .where(
                        MailItem.id == record_id,
                        MailItem.status == "pending",
                        MailItem.task_id.in_(
                            select(Task.id).where(Task.id == task_id, Task.status == "queued")
                        ),
                    )
                    .values(status=own)
                    .execution_options(synchronize_session=False)
                ).rowcount
            if claimed != 1:
                continue
        assert entry is not None
        entries.append(entry)
        used += entry.cost
    return entries


def store_verdicts(
    deps: WorkerDeps, task: Task, entries: Sequence[Entry], verdicts: dict[str, Verdict]
) -> None:
    """Record each email's verdict on its own task and mark its record decided (only while still held)."""
    own = hold_status(entries[0].record_id)
    members = [e.task_id for e in entries]
    for e in entries:
        v = verdicts[e.task_id]
        record = {
            "leader": task.id,
            "size": len(entries),
            "key": v.key,
            "decision": v.decision.as_dict() if v.decision else None,
            "problem": v.problem,
            "prompt_tokens": v.prompt_tokens,
            "completion_tokens": v.completion_tokens,
            "calls": v.calls,
            "call_ids": v.call_ids,
            "sizes": e.sizes,
            "notes": e.prepared.notes,
            "redactions": v.redactions,
            "batch_draft_discarded": v.batch_draft,
        }
        if e.task_id == task.id and len(entries) > 1:
            record["members"] = members
        with deps.db.session() as s:
            changed = s.execute(
                update(MailItem)
                .where(MailItem.id == e.record_id, MailItem.status == own)
                .values(
                    status=DECIDED,
                    prompt_tokens=v.prompt_tokens,
                    completion_tokens=v.completion_tokens,
                    **e.sizes,
                )
            ).rowcount
            if changed == 1:
                row = s.get(Task, e.task_id)
                assert row is not None
                row.result = {**(row.result or {}), "batch": record}
                requester = row.requester
        if changed == 1 and v.batch_draft:
            audit.record(
                deps.db,
                actor="clawback",
                on_behalf_of=requester,
                action="mail.draft",
                decision="deny",
                task_id=e.task_id,
                target=task.payload["mailbox"],
                scope="mail.draft",
                details={
                    "reason": mail_messages.DRAFT_BATCHED,
                    "effect": "discarded, never saved",
                    "batch_size": len(entries),
                    "leader": task.id,
                },
            )
        if changed != 1:
            log.warning("task %s: batched email %s was taken back before its decision", task.id, e.task_id)
