"""Email triage: classify one email (structured output), act within the owner's scopes, tell the owner.

Intents: ``triage`` (one email, created by the poller; short emails of one mailbox share a classification
call, and an email that may get a reply draft has it written by a call of its own that sees only that email),
``mail_digest`` (the owner's digest DM, created by the poller after a poll),
``mail_preview`` (the owner clicked "Send draft": show the exact draft), ``mail_send`` (the owner clicked
"Confirm send" under it) and ``mail_relabel`` (the owner picked the right category after "Wrong
category"). The email is untrusted data: it decides nothing about which actions run, who a draft goes to, or
which links, addresses or numbers it may carry; code does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

import prompts
from bot import audit, ledger
from bot.db import Task, utcnow
from bot.errors import BudgetExceeded, Denied, RateLimited, TransientError, UserFacingError
from bot.ingress import redactor_for
from bot.mail import messages as mail_messages
from bot.mail import text as mail_text
from bot.mail.base import Mailbox, MailMessage, MailNotFound
from bot.mail.blocks import (
    MAX_BLOCKS,
    PER_ITEM,
    ItemView,
    build_digest_pages,
    build_item_blocks,
    build_send_preview_blocks,
    escape,
    overflow_text,
)
from bot.mail.config import CATEGORIES, CATEGORY_LABELS, LABEL_CATEGORIES, MailboxConfig, mailbox_config
from bot.mail.config import mailbox_factory as default_mailbox_factory
from bot.mail.drafts import check_draft, draft_fingerprint
from bot.mail.models import MailItem
from bot.tokens import estimate_messages, estimate_tokens
from workers import runtime
from workers.actuators import SlackActuator, _classify
from workers.mail.actuator import MailboxActuator, mail_errors, post_owner_dm
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)

PROMPT = "triage"
SCHEMA_NAME = "triage"
DECISION_FIELDS = ("category", "priority", "summary", "reason")
ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", *DECISION_FIELDS],
    "properties": {
        "id": {"type": "string"},
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "priority": {"type": "integer", "enum": [1, 2, 3]},
        "summary": {"type": "string"},
        "reason": {"type": "string"},
    },
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["decisions"],
    "properties": {"decisions": {"type": "array", "items": ITEM_SCHEMA}},
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": SCHEMA},
}
DRAFT_PROMPT = "draft"
DRAFT_SCHEMA_NAME = "reply_draft"
DRAFT_RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": DRAFT_SCHEMA_NAME,
        "strict": True,
        "schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["reply_draft"],
            "properties": {"reply_draft": {"type": ["string", "null"]}},
        },
    },
}
DRAFT_STEP = "draft"
DRAFT_CATEGORIES = ("reply_needed", "action_required")
MAX_DIGEST_ITEMS = 32  # shown one by one; the rest are summed up in one line
_NO_REPLY = re.compile(r"(no-?reply|do-?not-?reply|mailer-daemon|postmaster|notifications?|bounce)", re.I)


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


@dataclass(frozen=True)
class Decision:
    """A validated triage decision (classification only: a reply draft is written by its own call)."""

    category: str
    priority: int
    summary: str
    reason: str

    @classmethod
    def stored(cls, data: dict[str, Any]) -> Decision:
        """A decision stored on a task (a draft stored by an older version is dropped, never used)."""
        return cls(**{f: data[f] for f in DECISION_FIELDS})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored for a batched email until its own job acts on it)."""
        return {f: getattr(self, f) for f in DECISION_FIELDS}


def check_decision(data: Any) -> tuple[Decision | None, str | None]:
    """Validate one decision object (without ``id``); returns (decision, None) or (None, what is wrong)."""
    if not isinstance(data, dict):
        return None, "not a JSON object"
    extra = sorted(set(data) - set(DECISION_FIELDS))
    missing = sorted(set(DECISION_FIELDS) - set(data))
    if extra or missing:
        return None, f"missing fields {missing}, unexpected fields {extra}"
    if data["category"] not in CATEGORIES:
        return None, f"category must be one of {list(CATEGORIES)}"
    if isinstance(data["priority"], bool) or data["priority"] not in (1, 2, 3):
        return None, "priority must be 1, 2 or 3"
    for key in ("summary", "reason"):
        if not isinstance(data[key], str) or not data[key].strip():
            return None, f"{key} must be a non-empty string"
    return (
        Decision(
            data["category"],
            data["priority"],
            " ".join(data["summary"].split())[:300],
            " ".join(data["reason"].split())[:400],
        ),
        None,
    )


def parse_decision(content: str) -> tuple[Decision | None, str | None]:
    """Validate one decision given as JSON text."""
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, TypeError) as exc:
        return None, f"not JSON ({exc.__class__.__name__})"
    return check_decision(data)


@dataclass
class BatchAnswer:
    """The model's answer to a batch, mapped back to the batch's own ids by code."""

    decisions: dict[str, Decision]
    problems: dict[str, str]
    sizes: dict[str, int]  # estimated completion tokens of each id's entry (for apportioning)
    ignored: int = 0  # entries with ids that are not in this batch
    drafts: set[str] = field(default_factory=set)  # ids whose entry carried a reply draft (discarded)


def parse_batch(content: str, ids: Sequence[str]) -> BatchAnswer:
    """Validate a batch answer against the ids this batch gave out; unknown ids are dropped, never mapped.

    A batch call classifies and writes no drafts: a ``reply_draft`` in an entry (off the schema) is dropped
    before validation and its id noted in ``drafts`` (the caller audits it as refused; it is never saved)."""
    wanted = set(ids)
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, TypeError) as exc:
        return BatchAnswer({}, {i: f"not JSON ({exc.__class__.__name__})" for i in ids}, {})
    if not isinstance(data, dict) or set(data) != {"decisions"} or not isinstance(data["decisions"], list):
        return BatchAnswer({}, {i: 'not a JSON object with only a "decisions" array' for i in ids}, {})
    decisions: dict[str, Decision] = {}
    problems: dict[str, str] = {}
    sizes: dict[str, int] = {}
    seen: set[str] = set()
    drafts: set[str] = set()
    ignored = 0
    for entry in data["decisions"]:
        key = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(key, str) or key not in wanted:
            ignored += 1
            continue
        sizes[key] = sizes.get(key, 0) + estimate_tokens(json.dumps(entry, ensure_ascii=False))
        if key in seen:
            decisions.pop(key, None)
            problems[key] = "answered more than once"
            continue
        seen.add(key)
        if entry.get("reply_draft") is not None:
            drafts.add(key)
        decision, problem = check_decision({k: v for k, v in entry.items() if k not in ("id", "reply_draft")})
        if decision is None:
            problems[key] = problem or "invalid"
        else:
            decisions[key] = decision
    for key in ids:
        if key not in seen:
            problems[key] = "no decision for this email"
    return BatchAnswer(decisions, problems, sizes, ignored, drafts)


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` in integer shares by ``weights`` (largest remainder): the shares sum to ``total``."""
    if not weights:
        return []
    if sum(weights) <= 0:
        weights = [1.0] * len(weights)
    scale = sum(weights)
    exact = [total * w / scale for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


@dataclass(frozen=True)
class EmailBlock:
    """One email as the triage prompt shows it (already cleaned and redacted)."""

    key: str
    sender: str
    recipients: str
    subject: str
    received: str
    notes: str
    body: str


def render_batch(owner: str, boundary: str, blocks: Sequence[EmailBlock]) -> prompts.RenderedPrompt:
    """The triage prompt for one or more emails; each starts at a boundary line carrying its id.

    The boundary is removed from every email's text, so no email can fake another email's start or id.
    """

    def line(value: str) -> str:
        return " ".join(value.replace(boundary, "").split())[:300]

    parts = []
    for b in blocks:
        parts.append(
            f"{boundary} {b.key}\nFrom: {line(b.sender)}\nTo: {b.recipients}\n"
            f"Subject: {line(b.subject) or '(no subject)'}\nReceived: {b.received}\nNotes: {line(b.notes)}\n"
            f"{b.body.replace(boundary, '').strip() or '(no text)'}"
        )
    return prompts.render(
        PROMPT, owner_name=owner, count=len(blocks), boundary=boundary, emails="\n".join(parts)
    )


def email_cost(prepared: mail_text.PreparedEmail) -> int:
    """Estimated prompt tokens of an email's block (text, subject and header lines), for the batch budget."""
    return prepared.body_tokens + 40


def may_join(limits: BatchLimits, used: int, prepared: mail_text.PreparedEmail) -> bool:
    """Whether an email may share a call whose emails already take ``used`` tokens: short, and room left."""
    return (
        not prepared.is_empty
        and prepared.body_tokens <= limits.email_tokens
        and used + email_cost(prepared) <= limits.batch_tokens
    )


def split_usage(
    prompt_tokens: int,
    completion_tokens: int,
    prompt_weights: Sequence[float],
    completion_weights: Sequence[float],
) -> list[tuple[int, int]]:
    """Each email's (prompt, completion) share of one call: by its own block and answer, the shared
    instructions split evenly; the shares add up to exactly the reported totals."""
    return list(
        zip(
            apportion(prompt_tokens, prompt_weights),
            apportion(completion_tokens, completion_weights),
            strict=True,
        )
    )


def prompt_weights(blocks: Sequence[EmailBlock], msgs: list[dict[str, str]]) -> list[float]:
    """Prompt weights of a batch's emails: each one's block plus an even part of the shared text."""
    sizes = [block_tokens(b) for b in blocks]
    overhead = max(estimate_messages(msgs) - sum(sizes), 0) / len(sizes)
    return [s + overhead for s in sizes]


def block_tokens(block: EmailBlock) -> int:
    """Estimated prompt tokens of one email's block."""
    return (
        estimate_tokens(
            f"{block.key}{block.sender}{block.recipients}{block.subject}{block.received}{block.notes}{block.body}"
        )
        + 12
    )


def may_draft_to(sender: str, owner_address: str) -> bool:
    """A reply draft makes sense only for a real external sender (not ourselves, not a no-reply robot)."""
    local = sender.split("@")[0]
    return (
        bool(sender)
        and "@" in sender
        and sender.lower() != owner_address.lower()
        and not _NO_REPLY.search(local)
    )


def may_get_draft(policy: Any, owner: str, address: str, msg: MailMessage) -> bool:
    """Whether triage may save a reply draft for ``msg``: its owner holds ``mail.draft`` and the sender takes
    replies. Its draft is written by a call of its own (``write_draft``): no other email's content can reach
    it, whichever batch classified the email."""
    return policy.has_scope(owner, "mail.draft") and may_draft_to(msg.sender_email, address)


# -- shared helpers ----------------------------------------------------------------------------------------


def config_for(deps: WorkerDeps, address: str) -> MailboxConfig:
    """The mailbox's configuration from the current policy, or Denied when it is gone."""
    cfg = mailbox_config(deps.policy.current.section("mailboxes"), address)
    if cfg is None or not cfg.enabled:
        raise Denied(mail_messages.MAILBOX_GONE, reason=f"mailbox {address} not configured")
    return cfg


def mailbox_for(deps: WorkerDeps, address: str) -> Mailbox:
    """The mailbox client from ``deps.extras["mailboxes"]`` (built from the policy on first use)."""
    factory = deps.extras.get("mailboxes")
    if factory is None:
        factory = deps.extras["mailboxes"] = default_mailbox_factory(deps.settings, deps.policy)
    return factory(address)


def ensure_item(deps: WorkerDeps, task: Task) -> MailItem:
    """The task's triage record (the poller creates it; created here if the poller crashed before)."""
    with deps.db.session() as s:
        item = s.execute(select(MailItem).where(MailItem.task_id == task.id)).scalar_one_or_none()
        if item is None:
            p = task.payload
            item = MailItem(
                task_id=task.id,
                mailbox=p["mailbox"],
                item_id=p["item_id"],
                current_item_id=p["item_id"],
                internet_message_id=p.get("internet_message_id"),
                subject=(p.get("subject") or "")[:255],
                sender=(p.get("sender") or "")[:255],
                status="pending",
                folder="inbox",
                corrected=0,
                body_tokens=0,
                raw_tokens=0,
                prompt_tokens=0,
                completion_tokens=0,
            )
            s.add(item)
        return item


def save_item(deps: WorkerDeps, task_id: str, **fields: Any) -> None:
    """Update a triage record's fields."""
    with deps.db.session() as s:
        s.execute(update(MailItem).where(MailItem.task_id == task_id).values(**fields))


def view_of(item: MailItem, owner: str) -> ItemView:
    """The digest view of a record."""
    return ItemView(
        task_id=item.task_id,
        owner=owner,
        subject=item.subject or "",
        sender=item.sender or "",
        status=item.status,
        category=item.category,
        priority=item.priority,
        summary=item.summary or "",
        draft_status=item.draft_status,
        feedback=item.feedback,
        prompt_tokens=item.prompt_tokens,
        completion_tokens=item.completion_tokens,
        draft_note=(item.reason or "") if item.draft_status == "refused" else "",
    )


def _allowed(deps: WorkerDeps, task: Task, scope: str, address: str) -> bool:
    """Whether the owner holds ``scope``; a missing scope is audited as a denial and the action skipped."""
    if deps.policy.current.has_scope(task.requester, scope):
        return True
    audit.record(
        deps.db,
        actor="clawback",
        on_behalf_of=task.requester,
        action=scope,
        decision="deny",
        task_id=task.id,
        target=address,
        scope=scope,
        details={"reason": f"missing scope {scope}", "effect": "skipped"},
    )
    return False


# -- triage --------------------------------------------------------------------------------------------
#
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


def _hold(record_id: int) -> str:
    """The status of a record claimed by the triage of record ``record_id`` (a leader, or itself)."""
    return f"b:{record_id}"


def limits_for(deps: WorkerDeps) -> BatchLimits:
    """Batching limits: ``deps.extras["triage_batch"]`` or the defaults."""
    value = deps.extras.get("triage_batch")
    return value if isinstance(value, BatchLimits) else BatchLimits()


@dataclass
class Entry:
    """One email of a batch: its task, record, message and what the prompt shows of it."""

    task_id: str
    record_id: int
    msg: MailMessage
    prepared: mail_text.PreparedEmail
    adopted: bool = False

    @property
    def sizes(self) -> dict[str, int]:
        """Raw and cleaned size estimates."""
        return {"raw_tokens": self.prepared.raw_tokens, "body_tokens": self.prepared.body_tokens}

    @property
    def cost(self) -> int:
        """Estimated prompt tokens of the email's block (before redaction), for the batch budget."""
        return email_cost(self.prepared)


@dataclass
class Verdict:
    """What a batch concluded for one email, with its share of the tokens the API reported."""

    key: str
    decision: Decision | None = None
    problem: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    call_ids: list[int] = field(default_factory=list)
    redactions: int = 0
    batch_draft: bool = False  # the classification call returned a reply draft for it (discarded)


def _call(
    deps: WorkerDeps,
    task: Task,
    step: str,
    prompt: prompts.RenderedPrompt,
    msgs: list[dict],
    max_tokens: int,
    response_format: dict[str, Any] = RESPONSE_FORMAT,
) -> Any:
    policy = deps.policy.current
    reservation = deps.budget.reserve(
        task.requester, estimate_messages(msgs) + max_tokens, policy.limits_for(task.requester)
    )
    result = None
    try:
        result = deps.llm.complete(
            task_id=task.id,
            step=step,
            prompt=prompt,
            max_tokens=max_tokens,
            messages=msgs,
            response_format=response_format,
        )
    finally:
        deps.budget.settle(reservation, 0 if result is None or result.reused else result.total_tokens)
    return result


def batch_keys(leader_id: str, task_ids: Sequence[str]) -> list[str]:
    """Per-email ids for one batch: opaque, unique within it, meaningless outside it."""
    keys: list[str] = []
    for tid in task_ids:
        digest = hashlib.sha256(f"{leader_id}:{tid}".encode()).hexdigest()
        n = 5
        while "m" + digest[:n] in keys:
            n += 1
        keys.append("m" + digest[:n])
    return keys


def email_block(key: str, msg: MailMessage, prepared: mail_text.PreparedEmail, redactor: Any) -> tuple:
    """The prompt block of one email (redacted) and how many redactions it took."""
    body, counts = redactor.redact(prepared.text)
    subject, counts2 = redactor.redact(prepared.subject)
    recipients = len(msg.to) + len(msg.cc)
    block = EmailBlock(
        key=key,
        sender=f"{redactor.redact_text(msg.sender_name)} <{redactor.redact_text(msg.sender_email)}>",
        recipients=f"{recipients} recipient(s)" + (" including cc" if msg.cc else ""),
        subject=subject,
        received=msg.received_at.strftime("%Y-%m-%d %H:%M UTC"),
        notes=", ".join(prepared.notes + (["has attachments"] if msg.has_attachments else [])) or "none",
        body=body,
    )
    return block, sum(counts.values()) + sum(counts2.values())


def _shares(
    verdicts: Sequence[Verdict], result: Any, weights: Sequence[float], completion: dict[str, int]
) -> None:
    """Give each email its share of one call's reported tokens (the shares sum to the reported totals)."""
    shares = split_usage(
        result.prompt_tokens,
        result.completion_tokens,
        weights,
        [float(completion.get(v.key, 0)) for v in verdicts],
    )
    for v, (pt, ct) in zip(verdicts, shares, strict=True):
        v.prompt_tokens += pt
        v.completion_tokens += ct
        v.calls += 1
        if result.call_id is not None:
            v.call_ids.append(result.call_id)


def decide_batch(deps: WorkerDeps, task: Task, entries: Sequence[Entry], owner: str) -> dict[str, Verdict]:
    """One call for all ``entries``; one repair call for the emails whose answers were invalid.

    Returns task id -> verdict. An email still invalid after the repair gets no decision (a human looks).
    """
    keys = batch_keys(task.id, [e.task_id for e in entries])
    boundary = "<<" + hashlib.sha256(task.id.encode()).hexdigest()[:16] + ">>"
    redactor = redactor_for(deps.policy)
    blocks, verdicts = [], []
    for key, e in zip(keys, entries, strict=True):
        block, redactions = email_block(key, e.msg, e.prepared, redactor)
        blocks.append(block)
        verdicts.append(Verdict(key, redactions=redactions))
    prompt = render_batch(owner, boundary, blocks)
    msgs = prompt.messages()
    tag = "" if len(entries) == 1 else "_batch:" + hashlib.sha256("|".join(keys).encode()).hexdigest()[:8]
    per_email = deps.settings.clawback_mail_max_triage_tokens
    first = _call(deps, task, "triage" + tag, prompt, msgs, per_email * len(entries))
    answer = parse_batch(first.content, keys)
    _shares(verdicts, first, prompt_weights(blocks, msgs), answer.sizes)
    by_key = {v.key: v for v in verdicts}
    for key, decision in answer.decisions.items():
        by_key[key].decision = decision
    for key in answer.drafts:
        by_key[key].batch_draft = True
    bad = [v for v in verdicts if v.key in answer.problems]
    if bad:
        listed = "; ".join(f"{v.key}: {answer.problems[v.key]}" for v in bad)
        log.warning("task %s: invalid triage output (%s); asking once to repair", task.id, listed)
        repair_msgs = [
            *msgs,
            {"role": "assistant", "content": (first.content or "")[:8000]},
            {
                "role": "user",
                "content": f"That answer was invalid for {listed}. Reply again with only the JSON object "
                f"matching the schema, with one decision for each of these ids: "
                f"{', '.join(v.key for v in bad)}.",
            },
        ]
        second = _call(deps, task, "repair" + tag, prompt, repair_msgs, per_email * len(bad))
        again = parse_batch(second.content, [v.key for v in bad])
        _shares(bad, second, [1.0] * len(bad), again.sizes)
        for key in again.drafts:
            by_key[key].batch_draft = True
        for v in bad:
            if v.key in again.decisions:
                v.decision = again.decisions[v.key]
            else:
                v.problem = f"{answer.problems[v.key]}; after repair: {again.problems.get(v.key, 'invalid')}"
    return {e.task_id: v for e, v in zip(entries, verdicts, strict=True)}


def _cas(deps: WorkerDeps, record_id: int, old: str, new: str) -> bool:
    """Move a record from status ``old`` to ``new`` atomically; False if someone else moved it first."""
    with deps.db.session() as s:
        changed = s.execute(
            update(MailItem).where(MailItem.id == record_id, MailItem.status == old).values(status=new)
        ).rowcount
    return changed == 1


def _release(deps: WorkerDeps, hold: str) -> int:
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


def _take_own(deps: WorkerDeps, task: Task, record_id: int, limits: BatchLimits) -> str:
    """Hold this task's own record, or wait for the batch holding it; returns the hold or ``decided``."""
    own = _hold(record_id)
    while True:
        row = _load_item(deps, task.id)
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


def _fetch(mailbox: Mailbox, address: str, item_id: str) -> MailMessage | None:
    with mail_errors(address):
        try:
            return mailbox.get_message(item_id)
        except MailNotFound:
            return None


def _prepare(deps: WorkerDeps, msg: MailMessage) -> mail_text.PreparedEmail:
    return mail_text.prepare(
        msg.subject,
        msg.body_text,
        msg.body_html,
        budget_tokens=deps.settings.clawback_mail_body_tokens,
        attachments=msg.has_attachments,
    )


def _gather(
    deps: WorkerDeps, task: Task, cfg: MailboxConfig, mailbox: Mailbox, lead: Entry, limits: BatchLimits
) -> list[Entry]:
    """Claim short emails of other queued triage tasks of this mailbox (and re-adopt this leader's own)."""
    own = _hold(lead.record_id)
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
            msg = _fetch(mailbox, cfg.address, item_id)
        except Exception as exc:  # noqa: BLE001 - a batch is an optimisation: stop growing it, never fail
            log.info("task %s: not batching further (%s)", task.id, exc)
            for (rid, _t, _i), was_held in candidates[n:]:
                if was_held:
                    _cas(deps, rid, own, "pending")
            break
        entry = Entry(task_id, record_id, msg, _prepare(deps, msg), adopted) if msg is not None else None
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


def _store(deps: WorkerDeps, task: Task, entries: Sequence[Entry], verdicts: dict[str, Verdict]) -> None:
    """Record each email's verdict on its own task and mark its record decided (only while still held)."""
    own = _hold(entries[0].record_id)
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


@dataclass(frozen=True)
class DraftAnswer:
    """What the draft call wrote for one email (``text`` None: no reply fits; ``problem``: why none was
    written, for the owner) and its tokens."""

    text: str | None
    problem: str | None
    prompt_tokens: int
    completion_tokens: int
    call_id: int | None


def render_draft(key: str, boundary: str, block: EmailBlock) -> prompts.RenderedPrompt:
    """The draft prompt: one email's sender, subject and cleaned (redacted) text, and nothing else."""

    def line(value: str) -> str:
        return " ".join(value.replace(boundary, "").split())[:300]

    return prompts.render(
        DRAFT_PROMPT,
        boundary=boundary,
        key=key,
        sender=line(block.sender),
        subject=line(block.subject) or "(no subject)",
        body=block.body.replace(boundary, "").strip() or "(no text)",
    )


def parse_draft(content: str | None) -> tuple[str | None, str | None]:
    """(draft text or None, problem or None) from the draft call's JSON answer."""
    try:
        data = json.loads(content or "")
    except (json.JSONDecodeError, TypeError) as exc:
        return None, f"not JSON ({exc.__class__.__name__})"
    if not isinstance(data, dict) or set(data) != {"reply_draft"}:
        return None, 'not a JSON object with only "reply_draft"'
    draft = data["reply_draft"]
    if draft is not None and not isinstance(draft, str):
        return None, "reply_draft must be a string or null"
    return (draft.strip()[:4000] or None) if isinstance(draft, str) else None, None


def write_draft(deps: WorkerDeps, task: Task, cfg: MailboxConfig, msg: MailMessage) -> DraftAnswer:
    """Ask for ``msg``'s reply draft in a call that sees only this email (its sender, subject and cleaned
    text), recorded on and budgeted to the email's own task (step ``draft``, reused when retried)."""
    key = batch_keys(task.id, [task.id])[0]
    boundary = "<<" + hashlib.sha256(f"draft:{task.id}".encode()).hexdigest()[:16] + ">>"
    block, _redactions = email_block(key, msg, _prepare(deps, msg), redactor_for(deps.policy))
    prompt = render_draft(key, boundary, block)
    try:
        result = _call(
            deps,
            task,
            DRAFT_STEP,
            prompt,
            prompt.messages(),
            deps.settings.clawback_mail_max_triage_tokens,
            DRAFT_RESPONSE_FORMAT,
        )
    except BudgetExceeded as exc:
        if isinstance(exc, RateLimited) or exc.reason == "rate limited":  # a minute's wait: retry the job
            raise TransientError("rate limited; writing the draft again shortly", retry_after=60) from exc
        # the day's budget is spent: the email is triaged anyway, without a draft, and the owner told why
        log.info("task %s: no draft call (%s)", task.id, exc.reason)
        return DraftAnswer(None, mail_messages.DRAFT_NO_BUDGET.format(reason=exc.user_message), 0, 0, None)
    text, problem = parse_draft(result.content)
    if problem is not None:
        log.warning("task %s: invalid draft output (%s); no draft saved", task.id, problem)
        problem = mail_messages.DRAFT_NOT_WRITTEN.format(problem=problem)
    return DraftAnswer(text, problem, result.prompt_tokens, result.completion_tokens, result.call_id)


def _skip(deps: WorkerDeps, task: Task, reason: str, **fields: Any) -> dict[str, Any]:
    log.info("task %s: email skipped: %s", task.id, reason)
    save_item(deps, task.id, status="skipped", reason=reason, **fields)
    return {"skipped": reason}


def triage(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Triage one email (with other short queued emails of the mailbox when it leads a batch) and act."""
    address = task.payload["mailbox"]
    cfg = config_for(deps, address)
    if task.requester != cfg.owner:
        raise Denied(mail_messages.NOT_OWNER, reason=f"{task.requester} does not own {address}")
    item = ensure_item(deps, task)
    mailbox = mailbox_for(deps, address)
    limits = limits_for(deps)
    if _take_own(deps, task, item.id, limits) == DECIDED:
        return conclude(deps, task, cfg, mailbox)
    own = _hold(item.id)
    try:
        msg = _fetch(mailbox, address, item.current_item_id)
        if msg is None:
            return _skip(deps, task, "the message is no longer in the mailbox")
        prepared = _prepare(deps, msg)
        lead = Entry(task.id, item.id, msg, prepared)
        if prepared.is_empty:
            reason = "attachments only, no subject or text" if msg.has_attachments else "empty message"
            return _skip(deps, task, reason, **lead.sizes)
        entries = [lead]
        if limits.max_emails > 1 and may_join(limits, 0, prepared):
            entries += _gather(deps, task, cfg, mailbox, lead, limits)
        verdicts = decide_batch(deps, task, entries, f"<@{cfg.owner}>")
        _store(deps, task, entries, verdicts)
    except BaseException:
        released = _release(deps, own)
        if released:
            log.info("task %s: gave back %d claimed email(s)", task.id, released)
        raise
    return conclude(deps, task, cfg, mailbox, msg)


def conclude(
    deps: WorkerDeps, task: Task, cfg: MailboxConfig, mailbox: Mailbox, msg: MailMessage | None = None
) -> dict[str, Any]:
    """Act on the decision stored on this task (by itself or by the batch that included it)."""
    fresh = ledger.get_task(deps.db, task.id)
    record = ((fresh.result if fresh is not None else None) or {}).get("batch")
    if record is None:  # cannot happen unless someone edited the row: decide again on a retry
        save_item(deps, task.id, status="pending")
        raise TransientError("triage decision missing; deciding again")
    tokens = {"prompt_tokens": record["prompt_tokens"], "completion_tokens": record["completion_tokens"]}
    sizes = record["sizes"]
    batch: dict[str, Any] = {"leader": record["leader"], "size": record["size"]}
    if record["leader"] != task.id:
        batch["tokens_recorded_on"] = record["leader"]
    if record.get("members"):
        batch["members"] = record["members"]
    if msg is None:
        msg = _fetch(mailbox, cfg.address, _load_item(deps, task.id).current_item_id)  # type: ignore[union-attr]
    if msg is None:
        result = _skip(deps, task, "the message is no longer in the mailbox", **sizes, **tokens)
        return {**result, **sizes, **tokens, "batch": batch}
    if record["decision"] is None:
        save_item(deps, task.id, status="needs_human", reason=record["problem"], **sizes, **tokens)
        return {
            "needs_human": True,
            "reason": record["problem"],
            **sizes,
            **tokens,
            "notes": record["notes"],
            "llm_calls": record["calls"],
            "batch": batch,
        }
    decision = Decision.stored(record["decision"])
    calls = record["calls"]
    draft: DraftAnswer | None = None
    if decision.category in DRAFT_CATEGORIES and may_get_draft(
        deps.policy.current, task.requester, cfg.address, msg
    ):
        draft = write_draft(deps, task, cfg, msg)
        tokens["prompt_tokens"] += draft.prompt_tokens
        tokens["completion_tokens"] += draft.completion_tokens
        calls += 1
    save_item(
        deps,
        task.id,
        category=decision.category,
        priority=decision.priority,
        summary=decision.summary,
        **sizes,
        **tokens,
    )
    done, skipped = act(deps, task, cfg, mailbox, msg, decision, draft)
    save_item(deps, task.id, status="triaged")
    result: dict[str, Any] = {
        "category": decision.category,
        "priority": decision.priority,
        "actions": done,
        "skipped_actions": skipped,
        "notes": record["notes"],
        "redactions": record["redactions"],
        "llm_calls": calls,
        **sizes,
        **tokens,
        "batch": batch,
    }
    if draft is not None:
        result["draft_call"] = {
            "prompt_tokens": draft.prompt_tokens,
            "completion_tokens": draft.completion_tokens,
            "call_id": draft.call_id,
        }
    if decision.priority == 1:
        result["notified"] = notify_urgent(deps, task, cfg)
    return result


def _refuse_draft(deps: WorkerDeps, task: Task, address: str, reason: str, call_id: Any) -> str:
    """Record a reply draft that will not be saved (audited, the item says why); returns the reason."""
    audit.record(
        deps.db,
        actor="clawback",
        on_behalf_of=task.requester,
        action="mail.draft",
        decision="deny",
        task_id=task.id,
        target=address,
        scope="mail.draft",
        details={"reason": reason, "effect": "no draft saved", "call_id": call_id},
    )
    save_item(deps, task.id, draft_status="refused", reason=reason)
    return reason


def act(
    deps: WorkerDeps,
    task: Task,
    cfg: MailboxConfig,
    mailbox: Mailbox,
    msg: MailMessage,
    decision: Decision,
    draft: DraftAnswer | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Label, draft and move, each only with its scope; returns (done, skipped with reasons).

    A draft is saved only when it came from ``write_draft`` (a call that saw this email alone) and holds no
    address, link or long number the email lacks (``bot.mail.drafts``); otherwise the item says why."""
    actuator = MailboxActuator(mailbox, cfg, deps.db, deps.policy)
    done: list[str] = []
    skipped: dict[str, str] = {}
    label = CATEGORY_LABELS[decision.category]
    if _allowed(deps, task, "mail.categorize", cfg.address):
        # Keep the owner's own categories; replace any earlier triage label.
        keep = [c for c in msg.categories if c.lower() not in LABEL_CATEGORIES]
        actuator.categorize(task, msg.item_id, [*keep, label])
        save_item(deps, task.id, label=label)
        done.append("mail.categorize")
    else:
        skipped["mail.categorize"] = "missing scope"
    wants_draft = decision.category in DRAFT_CATEGORIES
    if wants_draft and not may_draft_to(msg.sender_email, cfg.address):
        skipped["mail.draft"] = "sender does not take replies"
    elif wants_draft and draft is None and not _allowed(deps, task, "mail.draft", cfg.address):
        skipped["mail.draft"] = "missing scope"
    elif draft is not None and draft.problem is not None:
        skipped["mail.draft"] = _refuse_draft(deps, task, cfg.address, draft.problem, draft.call_id)
    elif draft is not None and draft.text is None:
        skipped["mail.draft"] = "the model found no reply to write"
    elif draft is not None and draft.text is not None and _allowed(deps, task, "mail.draft", cfg.address):
        body = draft.text[:4000]
        problems = check_draft(body, msg)
        if problems:
            reason = mail_messages.DRAFT_REFUSED.format(reasons="; ".join(problems))
            skipped["mail.draft"] = _refuse_draft(deps, task, cfg.address, reason, draft.call_id)
        else:
            draft_id = actuator.draft_reply(
                task, msg.item_id, body, source=msg, internet_message_id=msg.internet_message_id or None
            )
            save_item(deps, task.id, draft_id=draft_id, draft_text=body, draft_status="open")
            done.append("mail.draft")
    elif draft is not None:
        skipped["mail.draft"] = "missing scope"
    folder = cfg.folder_for(decision.category)
    if folder and _allowed(deps, task, "mail.move", cfg.address):
        new_id = actuator.move(task, msg.item_id, folder)
        save_item(deps, task.id, current_item_id=new_id or msg.item_id, folder=folder)
        done.append("mail.move")
    elif folder:
        skipped["mail.move"] = "missing scope"
    return done, skipped


def _load_item(deps: WorkerDeps, task_id: str) -> MailItem | None:
    with deps.db.session() as s:
        return s.execute(select(MailItem).where(MailItem.task_id == task_id)).scalar_one_or_none()


def notify_urgent(deps: WorkerDeps, task: Task, cfg: MailboxConfig) -> str:
    """DM the owner a priority-1 email at once, with its buttons; returns the message ts."""
    item = _load_item(deps, task.id)
    assert item is not None
    header = mail_messages.URGENT_HEADER.format(mailbox=cfg.address)
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        *build_item_blocks(view_of(item, cfg.owner)),
    ]
    channel, ts = post_owner_dm(deps.slack, deps.db, task, key="mail.urgent", text=header, blocks=blocks)
    save_item(deps, task.id, slack_channel=channel, slack_ts=ts)
    return ts


# -- digest -----------------------------------------------------------------------------------------------


def _digest_order(item: MailItem) -> tuple:
    return (
        0 if item.status == "needs_human" else 1,
        item.priority or 3,
        -(item.received_at.timestamp() if item.received_at else 0),
    )


def digest(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Post the owner one digest of everything triaged since the last one (priority 1 went out already)."""
    address = task.payload["mailbox"]
    cfg = config_for(deps, address)
    with deps.db.session() as s:
        s.execute(
            update(MailItem)
            .where(
                MailItem.mailbox == address,
                MailItem.digest_key.is_(None),
                MailItem.slack_ts.is_(None),
                MailItem.status.in_(("triaged", "needs_human")),
            )
            .values(digest_key=task.id)
        )
    with deps.db.session() as s:
        items = list(s.execute(select(MailItem).where(MailItem.digest_key == task.id)).scalars())
    if not items:
        return {"items": 0}
    items.sort(key=_digest_order)
    shown, rest = items[:MAX_DIGEST_ITEMS], items[MAX_DIGEST_ITEMS:]
    views = [view_of(i, cfg.owner) for i in shown]
    overflow = overflow_text([view_of(i, cfg.owner) for i in rest]) if rest else None
    header = mail_messages.DIGEST_HEADER.format(mailbox=address, count=len(items))
    pages = build_digest_pages(header, views, overflow)
    per_page = (MAX_BLOCKS - 2) // PER_ITEM  # as build_digest_pages lays them out
    page_ts: list[str] = []
    for n, blocks in enumerate(pages):
        channel, ts = post_owner_dm(
            deps.slack, deps.db, task, key=f"mail.digest:{n}", text=header, blocks=blocks
        )
        page_ts.append(ts)
        ids = [v.task_id for v in views[n * per_page : (n + 1) * per_page]]
        with deps.db.session() as s:
            s.execute(
                update(MailItem).where(MailItem.task_id.in_(ids)).values(slack_channel=channel, slack_ts=ts)
            )
    ledger.update_result(deps.db, task.id, header=header, overflow=overflow, pages=page_ts)
    return {
        "items": len(items),
        "shown": len(shown),
        "pages": page_ts,
        "header": header,
        "overflow": overflow,
    }


def refresh_message(deps: WorkerDeps, channel: str, ts: str) -> str:
    """Rebuild a digest or priority-1 message from the records after a click."""
    with deps.db.session() as s:
        items = list(
            s.execute(
                select(MailItem).where(MailItem.slack_channel == channel, MailItem.slack_ts == ts)
            ).scalars()
        )
    if not items:
        return "skipped"
    items.sort(key=_digest_order)
    owner = ledger.get_task(deps.db, items[0].task_id).requester  # type: ignore[union-attr]
    views = [view_of(i, owner) for i in items]
    if items[0].digest_key:
        info = ledger.get_task(deps.db, items[0].digest_key).result or {}  # type: ignore[union-attr]
        pages = info.get("pages") or []
        header = info.get("header") or ""
        blocks = build_digest_pages(header, views, None)[0]
        if pages and ts != pages[0]:
            blocks = [b for b in blocks if b.get("type") != "header"]
        if pages and ts == pages[-1] and info.get("overflow"):
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": info["overflow"]}]})
    else:
        header = mail_messages.URGENT_HEADER.format(mailbox=items[0].mailbox)
        blocks = [
            {"type": "header", "text": {"type": "plain_text", "text": header}},
            *build_item_blocks(views[0]),
        ]
    try:
        deps.slack.chat_update(channel=channel, ts=ts, text=header or "Email triage", blocks=blocks)
    except Exception as exc:
        from slack_sdk.errors import SlackApiError

        if isinstance(exc, SlackApiError):
            raise _classify(exc) from exc
        raise
    return "updated"


def refresh_mail_message(channel: str, ts: str) -> str:
    """RQ entry: rebuild a triage message after a button click."""
    return refresh_message(runtime.current(), channel, ts)


# -- send a draft (owner's click) --------------------------------------------------------------------------


def _open_draft(deps: WorkerDeps, task: Task) -> tuple[MailItem, MailboxConfig, Mailbox, MailMessage | None]:
    """The triage record, mailbox and draft a send or its preview is about (owner and draft state checked)."""
    parent_id = task.payload["triage_task"]
    item = _load_item(deps, parent_id)
    if item is None or not item.draft_id:
        raise UserFacingError(mail_messages.DRAFT_GONE, reason="no draft recorded")
    cfg = config_for(deps, item.mailbox)
    if task.requester != cfg.owner:
        raise Denied(mail_messages.NOT_OWNER, reason=f"{task.requester} does not own {item.mailbox}")
    if item.draft_status not in ("open", "sending"):
        raise UserFacingError(mail_messages.DRAFT_NOT_OPEN, reason=f"draft is {item.draft_status}")
    mailbox = mailbox_for(deps, item.mailbox)
    with mail_errors(item.mailbox):
        draft = mailbox.get_draft(item.draft_id)
    if draft is None and item.draft_status == "open":
        raise UserFacingError(mail_messages.DRAFT_GONE, reason="draft not in Drafts")
    return item, cfg, mailbox, draft


def preview_send(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """The owner clicked "Send draft": show the draft's exact text and recipients as the mailbox holds them,
    with a "Confirm send" button bound to their fingerprint. Nothing is sent here."""
    item, cfg, _mailbox, draft = _open_draft(deps, task)
    if draft is None:  # "sending": a send is under way
        raise UserFacingError(mail_messages.DRAFT_NOT_OPEN, reason="draft is being sent")
    fp = draft_fingerprint(draft)
    blocks = build_send_preview_blocks(
        item.task_id, fp, to=draft.to, cc=draft.cc, subject=draft.subject, text=draft.body_text
    )
    text = mail_messages.SEND_PREVIEW_TEXT.format(to=escape(", ".join(draft.to), cfg.owner))
    channel, ts = post_owner_dm(deps.slack, deps.db, task, key="mail.preview", text=text, blocks=blocks)
    return {"preview": ts, "channel": channel, "fingerprint": fp, "to": draft.to, "cc": draft.cc}


def _close_preview(deps: WorkerDeps, parent_id: str, confirmed: str, draft: MailMessage, owner: str) -> None:
    """Show the confirmed preview as sent, without its button (best effort: the mail is already sent)."""
    with deps.db.session() as s:
        previews = list(
            s.execute(
                select(Task).where(
                    Task.intent == "mail_preview", Task.parent_id == parent_id, Task.status == "done"
                )
            ).scalars()
        )
    for preview in previews:
        shown = preview.result or {}
        if shown.get("fingerprint") != confirmed or not shown.get("channel") or not shown.get("preview"):
            continue
        blocks = build_send_preview_blocks(
            parent_id, confirmed, to=draft.to, cc=draft.cc, subject=draft.subject, text=draft.body_text
        )
        blocks = [b for b in blocks if b["type"] not in ("actions", "context")]
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": mail_messages.DRAFT_SENT.format(user=owner)}],
            }
        )
        try:
            deps.slack.chat_update(
                channel=shown["channel"],
                ts=shown["preview"],
                text=mail_messages.DRAFT_SENT.format(user=owner),
                blocks=blocks,
            )
        except Exception as exc:  # noqa: BLE001 - cosmetic: the reply is sent and recorded
            log.warning("draft of %s sent but its preview was not updated (%s)", parent_id, exc)


def send_draft(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Send the reply draft of a triaged email because its owner confirmed its exact text ("Confirm send").

    The send is bound to the fingerprint of the text and recipients the owner was shown: a draft that
    changed since is not sent, and the owner is told why."""
    confirmed = task.payload.get("confirm")
    if not isinstance(confirmed, str) or not confirmed:
        raise UserFacingError(mail_messages.DRAFT_UNCONFIRMED, reason="send without a confirmed preview")
    item, cfg, mailbox, draft = _open_draft(deps, task)
    parent_id = item.task_id
    if draft is not None and draft_fingerprint(draft) != confirmed:
        raise UserFacingError(mail_messages.DRAFT_CHANGED, reason="draft differs from the confirmed preview")
    edited = draft is not None and not mail_text.same_reply(draft.body_text, item.draft_text)
    save_item(deps, parent_id, draft_status="sending")
    MailboxActuator(mailbox, cfg, deps.db, deps.policy).send_draft(task, item.draft_id)
    save_item(deps, parent_id, draft_status="sent")
    ledger.record_outcome(
        deps.db,
        parent_id,
        "draft_sent_edited" if edited else "draft_sent_unchanged",
        source="explicit",
        actor=task.requester,
        detail={"edited": edited, "draft_id": item.draft_id},
    )
    if item.slack_channel and item.slack_ts:
        refresh_message(deps, item.slack_channel, item.slack_ts)
    if draft is not None:
        _close_preview(deps, parent_id, confirmed, draft, cfg.owner)
    to = ", ".join(draft.to) if draft is not None else item.sender or "the sender"
    # The subject and addresses come from mail: shown as text, never as links or mentions.
    SlackActuator(deps.slack, deps.db, deps.policy).notify(
        task,
        mail_messages.SENT_CONFIRMATION.format(
            to=escape(to, cfg.owner), subject=escape(item.subject or "", cfg.owner)
        ),
    )
    return {"sent": item.draft_id, "edited": edited}


# -- relabel after "Wrong category" (owner's click) ---------------------------------------------------------


def relabel(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Put the owner's chosen category on the message in Exchange (their own categories are kept)."""
    parent_id = task.payload["triage_task"]
    category = task.payload.get("category")
    item = _load_item(deps, parent_id)
    if item is None or category not in CATEGORIES:
        raise UserFacingError(mail_messages.RELABEL_UNKNOWN, reason="no triage record or unknown category")
    cfg = config_for(deps, item.mailbox)
    if task.requester != cfg.owner:
        raise Denied(mail_messages.NOT_OWNER, reason=f"{task.requester} does not own {item.mailbox}")
    mailbox = mailbox_for(deps, item.mailbox)
    msg = _fetch(mailbox, cfg.address, item.current_item_id)
    if msg is None:
        return {"skipped": "the message is no longer in the mailbox"}
    label = CATEGORY_LABELS[category]
    categories = [c for c in msg.categories if c.lower() not in LABEL_CATEGORIES] + [label]
    MailboxActuator(mailbox, cfg, deps.db, deps.policy).categorize(task, msg.item_id, categories)
    save_item(deps, parent_id, label=label, corrected=1)
    return {"relabelled": parent_id, "category": category, "categories": categories}


INTENTS = {
    "triage": ("mail.read", triage),
    "mail_digest": ("mail.read", digest),
    "mail_preview": ("mail.send", preview_send),
    "mail_send": ("mail.send", send_draft),
    "mail_relabel": ("mail.categorize", relabel),
}
