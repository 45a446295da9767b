"""Reply drafts: who may get one (``may_get_draft``) and the call that writes it (``write_draft``), which
sees only that one email, whichever batch classified it."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import prompts
from bot.db import Task
from bot.errors import BudgetExceeded, RateLimited, TransientError
from bot.ingress import redactor_for
from bot.mail import messages as mail_messages
from bot.mail.base import MailMessage
from bot.mail.config import MailboxConfig
from workers.mail.decide import EmailBlock, ask_model, batch_keys, email_block
from workers.mail.items import prepare
from workers.runtime import WorkerDeps

log = logging.getLogger(__name__)

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
_NO_REPLY = re.compile(r"(no-?reply|do-?not-?reply|mailer-daemon|postmaster|notifications?|bounce)", re.I)


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
    block, _redactions = email_block(key, msg, prepare(deps, msg), redactor_for(deps.policy))
    prompt = render_draft(key, boundary, block)
    try:
        result = ask_model(
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
