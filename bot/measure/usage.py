"""The person's own ``/usage`` text: pure (numbers in, mrkdwn out), shared by the listener and the Home job.

It lives here, not in ``workers.measure``, so that ``handlers/usage.py`` does not import a worker module.
"""

from __future__ import annotations

from typing import Any


def _money(v: float | None) -> str:
    return "—" if v is None else f"${v:,.4f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def build_usage_text(numbers: dict[str, Any], days: int, *, autonomy: list[str] | None = None) -> str:
    """The ``/usage`` answer: the person's own totals and per-intent lines (mrkdwn), and their autonomy
    levels in brief when given (``bot.autonomy.build_standing_lines``)."""
    t = numbers["totals"]
    lines = [
        f"*Your usage, last {days} day{'s' if days != 1 else ''}*",
        f"{t['tasks']:,} tasks · {t['total_tokens']:,} tokens · {_money(t['cost'])}",
        f"Accepted outcomes: {t['accepted_outcomes']:,} (acceptance {_pct(t['acceptance_rate'])}) · "
        f"cost per accepted outcome {_money(t['cost_per_accepted_outcome'])}",
    ]
    for r in numbers["by_intent"]:
        lines.append(
            f"• {r['intent']}: {r['tasks']:,} tasks, {r['total_tokens']:,} tokens, "
            f"{r['accepted_outcomes']:,} accepted, {_money(r['cost_per_accepted_outcome'])} per accepted"
        )
    if not numbers["by_intent"]:
        lines.append("No requests in this window.")
    if autonomy:
        lines.append("*What Clawback may do for you* (accepted/judged at the level):")
        lines.extend(autonomy)
    lines.append("_Only you can see this._")
    return "\n".join(lines)
