"""What a reply draft may carry, whatever the mailbox backend: nothing its own email does not contain.

A draft is written by a model that read untrusted mail, possibly beside other emails. Code, not the model,
decides what may leave: a draft may hold no email address, no link (bare domains such as ``evil.test/reset``
included) and no number of four or more digits (however it is grouped: ``48 29 17`` is one number) that its
own email lacks — subject, bodies (quoted history and hidden parts included) and headers. A draft that breaks
the rule is not saved; the reasons say what kind of thing was refused, never the thing itself.

The draft that is sent is bound to what its owner saw: ``fingerprint`` hashes the exact text and recipients
shown, and the send refuses when the draft in the mailbox no longer matches.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from html import unescape

from bot.mail.base import MailMessage
from bot.mail.text import normalize

# Bounded repetitions keep every pattern linear on hostile input (a 400 KB run of letters or "a.a.a").
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}"
)
_STOP = r"[^\s<>\"'()\[\]{}|\\^`]"
_LINK = re.compile(
    r"(?i)(?:\b(?:https?|ftp|mailto|tel|sms|data|javascript|file):(?://)?" + _STOP + r"+"
    r"|\b(?:[a-z0-9][a-z0-9-]{0,62}\.){1,8}[a-z][a-z0-9-]{1,62}\b(?:[/:?#]" + _STOP + r"*)?)"
)
_NUMBER = re.compile(r"(?<![0-9])[0-9](?:[ \u00a0.,/-]?[0-9])*")
_SCHEME = re.compile(r"(?i)^(?:https?|ftp|mailto|tel|sms|data|javascript|file):(?://)?")
MIN_DIGITS = 4
MAX_SOURCE_CHARS = 1_000_000  # of each body; a draft may not repeat what lies beyond


def _link_forms(token: str) -> tuple[str, str]:
    """(the link without scheme, ``www.``, case and trailing punctuation; its host) for comparison."""
    bare = _SCHEME.sub("", token.rstrip(".,;:!?").lower()).removeprefix("www.").rstrip("/")
    host = re.split(r"[/:?#]", bare, maxsplit=1)[0]
    return bare, host


def _digits(token: str) -> str:
    return re.sub(r"[^0-9]", "", token)


@dataclass(frozen=True)
class SourceTokens:
    """The addresses, links, hosts and numbers an email contains."""

    addresses: frozenset[str]
    links: frozenset[str]
    numbers: frozenset[str]


def source_tokens(msg: MailMessage) -> SourceTokens:
    """Everything in ``msg`` a draft may repeat: subject, text and HTML bodies (quoted and hidden parts
    included, character references decoded) and the sender and recipient addresses."""
    html = (msg.body_html or "")[:MAX_SOURCE_CHARS]
    text = "\n".join([msg.subject or "", (msg.body_text or "")[:MAX_SOURCE_CHARS], unescape(html)])
    addresses = {a.lower() for a in _ADDRESS.findall(text)}
    addresses |= {a.lower() for a in [msg.sender_email, *msg.to, *msg.cc] if a}
    links: set[str] = set()
    for m in _LINK.finditer(_ADDRESS.sub(" ", text)):
        bare, host = _link_forms(m.group(0))
        links |= {bare, host}
    links |= {a.split("@", 1)[1] for a in addresses if "@" in a}
    numbers = {_digits(m.group(0)) for m in _NUMBER.finditer(text)}
    numbers |= set(re.findall(f"[0-9]{{{MIN_DIGITS},}}", text))
    return SourceTokens(frozenset(addresses), frozenset(links), frozenset(numbers))


def check_draft(draft: str, source: MailMessage) -> list[str]:
    """Why ``draft`` may not be saved as a reply to ``source`` (empty when it may)."""
    allowed = source_tokens(source)
    text = normalize(draft)
    problems: list[str] = []
    addresses = [a for a in _ADDRESS.findall(text) if a.lower() not in allowed.addresses]
    if addresses:
        problems.append(f"{len(addresses)} email address(es) the email does not contain")
    links = [
        m.group(0)
        for m in _LINK.finditer(_ADDRESS.sub(" ", text))
        if _link_forms(m.group(0))[0] not in allowed.links
    ]
    if links:
        problems.append(f"{len(links)} link(s) or domain(s) the email does not contain")
    numbers = [
        n
        for n in (_digits(m.group(0)) for m in _NUMBER.finditer(text))
        if len(n) >= MIN_DIGITS and n not in allowed.numbers
    ]
    if numbers:
        problems.append(f"{len(numbers)} number(s) of {MIN_DIGITS}+ digits the email does not contain")
    return problems


def fingerprint(body_text: str, recipients: Iterable[str], subject: str = "") -> str:
    """A hash binding a send to the exact draft text, recipients and subject its owner was shown."""
    core = normalize(body_text or "")
    people = ",".join(sorted({r.strip().lower() for r in recipients if r and r.strip()}))
    return hashlib.sha256(f"{people}\n{normalize(subject or '')}\n{core}".encode()).hexdigest()[:32]


def draft_fingerprint(draft: MailMessage) -> str:
    """The fingerprint of a draft as the mailbox holds it (its text, To, Cc and subject)."""
    return fingerprint(draft.body_text, [*draft.to, *draft.cc], draft.subject)
