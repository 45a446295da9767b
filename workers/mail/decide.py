"""The classification call: the schema and ``Decision``, the prompt of one or more emails (``render_batch``),
validation of the model's answer (``parse_batch``), and each email's share of a call's tokens (``split_usage``).

The batch call only classifies; no email's content decides which actions run (code does, in ``act``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import prompts
from bot.db import Task
from bot.ingress import redactor_for
from bot.mail import text as mail_text
from bot.mail.base import MailMessage
from bot.mail.config import CATEGORIES
from bot.text.tokens import estimate_messages, estimate_tokens
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


def ask_model(
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
    first = ask_model(deps, task, "triage" + tag, prompt, msgs, per_email * len(entries))
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
        second = ask_model(deps, task, "repair" + tag, prompt, repair_msgs, per_email * len(bad))
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
