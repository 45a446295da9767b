"""Block Kit builders (pure functions returning lists of blocks)."""

from __future__ import annotations

from typing import Any

from bot.text.safety import split_text

FEEDBACK_RESOLVED = "feedback_resolved"
FEEDBACK_NOT_HELPFUL = "feedback_not_helpful"
MAX_BLOCKS = 50


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def build_answer_blocks(answer: str, footer: str, task_id: str) -> list[dict[str, Any]]:
    """An answer: its text in sections, the token/cost footer, and the two feedback buttons."""
    sections = [_section(chunk) for chunk in split_text(answer or "_(empty answer)_")]
    return [
        *sections,
        _context(footer),
        {
            "type": "actions",
            "block_id": f"feedback:{task_id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": FEEDBACK_RESOLVED,
                    "value": task_id,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Resolved"},
                },
                {
                    "type": "button",
                    "action_id": FEEDBACK_NOT_HELPFUL,
                    "value": task_id,
                    "text": {"type": "plain_text", "text": "Not helpful"},
                },
            ],
        },
    ]


def split_answer_messages(answer: str, footer: str, task_id: str) -> list[list[dict[str, Any]]]:
    """Answer blocks split across messages so none exceeds Slack's 50-block limit; buttons on the last."""
    sections = [_section(chunk) for chunk in split_text(answer or "_(empty answer)_")]
    per = MAX_BLOCKS - 2
    pages = [sections[i : i + per] for i in range(0, len(sections), per)] or [[]]
    tail = build_answer_blocks("x", footer, task_id)[-2:]
    return [*pages[:-1], pages[-1] + tail]


def build_feedback_done_blocks(blocks: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """The same message with its buttons replaced by a note saying who rated it and how."""
    kept = [b for b in blocks if b.get("type") != "actions"]
    return [*kept, _context(note)]


AUTONOMY_YES = "autonomy_yes"
AUTONOMY_NOT_NOW = "autonomy_not_now"


def build_offer_blocks(offer_id: int, text: str) -> list[dict[str, Any]]:
    """A promotion offer: its text with the evidence, a **Yes** button (label starts with "Yes") and "Not now"."""
    return [
        _section(text),
        {
            "type": "actions",
            "block_id": f"autonomy:{offer_id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": AUTONOMY_YES,
                    "value": str(offer_id),
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Yes, go ahead"},
                },
                {
                    "type": "button",
                    "action_id": AUTONOMY_NOT_NOW,
                    "value": str(offer_id),
                    "text": {"type": "plain_text", "text": "Not now"},
                },
            ],
        },
    ]


def build_offer_answered_blocks(text: str, note: str) -> list[dict[str, Any]]:
    """The offer after its answer: the text, no buttons, a note saying what was decided."""
    return [_section(text), _context(note)]


# chat.reply.channel at suggest (and shadow): the answer goes to the asker privately, with these two buttons.
POST_TO_THREAD = "answer_post_to_thread"
DISMISS_ANSWER = "answer_dismiss"


def build_suggested_answer_pages(
    answer: str, footer: str, decision_id: int, note: str
) -> list[list[dict[str, Any]]]:
    """The private copy of an answer: ``note`` first, the text and footer, then **Post to thread** and Dismiss
    (on the last page; the value is the autonomy decision's id)."""
    sections = [_section(chunk) for chunk in split_text(answer or "_(empty answer)_")]
    per = MAX_BLOCKS - 3
    pages = [sections[i : i + per] for i in range(0, len(sections), per)] or [[]]
    buttons = {
        "type": "actions",
        "block_id": f"suggested:{decision_id}",
        "elements": [
            {
                "type": "button",
                "action_id": POST_TO_THREAD,
                "value": str(decision_id),
                "style": "primary",
                "text": {"type": "plain_text", "text": "Post to thread"},
            },
            {
                "type": "button",
                "action_id": DISMISS_ANSWER,
                "value": str(decision_id),
                "text": {"type": "plain_text", "text": "Dismiss"},
            },
        ],
    }
    pages[0] = [_context(note), *pages[0]]
    return [*pages[:-1], pages[-1] + [_context(footer), buttons]]
