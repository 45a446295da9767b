"""Token estimates and context trimming (pure).

The estimate is ceil(UTF-8 bytes / 3) per text plus 4 tokens of framing per chat message. It is meant to
err high: English runs about 4 characters (bytes) per token with OpenAI tokenizers, and Chinese, Japanese
or Korean text about one token per character (3 bytes), where the old characters / 4 rule under-counted
fourfold. It budgets context and reserves budget before a call; the ledger always records the usage the
API reported, never this estimate. (A real tokenizer is not used: ``tiktoken`` downloads its encodings at
run time, and one estimate everywhere keeps reservations predictable.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MESSAGE_OVERHEAD = 4
BYTES_PER_TOKEN = 3


def estimate_tokens(text: str) -> int:
    """Conservative token count of ``text``: ceil(UTF-8 bytes / 3)."""
    return math.ceil(len(text.encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN) if text else 0


def estimate_messages(messages: Sequence[dict[str, str]]) -> int:
    """Approximate prompt tokens of chat messages, framing included."""
    return sum(estimate_tokens(m.get("content") or "") + MESSAGE_OVERHEAD for m in messages) + 3


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
    """Cut ``text`` to at most ``budget_tokens`` estimated tokens (whole characters), marking the cut."""
    if estimate_tokens(text) <= budget_tokens:
        return text
    room = max(0, budget_tokens * BYTES_PER_TOKEN - len(marker.encode()))
    return text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore") + marker
