"""Email triage: classify one email (structured output), act within the owner's scopes, tell the owner.

Intents: ``triage`` (one email, created by the poller), ``mail_digest`` (the owner's digest DM, created by
the poller after a poll) and ``mail_send`` (the owner clicked "Send draft"). The email is untrusted data: it
decides nothing about which actions run, who a draft goes to, or which links it may carry; code does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

import prompts
from bot import audit, ledger
from bot.db import Task
from bot.errors import Denied, UserFacingError
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
    overflow_text,
)
from bot.mail.config import CATEGORIES, CATEGORY_LABELS, LABEL_CATEGORIES, MailboxConfig, mailbox_config
from bot.mail.config import mailbox_factory as default_mailbox_factory
from bot.mail.models import MailItem
from bot.safety import urls_in
from bot.tokens import estimate_messages
from workers import runtime
from workers.actuators import SlackActuator, _classify
from workers.mail_actuator import MailboxActuator, mail_errors, post_owner_dm
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)

PROMPT = "triage"
SCHEMA_NAME = "triage"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["category", "priority", "summary", "reason", "reply_draft"],
    "properties": {
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "priority": {"type": "integer", "enum": [1, 2, 3]},
        "summary": {"type": "string"},
        "reason": {"type": "string"},
        "reply_draft": {"type": ["string", "null"]},
    },
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": SCHEMA},
}
DRAFT_CATEGORIES = ("reply_needed", "action_required")
MAX_DIGEST_ITEMS = 32  # shown one by one; the rest are summed up in one line
_NO_REPLY = re.compile(r"(no-?reply|do-?not-?reply|mailer-daemon|postmaster|notifications?|bounce)", re.I)


@dataclass(frozen=True)
class Decision:
    """A validated triage decision."""

    category: str
    priority: int
    summary: str
    reason: str
    reply_draft: str | None


def parse_decision(content: str) -> tuple[Decision | None, str | None]:
    """Validate the model's output against the schema; returns (decision, None) or (None, what is wrong)."""
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, TypeError) as exc:
        return None, f"not JSON ({exc.__class__.__name__})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    extra = sorted(set(data) - set(SCHEMA["properties"]))
    missing = sorted(set(SCHEMA["required"]) - set(data))
    if extra or missing:
        return None, f"missing fields {missing}, unexpected fields {extra}"
    if data["category"] not in CATEGORIES:
        return None, f"category must be one of {list(CATEGORIES)}"
    if isinstance(data["priority"], bool) or data["priority"] not in (1, 2, 3):
        return None, "priority must be 1, 2 or 3"
    for key in ("summary", "reason"):
        if not isinstance(data[key], str) or not data[key].strip():
            return None, f"{key} must be a non-empty string"
    draft = data["reply_draft"]
    if draft is not None and not isinstance(draft, str):
        return None, "reply_draft must be a string or null"
    return (
        Decision(
            data["category"],
            data["priority"],
            " ".join(data["summary"].split())[:300],
            " ".join(data["reason"].split())[:400],
            draft.strip()[:4000] if isinstance(draft, str) and draft.strip() else None,
        ),
        None,
    )


def clean_draft(body: str, allowed_urls: set[str]) -> tuple[str, int]:
    """A draft without links that the original email did not contain; returns (text, links removed)."""
    removed = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal removed
        url = m.group(0).rstrip(".,;:!?")
        if url in allowed_urls:
            return m.group(0)
        removed += 1
        return "[link removed]" + m.group(0)[len(url) :]

    body = re.sub(r"(?i)\b(?:https?://|www\.)[^\s<>\"')\]]+", sub, body)
    body, n = re.subn(r"(?i)\bmailto:\S+", "[link removed]", body)
    return body[:4000], removed + n


def may_draft_to(sender: str, owner_address: str) -> bool:
    """A reply draft makes sense only for a real external sender (not ourselves, not a no-reply robot)."""
    local = sender.split("@")[0]
    return (
        bool(sender)
        and "@" in sender
        and sender.lower() != owner_address.lower()
        and not _NO_REPLY.search(local)
    )


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


def _call(deps: WorkerDeps, task: Task, step: str, prompt: prompts.RenderedPrompt, msgs: list[dict]) -> Any:
    max_tokens = deps.settings.clawback_mail_max_triage_tokens
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
            response_format=RESPONSE_FORMAT,
        )
    finally:
        deps.budget.settle(reservation, 0 if result is None or result.reused else result.total_tokens)
    return result


def decide(
    deps: WorkerDeps, task: Task, prompt: prompts.RenderedPrompt
) -> tuple[Decision | None, dict[str, Any]]:
    """Ask the model; one repair attempt on invalid output; None means a human must look."""
    msgs = prompt.messages()
    first = _call(deps, task, "triage", prompt, msgs)
    usage = {"prompt_tokens": first.prompt_tokens, "completion_tokens": first.completion_tokens, "calls": 1}
    decision, problem = parse_decision(first.content)
    if decision is not None:
        return decision, usage
    log.warning("task %s: invalid triage output (%s); asking once to repair", task.id, problem)
    repair_msgs = [
        *msgs,
        {"role": "assistant", "content": (first.content or "")[:2000]},
        {
            "role": "user",
            "content": f"That answer was invalid: {problem}. Reply again with only the JSON object "
            "matching the schema.",
        },
    ]
    second = _call(deps, task, "repair", prompt, repair_msgs)
    usage = {
        "prompt_tokens": usage["prompt_tokens"] + second.prompt_tokens,
        "completion_tokens": usage["completion_tokens"] + second.completion_tokens,
        "calls": 2,
    }
    decision, problem2 = parse_decision(second.content)
    if decision is None:
        usage["invalid"] = f"{problem}; after repair: {problem2}"
    return decision, usage


def render_prompt(
    task_id: str, msg: MailMessage, prepared: mail_text.PreparedEmail, owner: str, redactor: Any
):
    """The triage prompt for one email (redacted, inside boundary markers the email cannot forge)."""
    boundary = "<<" + hashlib.sha256(task_id.encode()).hexdigest()[:16] + ">>"
    body, counts = redactor.redact(prepared.text)
    subject, counts2 = redactor.redact(prepared.subject)

    def line(value: str) -> str:
        return " ".join(value.replace(boundary, "").split())[:300]

    recipients = len(msg.to) + len(msg.cc)
    prompt = prompts.render(
        PROMPT,
        owner_name=owner,
        sender=line(f"{msg.sender_name} <{msg.sender_email}>"),
        recipients=f"{recipients} recipient(s)" + (" including cc" if msg.cc else ""),
        subject=line(subject) or "(no subject)",
        received=msg.received_at.strftime("%Y-%m-%d %H:%M UTC"),
        notes=", ".join(prepared.notes + (["has attachments"] if msg.has_attachments else [])) or "none",
        boundary=boundary,
        body=body.replace(boundary, "") or "(no text)",
    )
    return prompt, sum(counts.values()) + sum(counts2.values())


def _skip(deps: WorkerDeps, task: Task, reason: str, **fields: Any) -> dict[str, Any]:
    log.info("task %s: email skipped: %s", task.id, reason)
    save_item(deps, task.id, status="skipped", reason=reason, **fields)
    return {"skipped": reason}


def triage(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Triage one email: decide, act within the owner's scopes, DM priority 1 at once."""
    address = task.payload["mailbox"]
    cfg = config_for(deps, address)
    if task.requester != cfg.owner:
        raise Denied(mail_messages.NOT_OWNER, reason=f"{task.requester} does not own {address}")
    item = ensure_item(deps, task)
    mailbox = mailbox_for(deps, address)
    with mail_errors(address):
        try:
            msg = mailbox.get_message(item.current_item_id)
        except MailNotFound:
            msg = None
    if msg is None:
        return _skip(deps, task, "the message is no longer in the mailbox")
    prepared = mail_text.prepare(
        msg.subject,
        msg.body_text,
        msg.body_html,
        budget_tokens=deps.settings.clawback_mail_body_tokens,
        attachments=msg.has_attachments,
    )
    sizes = {"raw_tokens": prepared.raw_tokens, "body_tokens": prepared.body_tokens}
    if prepared.is_empty:
        reason = "attachments only, no subject or text" if msg.has_attachments else "empty message"
        return _skip(deps, task, reason, **sizes)
    prompt, redactions = render_prompt(task.id, msg, prepared, f"<@{cfg.owner}>", redactor_for(deps.policy))
    decision, usage = decide(deps, task, prompt)
    tokens = {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"]}
    if decision is None:
        save_item(deps, task.id, status="needs_human", reason=usage.get("invalid"), **sizes, **tokens)
        return {
            "needs_human": True,
            "reason": usage.get("invalid"),
            **sizes,
            **tokens,
            "notes": prepared.notes,
        }
    save_item(
        deps,
        task.id,
        category=decision.category,
        priority=decision.priority,
        summary=decision.summary,
        **sizes,
        **tokens,
    )
    done, skipped = act(deps, task, cfg, mailbox, msg, decision)
    save_item(deps, task.id, status="triaged")
    result: dict[str, Any] = {
        "category": decision.category,
        "priority": decision.priority,
        "actions": done,
        "skipped_actions": skipped,
        "notes": prepared.notes,
        "redactions": redactions,
        "llm_calls": usage["calls"],
        **sizes,
        **tokens,
    }
    if decision.priority == 1:
        result["notified"] = notify_urgent(deps, task, cfg)
    return result


def act(
    deps: WorkerDeps, task: Task, cfg: MailboxConfig, mailbox: Mailbox, msg: MailMessage, decision: Decision
) -> tuple[list[str], dict[str, str]]:
    """Label, draft and move, each only with its scope; returns (done, skipped with reasons)."""
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
    wants_draft = decision.reply_draft and decision.category in DRAFT_CATEGORIES
    if wants_draft and not may_draft_to(msg.sender_email, cfg.address):
        skipped["mail.draft"] = "sender does not take replies"
    elif wants_draft and _allowed(deps, task, "mail.draft", cfg.address):
        source_urls = urls_in(msg.body_text or "", msg.body_html or "")
        body, removed = clean_draft(decision.reply_draft or "", source_urls)
        draft_id = actuator.draft_reply(task, msg.item_id, body)
        save_item(deps, task.id, draft_id=draft_id, draft_text=body, draft_status="open")
        done.append("mail.draft")
        if removed:
            skipped["links"] = f"{removed} link(s) not in the original removed from the draft"
    elif wants_draft:
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


def send_draft(deps: WorkerDeps, task: Task) -> dict[str, Any]:
    """Send the reply draft of a triaged email because its owner clicked "Send draft"."""
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
    edited = draft is not None and not mail_text.same_reply(draft.body_text, item.draft_text)
    save_item(deps, parent_id, draft_status="sending")
    MailboxActuator(mailbox, cfg, deps.db, deps.policy).send_draft(task, item.draft_id)
    save_item(deps, parent_id, draft_status="sent")
    ledger.record_outcome(
        deps.db, parent_id, "draft_sent", source="explicit", actor=task.requester, detail={"edited": edited}
    )
    if item.slack_channel and item.slack_ts:
        refresh_message(deps, item.slack_channel, item.slack_ts)
    to = ", ".join(draft.to) if draft is not None else item.sender or "the sender"
    SlackActuator(deps.slack, deps.db, deps.policy).notify(
        task, mail_messages.SENT_CONFIRMATION.format(to=to, subject=item.subject or "")
    )
    return {"sent": item.draft_id, "edited": edited}


INTENTS = {
    "triage": ("mail.read", triage),
    "mail_digest": ("mail.read", digest),
    "mail_send": ("mail.send", send_draft),
}
