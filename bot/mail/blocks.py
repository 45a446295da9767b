"""Block Kit builders for the triage digest and priority-1 notices (pure)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from bot.mail import messages
from bot.mail.config import CATEGORIES, CATEGORY_LABELS
from bot.text.safety import sanitize

MAIL_RIGHT = "mail_right"
MAIL_WRONG = "mail_wrong"
MAIL_SEND_DRAFT = "mail_send_draft"
MAIL_DISCARD_DRAFT = "mail_discard_draft"
MAIL_CONFIRM_SEND = "mail_confirm_send"
# Earned autonomy (only with an [autonomy] section): Apply a proposal, Dismiss them, Undo an automatic move.
MAIL_APPLY = {
    "mail.move": "mail_apply_move",
    "mail.categorize": "mail_apply_label",
    "mail.draft": "mail_apply_draft",
}
MAIL_DISMISS = "mail_dismiss"
MAIL_UNDO_MOVE = "mail_undo_move"
_APPLY_TEXT = {"mail.move": "Apply move", "mail.categorize": "Apply label", "mail.draft": "Apply: save draft"}
PREVIEW_MAX_CHARS = 12_000  # a longer draft is not offered for sending from Slack
_PREVIEW_CHUNK = 2_900  # under Slack's 3,000 characters per section text
MAX_BLOCKS = 50
PER_ITEM = 3
_PRIORITY = {1: ":red_circle: P1", 2: ":large_orange_circle: P2", 3: ":white_circle: P3"}


@dataclass(frozen=True)
class ItemView:
    """What a digest shows of one triaged email (taken from a ``MailItem``)."""

    task_id: str
    owner: str
    subject: str
    sender: str
    status: str
    category: str | None
    priority: int | None
    summary: str
    draft_status: str | None
    feedback: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    draft_note: str = ""  # why no draft was saved, when one was refused
    # Earned autonomy (empty without an [autonomy] section): pending proposals as (action, text), whether an
    # automatic move may still be undone, and notes on proposals applied or dismissed.
    proposals: tuple[tuple[str, str], ...] = ()
    undo_move: bool = False
    autonomy_notes: tuple[str, ...] = ()


def escape(text: str, owner: str) -> str:
    """Untrusted text made inert for mrkdwn: no markup, no links that were not there, no mass mentions."""
    text = (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = " ".join(text.split())
    return sanitize(text, allowed_urls=set(), allowed_users={owner})[0]


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def build_item_blocks(item: ItemView) -> list[dict[str, Any]]:
    """One email: a summary section, a context line, and the buttons that are still meaningful."""
    subject = escape(item.subject or "(no subject)", item.owner)[:150]
    sender = escape(item.sender, item.owner)[:100]
    if item.status == "needs_human":
        head = f":grey_question: *Needs you* — {subject}\n_From {sender}_ · {messages.NEEDS_HUMAN}"
    else:
        label = CATEGORY_LABELS.get(item.category or "", item.category or "?")
        badge = _PRIORITY.get(item.priority or 3, "")
        summary = escape(item.summary, item.owner)[:300]
        head = f"{badge} *{label}* — {subject}\n_From {sender}_ · {summary}"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": head[:2900]}}]
    tokens = item.prompt_tokens + item.completion_tokens
    notes = [f"tokens {tokens:,}", f"task `{item.task_id}`"]
    if item.feedback == "right":
        notes.insert(0, messages.CONFIRMED.format(user=item.owner))
    elif (item.feedback or "").startswith("wrong:"):
        label = CATEGORY_LABELS.get(item.feedback.split(":", 1)[1], "?")
        notes.insert(0, messages.CORRECTED.format(label=label, user=item.owner))
    if item.draft_status in ("sent", "sending"):
        notes.insert(0, messages.DRAFT_SENT.format(user=item.owner))
    elif item.draft_status == "discarded":
        notes.insert(0, messages.DRAFT_DISCARDED.format(user=item.owner))
    elif item.draft_status == "used":
        notes.insert(0, messages.DRAFT_USED)
    elif item.draft_status == "refused" and item.draft_note:
        notes.insert(0, escape(item.draft_note, item.owner)[:400])
    notes[:0] = [*(text for _a, text in item.proposals), *item.autonomy_notes]
    blocks.append(_context(" · ".join(notes)))
    elements: list[dict[str, Any]] = []
    if item.feedback is None and item.status == "triaged":
        elements.append(_button(MAIL_RIGHT, "Right", item.task_id))
        elements.append(
            {
                "type": "static_select",
                "action_id": MAIL_WRONG,
                "placeholder": {"type": "plain_text", "text": "Wrong category"},
                "options": [
                    {
                        "text": {"type": "plain_text", "text": CATEGORY_LABELS[c]},
                        "value": f"{item.task_id}:{c}",
                    }
                    for c in CATEGORIES
                    if c != item.category
                ],
            }
        )
    if item.draft_status == "open":
        elements.append(_button(MAIL_SEND_DRAFT, "Send draft", item.task_id, style="primary"))
        elements.append(_button(MAIL_DISCARD_DRAFT, "Discard draft", item.task_id))
    for action, _text in item.proposals:
        elements.append(_button(MAIL_APPLY[action], _APPLY_TEXT[action], item.task_id, style="primary"))
    if item.proposals:
        elements.append(_button(MAIL_DISMISS, "Dismiss", item.task_id))
    if item.undo_move:
        elements.append(_button(MAIL_UNDO_MOVE, "Undo move", item.task_id))
    if elements:
        blocks.append({"type": "actions", "block_id": f"mail:{item.task_id}", "elements": elements})
    return blocks


def _button(action_id: str, text: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "value": value,
        "text": {"type": "plain_text", "text": text},
    }
    if style:
        button["style"] = style
    return button


def overflow_text(items: list[ItemView]) -> str:
    """One line summing up the items a digest does not show one by one."""
    counts = Counter(CATEGORY_LABELS.get(i.category or "", "needs you") for i in items)
    breakdown = ", ".join(f"{n} {label}" for label, n in counts.most_common())
    return messages.OVERFLOW.format(count=len(items), breakdown=breakdown)


def build_digest_pages(
    header: str, items: list[ItemView], overflow: str | None
) -> list[list[dict[str, Any]]]:
    """Digest messages, each under Slack's 50-block limit: a header, the items, the overflow line."""
    per_page = (MAX_BLOCKS - 2) // PER_ITEM
    pages: list[list[dict[str, Any]]] = []
    for start in range(0, max(len(items), 1), per_page):
        page: list[dict[str, Any]] = []
        if start == 0:
            page.append({"type": "header", "text": {"type": "plain_text", "text": header[:150]}})
        for item in items[start : start + per_page]:
            page.extend(build_item_blocks(item))
        pages.append(page)
    if overflow:
        pages[-1].append(_context(overflow))
    return pages


def build_send_preview_blocks(
    task_id: str, fingerprint: str, *, to: list[str], cc: list[str], subject: str, text: str
) -> list[dict[str, Any]]:
    """The exact reply and recipients, shown before anything is sent, with a "Confirm send" button bound to
    their fingerprint. Everything from the mail is plain text: nothing in it is rendered as markup."""

    def plain(value: str) -> dict[str, Any]:
        return {"type": "section", "text": {"type": "plain_text", "text": value or " ", "emoji": False}}

    people = ", ".join(to) + (f" (cc {', '.join(cc)})" if cc else "")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": messages.SEND_PREVIEW_HEADER}},
        plain(f"To: {people}"[:_PREVIEW_CHUNK]),
        plain(f"Subject: {subject}"[:_PREVIEW_CHUNK]),
    ]
    body = (text or "").strip()
    if len(body) > PREVIEW_MAX_CHARS:
        blocks.append(_context(messages.SEND_PREVIEW_TOO_LONG.format(chars=len(body))))
        return blocks
    blocks.append({"type": "divider"})
    blocks.extend(plain(body[i : i + _PREVIEW_CHUNK]) for i in range(0, max(len(body), 1), _PREVIEW_CHUNK))
    blocks.append({"type": "divider"})
    blocks.append(_context(messages.SEND_PREVIEW_NOTE))
    blocks.append(
        {
            "type": "actions",
            "block_id": f"mail-send:{task_id}",
            "elements": [
                _button(MAIL_CONFIRM_SEND, messages.CONFIRM_SEND, f"{task_id}:{fingerprint}", style="primary")
            ],
        }
    )
    return blocks
