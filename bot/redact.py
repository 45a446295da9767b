"""Redaction of secrets and card numbers before any text reaches the model (pure).

Placeholders keep text readable (``[REDACTED:aws_access_key]``); callers store the counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

_BUILTIN: list[tuple[str, str]] = [
    (
        "private_key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)",
    ),
    ("slack_token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}"),
    ("slack_app_token", r"\bxapp-\d-[A-Za-z0-9-]{10,}"),
    ("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+"),
    ("aws_access_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
    ("aws_secret_key", r"(?i)(?<=aws_secret_access_key)(\s*[:=]\s*[\"']?)[A-Za-z0-9/+=]{40,}"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
    ("openai_key", r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}"),
    ("url_password", r"(?<=://)([^\s:/@]+):([^\s@/]+)(?=@)"),
    ("password", r"(?i)\b(password|passwd|pwd)(\s*[:=]\s*)(\S+)"),
]
_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


@dataclass
class Redactor:
    """Applies the built-in patterns plus site-specific ``extra`` (name, regex) pairs."""

    extra: Iterable[tuple[str, str]] = ()
    _compiled: list[tuple[str, re.Pattern[str]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._compiled = [(n, re.compile(p)) for n, p in [*_BUILTIN, *self.extra]]

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """Return the redacted text and how many of each kind were replaced."""
        counts: Counter[str] = Counter()
        if not text:
            return text, counts
        for name, rx in self._compiled:
            text = rx.sub(lambda m, name=name: self._placeholder(name, m, counts), text)

        def card(m: re.Match[str]) -> str:
            digits = re.sub(r"\D", "", m.group(0))
            if 13 <= len(digits) <= 19 and _luhn_ok(digits):
                counts["card_number"] += 1
                return "[REDACTED:card_number]"
            return m.group(0)

        return _CARD.sub(card, text), counts

    @staticmethod
    def _placeholder(name: str, m: re.Match[str], counts: Counter[str]) -> str:
        counts[name] += 1
        tag = f"[REDACTED:{name}]"
        if name == "url_password":
            return f"{m.group(1)}:{tag}"  # keep the user name: it helps and is not the secret
        if name == "password":
            return f"{m.group(1)}{m.group(2)}{tag}"  # keep "password:" so the sentence still reads
        if name == "aws_secret_key":
            return f"{m.group(1)}{tag}"  # keep the separator so the sentence still reads
        return tag
