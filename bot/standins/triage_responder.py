"""A deterministic triage "model" for the LLM stand-in: a keyword classifier answering the ``triage`` schema
(classification, no drafts) and the ``reply_draft`` schema (one email's reply draft).

Register both with ``register(llm)``. It reads every email of the prompt (each starts at a line
``<<boundary>> <id>``; the list ends at ``<<boundary>> end``), whatever the prompt put there (stripped text or
raw content), and answers ``{"decisions": [{"id": ..., ...}, ...]}``, or ``{"reply_draft": ...}`` for the
draft prompt. Each email is classified on its own, so the same email always gets the same decision, alone or
in a batch.
"""

from __future__ import annotations

import json
import re
from typing import Any

_START = re.compile(r"^(<<[0-9a-f]{16}>>) (\S+)$", re.M)
_FIELD = re.compile(r"^(From|Subject):[ \t]*(.*)$", re.M)
_HEADERS = ("From:", "To:", "Subject:", "Received:", "Notes:")

RULES: list[tuple[str, re.Pattern[str]]] = [
    (
        "phishing_spam",
        re.compile(
            r"ignore (all |any )?(previous|prior|above) instructions|dear assistant|\bAI assistant\b|"
            r"forward (all|every|this|these)\b.{0,40}\b(mail|emails?|messages?)|"
            r"verify your (account|password|identity)|password (expires|will expire)|gift cards?|"
            r"account (will be )?(suspended|locked)|"
            r"update your (banking|payment) details|wire transfer",
            re.I,
        ),
    ),
    (
        "newsletter",
        re.compile(
            r"unsubscribe|newsletter|view (it )?in (your )?browser|\d+% off|webinar|"
            r"weekly digest|manage (your )?preferences",
            re.I,
        ),
    ),
    (
        "notification",
        re.compile(
            r"\b(build|pipeline|job) (failed|passed|succeeded)|has shipped|your order|"
            r"\breceipt\b|invitation:|reminder:|automated (message|notification)|"
            r"\balert\b|password was changed",
            re.I,
        ),
    ),
    (
        "action_required",
        re.compile(
            r"please (review|approve|sign|submit|send|complete|update|confirm)|"
            r"action required|approval|deadline|\boverdue\b|by (monday|tuesday|"
            r"wednesday|thursday|friday|tomorrow|eod|end of (the )?day)",
            re.I,
        ),
    ),
    (
        "reply_needed",
        re.compile(
            r"\b(can|could|would|will) you\b[^?]{0,200}\?|\b(are|do) you\b[^?]{0,120}\?|"
            r"what do you think|let me know|any thoughts",
            re.I,
        ),
    ),
]
_URGENT = re.compile(r"\burgent\b|\basap\b|\btoday\b|immediately|\boverdue\b|\boutage\b|\bP1\b", re.I)
_ROBOT = re.compile(r"no-?reply|do-?not-?reply|notifications?@|alerts?@|mailer-daemon", re.I)
_LABELS = {
    "action_required": "Action required",
    "reply_needed": "Reply needed",
    "fyi": "FYI",
    "newsletter": "Newsletter",
    "notification": "Notification",
    "phishing_spam": "Suspected phishing/spam",
}


def emails_of(messages: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """(id, sender, subject, body) of every email in the first user message that carries emails."""
    for m in messages:
        content = m.get("content") or ""
        if m.get("role") != "user" or not isinstance(content, str):
            continue
        first = _START.search(content)
        if first is None:
            continue
        boundary = first.group(1)
        out: list[tuple[str, list[str]]] = []
        for line in content[first.start() :].split("\n"):
            start = _START.fullmatch(line)
            if start is not None and start.group(1) == boundary:
                if start.group(2) == "end":
                    break
                out.append((start.group(2), []))
            elif out:
                out[-1][1].append(line)
        return [(key, *_split(lines)) for key, lines in out]
    return []


def _split(lines: list[str]) -> tuple[str, str, str]:
    """(sender, subject, body) of one email's lines: header lines first, in the prompt's order."""
    n = 0
    for header in _HEADERS:  # in the prompt's order; the draft prompt shows only From and Subject
        if n < len(lines) and lines[n].startswith(header):
            n += 1
    fields = dict(_FIELD.findall("\n".join(lines[:n])))
    return fields.get("From", ""), fields.get("Subject", ""), "\n".join(lines[n:]).strip()


def classify(sender: str, subject: str, body: str) -> dict[str, Any]:
    """The decision for one email (pure and deterministic)."""
    text = f"{subject}\n{body}"
    category, matched = "fyi", None
    for name, rx in RULES:
        m = rx.search(text)
        if m:
            category, matched = name, m.group(0)
            break
    if category in ("action_required", "reply_needed", "fyi") and _ROBOT.search(sender):
        category, matched = "notification", "automated sender"
    urgent = bool(_URGENT.search(text))
    if category in ("action_required", "reply_needed"):
        priority = 1 if urgent else 2
    elif category == "notification" and urgent:
        priority = 1
    else:
        priority = 3
    name = (re.sub(r"<.*?>", "", sender).strip() or "there").split()[0]
    draft = None
    if category in ("action_required", "reply_needed") and not _ROBOT.search(sender):
        topic = subject.strip()[:80]
        draft = f"Hi {name},\n\nThanks for your message about “{topic}”. I'll get back to you shortly."
    return {
        "category": category,
        "priority": priority,
        "summary": f"{_LABELS[category]}: {subject.strip()[:90] or '(no subject)'}",
        "reason": f"matched “{matched[:40]}”" if matched else "no action or question found",
        "reply_draft": draft,
    }


def triage_responder(messages: list[dict[str, Any]], request: dict[str, Any]) -> str:
    """Structured-output responder for the ``triage`` JSON schema: one decision per email, by id (no draft:
    the schema has none)."""
    decisions = []
    for key, sender, subject, body in emails_of(messages):
        decision = classify(sender, subject, body)
        decision.pop("reply_draft")
        decisions.append({"id": key, **decision})
    return json.dumps({"decisions": decisions}, ensure_ascii=False)


def draft_responder(messages: list[dict[str, Any]], request: dict[str, Any]) -> str:
    """Structured-output responder for the ``reply_draft`` JSON schema: the draft for the prompt's email
    (null when it shows no email, or more than one)."""
    emails = emails_of(messages)
    draft = classify(*emails[0][1:])["reply_draft"] if len(emails) == 1 else None
    return json.dumps({"reply_draft": draft}, ensure_ascii=False)


def register(llm: Any) -> None:
    """Register both responders on an ``LLMStandIn``."""
    llm.register_responder("triage", triage_responder)
    llm.register_responder("reply_draft", draft_responder)
