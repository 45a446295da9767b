"""Acting on a stored decision: label, draft and move, each only with its scope (``act``), a refused draft on
record, and the owner's DM for a priority-1 email (``notify_urgent``)."""

from __future__ import annotations

from typing import Any

from bot import audit, autonomy, ledger
from bot.db import Task
from bot.errors import TransientError
from bot.mail import messages as mail_messages
from bot.mail.autonomy import GOVERNED, decisions_for, governs
from bot.mail.base import Mailbox, MailMessage
from bot.mail.blocks import build_item_blocks
from bot.mail.config import CATEGORY_LABELS, LABEL_CATEGORIES, MailboxConfig
from bot.mail.drafts import check_draft
from workers.mail.actuator import MailboxActuator, post_owner_dm
from workers.mail.decide import Decision
from workers.mail.draft import DRAFT_CATEGORIES, DraftAnswer, may_draft_to, may_get_draft, write_draft
from workers.mail.items import fetch, load_item, save_item, skip_email, views_of
from workers.runtime import WorkerDeps


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
        msg = fetch(mailbox, cfg.address, load_item(deps, task.id).current_item_id)  # type: ignore[union-attr]
    if msg is None:
        result = skip_email(deps, task, "the message is no longer in the mailbox", **sizes, **tokens)
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
    levels = levels_for(deps, task, decision.category)
    draft: DraftAnswer | None = None
    if levels.get("mail.draft") == "shadow":
        pass  # decided and recorded only: no reply is written for a draft nobody will see
    elif decision.category in DRAFT_CATEGORIES and may_get_draft(
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
    done, skipped = act(deps, task, cfg, mailbox, msg, decision, draft, levels)
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
    if levels:
        result["autonomy"] = levels
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


def levels_for(deps: WorkerDeps, task: Task, category: str) -> dict[str, str]:
    """The earned-autonomy level of each governed mail action for this email ({} without ``[autonomy]``)."""
    policy = deps.policy.current
    if not governs(policy):
        return {}
    return {
        a: autonomy.level_for(deps.db, policy, task.requester, a, category, intent=task.intent)
        for a in GOVERNED
    }


def _decided(
    deps: WorkerDeps, task: Task, levels: dict[str, str], action: str, category: str, **detail: Any
) -> bool:
    """Record the governed decision (once per task and action, so a retry records nothing new); returns True
    when Clawback acts now (``auto`` or not governed), False when it only proposes or watches."""
    level = levels.get(action)
    if level is None:
        return True
    if not any(d.action == action for d in decisions_for(deps.db, [task.id])[task.id]):
        did = autonomy.record_decision(
            deps.db, task_id=task.id, user=task.requester, action=action, category=category, level=level,
            detail=detail,
        )  # fmt: skip
        if level != "auto":
            audit.record(
                deps.db,
                actor="clawback",
                on_behalf_of=task.requester,
                action=action,
                decision="info",
                task_id=task.id,
                scope=action,
                details={"decision_id": did, "level": level, "proposal": detail, "effect": "not done"},
            )
    return level == "auto"


def act(
    deps: WorkerDeps,
    task: Task,
    cfg: MailboxConfig,
    mailbox: Mailbox,
    msg: MailMessage,
    decision: Decision,
    draft: DraftAnswer | None = None,
    levels: dict[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Label, draft and move, each only with its scope and at its earned-autonomy level (``levels``; none: act
    as without an ``[autonomy]`` section); returns (done, skipped with reasons). At ``suggest`` and ``shadow``
    the decision is recorded and nothing is done (a proposed draft is kept on the record, unsaved).

    A draft is saved only when it came from ``write_draft`` (a call that saw this email alone) and holds no
    address, link or long number the email lacks (``bot.mail.drafts``); otherwise the item says why."""
    actuator = MailboxActuator(mailbox, cfg, deps.db, deps.policy)
    levels = levels or {}
    done: list[str] = []
    skipped: dict[str, str] = {}
    category = decision.category
    label = CATEGORY_LABELS[category]
    if _allowed(deps, task, "mail.categorize", cfg.address):
        if _decided(deps, task, levels, "mail.categorize", category, label=label):
            # Keep the owner's own categories; replace any earlier triage label.
            keep = [c for c in msg.categories if c.lower() not in LABEL_CATEGORIES]
            actuator.categorize(task, msg.item_id, [*keep, label], level=levels.get("mail.categorize"))
            save_item(deps, task.id, label=label)
            done.append("mail.categorize")
    else:
        skipped["mail.categorize"] = "missing scope"
    wants_draft = decision.category in DRAFT_CATEGORIES
    if wants_draft and not may_draft_to(msg.sender_email, cfg.address):
        skipped["mail.draft"] = "sender does not take replies"
    elif (
        wants_draft
        and levels.get("mail.draft") == "shadow"
        and may_get_draft(deps.policy.current, task.requester, cfg.address, msg)
        and _allowed(deps, task, "mail.draft", cfg.address)
    ):
        _decided(deps, task, levels, "mail.draft", category, draft=True)
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
        elif _decided(deps, task, levels, "mail.draft", category, draft=True, chars=len(body)):
            draft_id = actuator.draft_reply(
                task,
                msg.item_id,
                body,
                source=msg,
                internet_message_id=msg.internet_message_id or None,
                level=levels.get("mail.draft"),
            )
            save_item(deps, task.id, draft_id=draft_id, draft_text=body, draft_status="open")
            done.append("mail.draft")
        else:  # suggest: kept on the record until the owner's Apply saves it
            save_item(deps, task.id, draft_text=body, draft_status="proposed")
    elif draft is not None:
        skipped["mail.draft"] = "missing scope"
    folder = cfg.folder_for(category)
    if folder and _allowed(deps, task, "mail.move", cfg.address):
        if _decided(deps, task, levels, "mail.move", category, folder=folder):
            new_id = actuator.move(task, msg.item_id, folder, level=levels.get("mail.move"))
            save_item(deps, task.id, current_item_id=new_id or msg.item_id, folder=folder)
            done.append("mail.move")
    elif folder:
        skipped["mail.move"] = "missing scope"
    return done, skipped


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


def notify_urgent(deps: WorkerDeps, task: Task, cfg: MailboxConfig) -> str:
    """DM the owner a priority-1 email at once, with its buttons; returns the message ts."""
    item = load_item(deps, task.id)
    assert item is not None
    header = mail_messages.URGENT_HEADER.format(mailbox=cfg.address)
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": header}},
        *build_item_blocks(views_of(deps, [item], cfg.owner)[0]),
    ]
    channel, ts = post_owner_dm(deps.slack, deps.db, task, key="mail.urgent", text=header, blocks=blocks)
    save_item(deps, task.id, slack_channel=channel, slack_ts=ts)
    return ts
