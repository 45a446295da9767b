"""Attack (issue 11, item 5): a hostile HTML email pins a triage worker with quadratic parsing.

One 396 KB email of unmatched end tags kept a worker busy for 50 s: every end tag scanned the whole stack of
open elements, and the standard library's parser rescans to the end of the body for every unclosed ``</``,
``<!`` or ``<``. The text extraction must do work linear in the body's size. Unit tests count work, never
time it: the Python steps taken (traced) and the characters the tokenizer scanned (its own count); the
wall-clock comparison with a benign email of the same size is ``bench/p7_hostile_html.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from bot.mail import text

SIZE = text.MAX_HTML_CHARS

HOSTILE: dict[str, Callable[[int], str]] = {
    "unmatched end tags": lambda n: ("<b>" * (n // 40) + "</i>" * n)[:n],
    "unclosed end-tag openers": lambda n: ("</" * n)[:n],
    "unclosed declarations": lambda n: ("<!" * n)[:n],
    "bare less-than signs": lambda n: "<" * n,
    "unclosed CDATA": lambda n: ("<![" * n)[:n],
    "processing instructions": lambda n: ("<?" * n)[:n],
    "deep nesting": lambda n: ("<div>" * n)[:n],
    "unterminated comments": lambda n: ("<!--" * n)[:n],
    "unterminated quotes": lambda n: ("<a b='" + '<i c="' * n)[:n],
    "unclosed script": lambda n: ("<script>" + "</scrip" * n)[:n],
}


def _python_steps(fn: Callable[[], object]) -> int:
    """How many Python lines run inside ``fn`` (every frame, the standard library's included)."""
    steps = 0

    def tracer(frame, event, arg):  # noqa: ANN001 - sys.settrace's signature
        nonlocal steps
        if event == "line":
            steps += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return steps


def test_unmatched_end_tags_cost_linear_python_work():
    """Twice the unmatched end tags over twice the open elements: about twice the steps, not four times."""
    small, large = 2_000, 4_000

    def hostile(n: int) -> str:
        return "<b>" * (n // 4) + "</i>" * n

    ratio = _python_steps(lambda: text.html_to_text(hostile(large))) / _python_steps(
        lambda: text.html_to_text(hostile(small))
    )
    assert ratio < 2.5, f"doubling the input multiplied the work by {ratio:.1f}"


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_hostile_body_is_scanned_a_bounded_number_of_times(shape):
    """Each hostile body of the largest size read is scanned at most a few times over, and its text is
    never larger than the body."""
    html = HOSTILE[shape](SIZE)
    out, scanned = text.extract(html)
    assert scanned <= 3 * len(html), f"{shape}: scanned {scanned:,} characters of {len(html):,}"
    assert len(out) <= len(html)


def test_hostile_markup_does_not_hide_the_visible_text():
    """Unmatched end tags and stray openers around real content: the content still comes through."""
    html = (
        "<p>Hello <b>Emma</b></p>" + "</i>" * 5000 + "<<</ <!x <p>see <a href='https://a.example/x'>this</a>"
    )
    out = text.html_to_text(html)
    assert out.startswith("Hello Emma") and "see this [a.example]" in out
