"""Token estimates and context trimming (pure).

The estimate is ceil(characters / 4) per text plus 4 tokens of framing per chat message: the usual
rule of thumb for English with OpenAI tokenizers. It is used to budget context and reserve budget
before a call; the ledger always records the usage the API reported, never this estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """Approximate token count of ``text``."""
    return math.ceil(len(text) / 4) if text else 0


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
    """Cut ``text`` to about ``budget_tokens`` tokens, marking the cut."""
    limit = budget_tokens * 4
    return text if len(text) <= limit else text[: max(0, limit - len(marker))] + marker
