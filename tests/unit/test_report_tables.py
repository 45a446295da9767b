"""`clawback report` tables for people: readable at 80 columns by default (no "answ…", no "0.00…"), every metric
with --wide, costs in dollars and rates as %; progress bars only on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from bot.measure.report import METRIC_COLUMNS, NARROW_COLUMNS, format_metric, report_tables
from bot.ops.progress import progress_bar, wanted


def _row(**keys) -> dict:
    row = dict.fromkeys(METRIC_COLUMNS)
    row.update(
        tasks=12_345,
        prompt_tokens=9_876_543,
        completion_tokens=1_234_567,
        total_tokens=11_111_110,
        cost=1234.56789,
        tokens_with_outcome_share=0.4321,
        accepted_outcomes=4_321,
        rejected_outcomes=99,
        acceptance_rate=0.9776,
        weighted_acceptance_rate=0.95,
        tokens_per_accepted_outcome=2571.4,
        cost_per_accepted_outcome=0.285713,
        correction_rate=0.043,
        latency_p50_ms=850.0,
        latency_p95_ms=4200.0,
        suppressed=False,
    )
    row.update(keys)
    return row


DOC = {
    "by": [],
    "totals": _row(),
    "by_intent": [
        _row(intent="answer"),
        _row(intent="deploy_execute"),
        _row(intent="summarize_thread", suppressed=True),
    ],
    "by_surface": [_row(surface="mention"), _row(surface="email", cost=0.0042)],
}


def _render(wide: bool, width: int = 80) -> str:
    out = []
    for table in report_tables(DOC, wide=wide):
        console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
        if wide:  # as the CLI does: a console as wide as the table needs
            need = Console(width=10_000).measure(table).maximum
            console = Console(width=max(width, need), record=True, file=io.StringIO(), color_system=None)
        console.print(table)
        out.append(console.export_text())
    return "".join(out)


def test_default_tables_fit_80_columns_without_cutting():
    """Before: nine columns squeezed into 80 cut values to "answ…" and "0.00…"."""
    text = _render(wide=False)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    for value in ("deploy_execute", "answer", "$1,234.57", "$0.2857", "43%", "98%", "11.1M", "12,345", "$0.0042"):
        assert value in text, value
    assert "hidden" in text  # a suppressed group shows no numbers


def test_wide_tables_show_every_metric_unsqueezed():
    text = _render(wide=True)
    assert "…" not in text
    for header in ("p95", "correction rate", "rollback rate", "tokens/accepted", "denied"):
        assert header in text, header
    assert "4.2 s" in text and "850 ms" in text and "4.3%" in text


def test_numbers_formatted_for_people():
    assert [format_metric("cost", v) for v in (0, 0.00012, 0.5, 12.345)] == ["$0", "$0.0001", "$0.5000", "$12.35"]
    assert [format_metric("acceptance_rate", v) for v in (0, 0.05, 0.5, 1)] == ["0%", "5.0%", "50%", "100%"]
    assert format_metric("tokens_with_outcome_share", None) == "—"
    assert format_metric("total_tokens", 999) == "999" and format_metric("total_tokens", 4_200_000) == "4.2M"
    assert [c for c, _ in NARROW_COLUMNS] == [
        "tasks",
        "total_tokens",
        "cost",
        "tokens_with_outcome_share",
        "acceptance_rate",
        "cost_per_accepted_outcome",
    ]


def test_progress_only_on_a_terminal():
    """Not a terminal (a pipe, a file, the JSON output's consumer): the update callback draws nothing."""
    assert wanted(io.StringIO()) is False
    with progress_bar("x", enabled=False) as update:
        update(1, 2, "step")  # a no-op


def test_audit_verify_reports_progress(db):
    """`audit verify` hears of every 1,000 entries checked, against the count the head announces."""
    from bot import audit

    for i in range(2000):
        audit.record(db, actor="cli", action="test.entry", decision="info", details={"i": i})
    calls: list[tuple[int, int]] = []
    audit.verify(db, key="k", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1000, 2000), (2000, 2000)]


def test_report_reports_progress_steps(db):
    from bot.measure.report import build_report

    steps: list[tuple[int, int, str]] = []
    build_report(db, progress=lambda done, total, step: steps.append((done, total, step)))
    assert steps[0][2] == "refreshing facts" and steps[-1][0] == len(steps)
    assert all(done <= total for done, total, _ in steps)


def test_cli_report_at_80_columns(db, tmp_path):
    """`clawback report` in an 80-column terminal: nothing cut; `--wide` adds every metric, also uncut."""
    from typer.testing import CliRunner

    from bot.ops.cli import app

    env = {"DATABASE_URL": db.url, "COLUMNS": "80", "CLAWBACK_HOME": str(tmp_path / "home")}
    out = CliRunner().invoke(app, ["report"], env=env)
    assert out.exit_code == 0, out.output
    assert "…" not in out.stdout and max(len(line) for line in out.stdout.splitlines()) <= 80
    assert "By intent" in out.stdout and "$/accepted" in out.stdout
    wide = CliRunner().invoke(app, ["report", "--wide"], env=env)
    assert wide.exit_code == 0 and "…" not in wide.stdout and "p95" in wide.stdout


def test_progress_bar_draws_on_stderr_when_enabled(capsys):
    """Forced on (as on a terminal): a bar on stderr, nothing on stdout, gone when done (transient)."""
    with progress_bar("verifying", enabled=True) as update:
        update(500, 1000, "half")
        update(1000, 1000)
    captured = capsys.readouterr()
    assert captured.out == ""


def test_log_lines_print_above_a_live_bar_not_through_it():
    """A log handler writing to the terminal the bar is on goes through the bar's console while the bar is
    live (the line lands above it, not torn by a redraw), and gets its own stream back afterwards."""
    import logging

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    from rich.console import Console

    raw, screen = Terminal(), io.StringIO()
    handler = logging.StreamHandler(raw)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with progress_bar("syncing", console=Console(file=screen, force_terminal=True, width=80)) as update:
            logging.getLogger("bot.test").warning("page 1 read")  # before the first update: no bar yet
            update(1, 3, "a@example.com")
            logging.getLogger("bot.test").warning("page 2 read")
            update(3, 3, "a@example.com")
        logging.getLogger("bot.test").warning("after the bar")
    finally:
        root.removeHandler(handler)
    assert raw.getvalue() == "page 1 read\nafter the bar\n"
    assert "page 2 read" in screen.getvalue() and "syncing: a@example.com" in screen.getvalue()
