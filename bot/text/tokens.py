"""Token estimates and context trimming (pure).

Two estimates, both in UTF-8 terms so that non-English text is not under-counted (the old characters / 4
rule counted 7,200 CJK characters as 1,800 tokens; tokenizers bill about 7,200):

- ``estimate_tokens``, the typical size: ASCII at 4 characters a token, anything else at 3 UTF-8 bytes a
  token (a CJK character is one token). It sizes content: context trimming, clipping an email to its
  budget, batch planning.
- ``worst_case_tokens`` and ``estimate_messages``, what a budget reservation holds: ceil(UTF-8 bytes / 3)
  per text (a third more than typical for English) plus 4 tokens of framing per chat message and 3 per
  request. Every caller reserves ``estimate_messages(messages) + max_tokens`` before the call.

The ledger always records the usage the API reported, never an estimate. (``tiktoken`` is not used: it
downloads its encodings at run time, and one estimate everywhere keeps reservations predictable.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MESSAGE_OVERHEAD = 4
BYTES_PER_TOKEN = 3


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def estimate_tokens(text: str) -> int:
    """Typical token count of ``text``: ceil(ASCII characters / 4 + other UTF-8 bytes / 3)."""
    if not text:
        return 0
    ascii_chars = len(text.encode("ascii", "ignore"))
    return -(-(3 * ascii_chars + 4 * (_utf8_len(text) - ascii_chars)) // 12)


def worst_case_tokens(text: str) -> int:
    """Conservative token count of ``text`` for budget reservations: ceil(UTF-8 bytes / 3)."""
    return math.ceil(_utf8_len(text) / BYTES_PER_TOKEN) if text else 0


def estimate_messages(messages: Sequence[dict[str, str]]) -> int:
    """Conservative prompt tokens of chat messages, framing included: what a reservation holds."""
    return sum(worst_case_tokens(m.get("content") or "") + MESSAGE_OVERHEAD for m in messages) + 3


@dataclass(frozen=True)
class ContextLine:
    """One earlier message in a thread: who said it and what."""

    author: str
    text: str

    def render(self) -> str:
        """The line as the prompt shows it."""
        return f"{self.author}: {self.text}"


def trim_context(lines: Sequence[ContextLine], budget_tokens: int) -> tuple[list[ContextLine], int]:
    """Keep the newest lines that fit ``budget_tokens``, dropping oldest first; returns (kept, dropped)."""
    kept: list[ContextLine] = []
    used = 0
    for line in reversed(lines):
        cost = estimate_tokens(line.render()) + 1
        if used + cost > budget_tokens:
            break
        kept.append(line)
        used += cost
    kept.reverse()
    return kept, len(lines) - len(kept)


def clip_to_tokens(text: str, budget_tokens: int, marker: str = " […]") -> str:
    """Cut ``text`` to at most ``budget_tokens`` typical tokens (whole characters), marking the cut."""
    if estimate_tokens(text) <= budget_tokens:
        return text
    room = max(0, budget_tokens - estimate_tokens(marker))
    lo, hi = 0, min(len(text), room * 4)  # no character costs less than a quarter token
    while lo < hi:  # the longest prefix within ``room``
        mid = (lo + hi + 1) // 2
        if estimate_tokens(text[:mid]) <= room:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + marker
