"""The report as one self-contained HTML file: inline CSS and SVG charts, no scripts, no network.

Charts: tokens vs accepted outcomes over time, cost per accepted outcome by intent, the outcome mix, and the
flags (with evidence when the report carries it). A Content-Security-Policy forbids every fetch, so the
file renders the same offline, in a mail attachment or an archive.
"""

from __future__ import annotations

from html import escape
from typing import Any

W, H = 720, 260
PAD_L, PAD_R, PAD_T, PAD_B = 64, 64, 20, 40
BLUE, GREEN, GREY, RED, AMBER = "#3b6ea5", "#2e8b57", "#9aa0a6", "#c0392b", "#d68910"
_STATE_COLOURS = {"awaiting": GREY, "none": "#c8ccd0", "failed": RED, "denied": AMBER, "pending": "#b0c4de"}


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return escape(str(v))


def _svg(chart_id: str, title: str, body: str, height: int = H) -> str:
    return (
        f'<svg id="{chart_id}" class="chart" role="img" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {W} {height}" width="{W}" height="{height}"><title>{escape(title)}</title>{body}</svg>'
    )


def timeline_chart(timeline: list[dict[str, Any]]) -> str:
    """Bars: tokens per day; line: accepted outcomes per day (own axis)."""
    days = [d for d in timeline if not d.get("suppressed")]
    if not days:
        return _svg("chart-timeline", "Tokens vs accepted outcomes", _empty("no data in this window"))
    max_tok = max((d["total_tokens"] or 0) for d in days) or 1
    max_acc = max((d["accepted_outcomes"] or 0) for d in days) or 1
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    step = plot_w / len(days)
    parts = [_axes(plot_w, plot_h)]
    points = []
    for i, d in enumerate(days):
        x = PAD_L + i * step
        bh = plot_h * (d["total_tokens"] or 0) / max_tok
        parts.append(
            f'<rect class="bar-tokens" x="{x + step * 0.1:.1f}" y="{PAD_T + plot_h - bh:.1f}" '
            f'width="{max(step * 0.8, 1):.1f}" height="{bh:.1f}" fill="{BLUE}" opacity="0.55">'
            f"<title>{escape(d['day'])}: {_fmt(d['total_tokens'])} tokens</title></rect>"
        )
        y = PAD_T + plot_h - plot_h * (d["accepted_outcomes"] or 0) / max_acc
        points.append(f"{x + step / 2:.1f},{y:.1f}")
        if len(days) <= 16 or i % max(1, len(days) // 8) == 0:
            parts.append(
                f'<text x="{x + step / 2:.1f}" y="{H - PAD_B + 16}" font-size="10" text-anchor="middle">'
                f"{escape(d['day'][5:])}</text>"
            )
    parts.append(
        f'<polyline class="line-accepted" points="{" ".join(points)}" fill="none" stroke="{GREEN}" '
        'stroke-width="2.5"/>'
    )
    parts.append(f'<text x="8" y="{PAD_T + 10}" font-size="11" fill="{BLUE}">tokens (max {max_tok:,})</text>')
    parts.append(
        f'<text x="{W - 8}" y="{PAD_T + 10}" font-size="11" fill="{GREEN}" text-anchor="end">'
        f"accepted (max {max_acc:,})</text>"
    )
    return _svg("chart-timeline", "Tokens vs accepted outcomes over time", "".join(parts))


def cost_per_intent_chart(rows: list[dict[str, Any]]) -> str:
    """Horizontal bars: cost per accepted outcome for each intent (suppressed or no outcome shown as text)."""
    if not rows:
        return _svg("chart-cost-per-intent", "Cost per accepted outcome by intent", _empty("no data"))
    values = [r["cost_per_accepted_outcome"] or 0 for r in rows if not r.get("suppressed")]
    top = max(values, default=0) or 1
    row_h = 26
    height = PAD_T + row_h * len(rows) + 20
    parts = []
    for i, r in enumerate(rows):
        y = PAD_T + i * row_h
        label = escape(str(r.get("intent")))
        parts.append(f'<text x="{PAD_L + 60}" y="{y + 16}" font-size="12" text-anchor="end">{label}</text>')
        if r.get("suppressed"):
            parts.append(
                f'<text x="{PAD_L + 70}" y="{y + 16}" font-size="11" fill="{GREY}">suppressed (fewer '
                "than k people)</text>"
            )
            continue
        v = r["cost_per_accepted_outcome"]
        if v is None:
            parts.append(
                f'<text x="{PAD_L + 70}" y="{y + 16}" font-size="11" fill="{GREY}">no accepted '
                "outcome yet</text>"
            )
            continue
        bw = (W - PAD_L - 70 - 120) * v / top
        parts.append(
            f'<rect class="bar-cost" x="{PAD_L + 70}" y="{y + 4}" width="{max(bw, 1):.1f}" '
            f'height="{row_h - 8}" '
            f'fill="{BLUE}"><title>{label}: ${v:.6f}</title></rect>'
            f'<text x="{PAD_L + 76 + bw:.1f}" y="{y + 16}" font-size="11">${v:,.4f}</text>'
        )
    return _svg("chart-cost-per-intent", "Cost per accepted outcome by intent", "".join(parts), height)


def outcome_mix_chart(mix: dict[str, int] | None, kinds: dict[str, dict[str, Any]]) -> str:
    """One stacked bar of tasks by outcome state, coloured by class, with a legend (None: suppressed)."""
    if mix is None:
        return _svg("chart-outcome-mix", "Outcome mix", _empty("suppressed (fewer than k people)"), 120)
    total = sum(mix.values())
    if not total:
        return _svg("chart-outcome-mix", "Outcome mix", _empty("no tasks"), 120)
    parts, x = [], float(PAD_L)
    width = W - PAD_L - PAD_R
    legend_y = 84
    for i, (name, n) in enumerate(sorted(mix.items(), key=lambda kv: kv[0])):
        cls = (kinds.get(name) or {}).get("class")
        colour = {"accepted": GREEN, "rejected": RED, "neutral": GREY}.get(
            cls or "", _STATE_COLOURS.get(name, GREY)
        )
        w = width * n / total
        parts.append(
            f'<rect class="mix-part" x="{x:.1f}" y="30" width="{w:.1f}" height="34" fill="{colour}" '
            f'stroke="#fff"><title>{escape(name)}: {n:,}</title></rect>'
        )
        x += w
        lx = PAD_L + (i % 4) * 160
        ly = legend_y + (i // 4) * 18
        parts.append(
            f'<rect x="{lx}" y="{ly - 10}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{ly}" font-size="11">{escape(name)} {n:,} ({n / total:.0%})</text>'
        )
    height = legend_y + 18 * ((len(mix) + 3) // 4) + 10
    return _svg("chart-outcome-mix", "Outcome mix", "".join(parts), height)


def _axes(plot_w: float, plot_h: float) -> str:
    return (
        f'<line x1="{PAD_L}" y1="{PAD_T + plot_h}" x2="{PAD_L + plot_w}" y2="{PAD_T + plot_h}" '
        'stroke="#555"/>'
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{PAD_T + plot_h}" stroke="#555"/>'
    )


def _empty(text: str) -> str:
    return f'<text x="{W / 2}" y="60" text-anchor="middle" font-size="13" fill="{GREY}">{escape(text)}</text>'


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in columns)
    body = []
    for r in rows:
        cells = "".join(f"<td>{_fmt(r.get(c), 0 if c.endswith('_ms') else 4)}</td>" for c in columns)
        body.append(f'<tr class="{"suppressed" if r.get("suppressed") else ""}">{cells}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _flags(doc: dict[str, Any]) -> str:
    flags = doc.get("flags")
    summary = doc.get("flags_summary")
    if flags is None:
        if summary is None:
            return "<p>Flags are not part of this view.</p>"
        items = "".join(f"<li>{escape(k)}: {n}</li>" for k, n in summary.items()) or "<li>none</li>"
        return f"<p>Counts only; details and evidence need <code>audit.read</code>.</p><ul>{items}</ul>"
    if not flags:
        return '<p id="flags-none">No flags in this window.</p>'
    out = ['<ul id="flags">']
    for f in flags:
        evidence = ", ".join(f"<code>{escape(t)}</code>" for t in f["evidence"])
        out.append(
            f'<li class="flag"><strong>{escape(f["kind"])}</strong> — {escape(f["subject"])}'
            f'<p>{escape(f["explanation"])}</p><p class="evidence">Evidence: {evidence}</p></li>'
        )
    out.append("</ul>")
    return "".join(out)


def _adoption(section: dict[str, Any] | None) -> str:
    """Earned autonomy's adoption KPIs (totals, then by action, level, intent and team), when there are any."""
    if not section or not (section.get("totals") or {}).get("decisions"):
        return ""
    cols = list(section.get("columns") or [])
    parts = [
        "<h2>Earned autonomy: adoption</h2>",
        '<p class="note">Success rate = accepted / judged, error rate = rejected / judged; minutes saved are '
        "estimates per outcome kind (<code>minutes_saved</code>), cost is the tasks' model cost.</p>",
        _table([section["totals"]], cols),
    ]
    for dim in ("action", "level", "intent", "team"):
        rows = section.get(f"by_{dim}") or []
        if rows:
            parts.append(f"<h3>By {escape(dim)}</h3>" + _table(rows, [dim, *cols]))
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}th{background:#f4f6f8}
tr.suppressed td{color:#999}.note{color:#555;font-size:13px}.flag p{margin:4px 0}
.evidence{font-size:11px;color:#555}svg.chart{background:#fbfcfd;border:1px solid #e4e7ea}
"""


def render_html(doc: dict[str, Any]) -> str:
    """The whole report as a self-contained HTML document."""
    totals = doc["totals"]
    kinds = (doc.get("definitions") or {}).get("outcome_kinds") or {}
    cols = [
        "tasks",
        "total_tokens",
        "cost",
        "accepted_outcomes",
        "acceptance_rate",
        "cost_per_accepted_outcome",
        "tokens_with_outcome_share",
        "latency_p50_ms",
        "latency_p95_ms",
    ]
    dims = doc.get("by") or []
    rows_html = ""
    if dims:
        rows_html = f"<h2>By {escape(' × '.join(dims))}</h2>" + _table(doc.get("rows") or [], [*dims, *cols])
    privacy = doc.get("privacy") or {}
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>Clawback report</title><style>{_CSS}</style></head>
<body>
<h1>Clawback — what the agent achieved per token</h1>
<p class="note">Window: {_fmt(doc.get("since") or "all time")} →
{_fmt(doc.get("until") or doc.get("generated_at"))}.
Viewer: {_fmt(doc.get("viewer"))}. Groups with fewer than {_fmt(privacy.get("k_anonymity"))} people are
suppressed ({_fmt(privacy.get("suppressed_groups"))} here). Rows are sorted by name, never by tokens.</p>
<h2>Totals</h2>
{_table([totals], cols)}
<h2>Tokens vs accepted outcomes over time</h2>
{timeline_chart(doc.get("timeline") or [])}
<h2>Cost per accepted outcome by intent</h2>
{cost_per_intent_chart(doc.get("by_intent") or [])}
<h2>Outcome mix</h2>
{outcome_mix_chart(doc.get("outcome_mix"), kinds)}
{rows_html}
{_adoption(doc.get("adoption"))}
<h2>Flags</h2>
<p class="note">Signals for a conversation, not verdicts.</p>
{_flags(doc)}
</body></html>
"""
