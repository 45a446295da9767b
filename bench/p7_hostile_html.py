"""P7: reading a hostile HTML email costs about what a benign one of the same size costs (issue 11, item 5).

Each hostile shape (unmatched end tags, unclosed ``</``, ``<!``, ``<``, comments, quotes, scripts, deep
nesting) is built at the largest size triage reads (``bot.mail.text.MAX_HTML_CHARS``) and converted with
``bot.mail.text.prepare``, the worker's own path; the baseline is a benign newsletter-like email of the same
size converted in the same run. The figure is the worst hostile/benign time ratio; the bound it is checked
against is ``BOUND`` (a linear parser keeps it small; the old quadratic one took minutes per email).
``python -m bench.p7_hostile_html``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bot.mail.text import MAX_HTML_CHARS, prepare
from tests.security.test_hostile_html import HOSTILE

BOUND = 10.0  # worst hostile/benign time ratio accepted


def benign(size: int) -> str:
    """A benign HTML email of ``size`` characters: paragraphs, emphasis and links."""
    unit = (
        "<p>Hello Emma, here is the weekly update with <b>numbers</b>, <i>notes</i> and "
        "<a href='https://news.example/a'>a link</a>.</p>\n"
    )
    return (unit * (size // len(unit) + 1))[:size]


def _time(html: str, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        prepare("Weekly update", None, html, budget_tokens=1500)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run(size: int = MAX_HTML_CHARS, repeat: int = 3) -> dict[str, Any]:
    """Time every hostile shape against the benign baseline; returns the figures."""
    base = _time(benign(size), repeat)
    shapes = {}
    for name, make in sorted(HOSTILE.items()):
        seconds = _time(make(size), repeat)
        shapes[name] = {"seconds": round(seconds, 4), "ratio": round(seconds / base, 2)}
    worst = max(shapes, key=lambda k: shapes[k]["ratio"])
    result = {
        "size": size,
        "benign_seconds": round(base, 4),
        "shapes": shapes,
        "worst_shape": worst,
        "ratio": shapes[worst]["ratio"],
        "bound": BOUND,
        "within_bound": shapes[worst]["ratio"] <= BOUND,
    }
    for name, r in shapes.items():
        print(f"  {name:26s} {r['seconds']:8.4f} s  {r['ratio']:6.2f}x benign")
    print(f"  benign {base:.4f} s; worst {worst} {result['ratio']}x (bound {BOUND}x)")
    return result


if __name__ == "__main__":
    run()
