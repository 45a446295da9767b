"""`make demo` (README's first command) runs the whole pipeline and ends with an intact audit chain; the earned
autonomy section shows Carol's loop (suggest → her Post to thread ×2 → offer → Yes → auto → Not helpful ×2 →
suggest)."""

from __future__ import annotations

import io

from rich.console import Console

from bot.ops.demo import run_demo


def test_the_demo_runs_end_to_end() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False, color_system=None)
    assert run_demo(console) == 0
    text = out.getvalue()
    assert "chain intact" in text
    earned = text[text.index("5. Earned autonomy") : text.index("6. The ledger")]
    levels = [line.rstrip(" │").rsplit("│", 1)[-1].strip() for line in earned.splitlines() if line.startswith("│ ")]
    levels = [lvl for lvl in levels if lvl]
    assert levels[0] == "suggest" and "auto" in levels and levels[-1] == "suggest"
    assert "Clawback DMs an offer" in earned and "went back from *auto* to *suggest*" in earned
