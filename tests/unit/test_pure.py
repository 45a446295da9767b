"""Unit tests of the pure pieces: context trimming, blocks, prompts, payload checks, sanitising, settings."""

from __future__ import annotations

import pytest

import prompts
from bot import messages
from bot.errors import ConfigError
from bot.ingress import message_key
from bot.llm import cost_of
from bot.settings import load_settings
from bot.slack.blocks import build_answer_blocks, build_feedback_done_blocks, split_answer_messages
from bot.text.redact import Redactor
from bot.text.safety import sanitize, split_text, urls_in
from bot.text.tokens import (
    ContextLine,
    clip_to_tokens,
    estimate_messages,
    estimate_tokens,
    trim_context,
    worst_case_tokens,
)
from handlers import payloads


def test_trim_context_drops_oldest_first_and_keeps_order():
    """The newest lines that fit stay, in their original order."""
    lines = [ContextLine(f"<@U{i}>", "x" * 40) for i in range(10)]
    kept, dropped = trim_context(lines, budget_tokens=40)
    assert dropped == len(lines) - len(kept) and kept == lines[-len(kept) :] and 0 < len(kept) < 10


def test_trim_context_empty_and_zero_budget():
    """Nothing fits in a zero budget; an empty thread stays empty."""
    assert trim_context([ContextLine("a", "b")], 0) == ([], 1)
    assert trim_context([], 100) == ([], 0)


def test_estimates_are_deterministic():
    """Typical: ASCII/4 + other bytes/3; reservations: UTF-8 bytes/3 plus framing; CJK is a token a character."""
    assert estimate_tokens("") == 0 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
    assert estimate_tokens("预算" * 100) == worst_case_tokens("预算" * 100) == 200  # characters / 4 said 50
    assert worst_case_tokens("abcd") == 2 and worst_case_tokens("x" * 300) == 100
    assert estimate_messages([{"role": "user", "content": "abcd"}]) == 2 + 4 + 3


def test_clip_to_tokens_marks_the_cut():
    """Long text is cut and marked; short text is untouched."""
    assert clip_to_tokens("short", 10) == "short"
    clipped = clip_to_tokens("y" * 1000, 10)
    assert estimate_tokens(clipped) <= 10 and len(clipped) > 30 and clipped.endswith("[…]")
    cjk = clip_to_tokens("预" * 1000, 10)  # cut on a character boundary, within the estimate
    assert estimate_tokens(cjk) <= 10 and cjk.endswith("[…]") and cjk.startswith("预")


def test_answer_blocks_have_footer_and_buttons():
    """An answer carries its text, the footer and two buttons valued with the task id."""
    blocks = build_answer_blocks("hello", "footer text", "t1")
    assert blocks[0]["text"]["text"] == "hello"
    assert blocks[-2]["elements"][0]["text"] == "footer text"
    assert [e["value"] for e in blocks[-1]["elements"]] == ["t1", "t1"]


def test_long_answers_split_into_messages_within_slack_limits():
    """A very long answer becomes several messages of ≤ 50 blocks, sections ≤ 3,000 chars, buttons on the last."""
    pages = split_answer_messages("word " * 40000, "f", "t1")
    assert len(pages) > 1 and all(len(p) <= 50 for p in pages)
    assert all(len(b["text"]["text"]) <= 3000 for p in pages for b in p if b["type"] == "section")
    assert pages[-1][-1]["type"] == "actions" and all(b["type"] != "actions" for p in pages[:-1] for b in p)


def test_split_text_never_loses_text():
    """Splitting keeps every word."""
    text = " ".join(f"w{i}" for i in range(5000))
    assert " ".join(split_text(text, 500)).split() == text.split()


def test_feedback_done_blocks_replace_buttons():
    """After a click the buttons are gone and a note says who rated it."""
    done = build_feedback_done_blocks(build_answer_blocks("a", "f", "t"), "Marked as resolved")
    assert (
        all(b["type"] != "actions" for b in done) and done[-1]["elements"][0]["text"] == "Marked as resolved"
    )


def test_footer_shows_total_with_separators():
    """The footer shows in/out/total tokens with thousands separators, the cost and the task id."""
    text = messages.footer("gpt-x", 1200, 345, 0.0123, "abc")
    assert "in 1,200 / out 345 / total 1,545" in text and "$0.0123" in text and "`abc`" in text


def test_prompt_render_is_strict_and_versioned():
    """Rendering fails on missing or unexpected values; the version is a content hash."""
    values = dict(requester_name="a", boundary="<<b>>", context="c", question="q")
    p = prompts.render("answer", **values)
    assert p.name == "answer" and len(p.version) == 12 and "q" in p.user
    with pytest.raises(prompts.PromptError, match="missing"):
        prompts.render("answer", requester_name="a")
    with pytest.raises(prompts.PromptError, match="unexpected"):
        prompts.render("answer", **values, extra=1)
    with pytest.raises(prompts.PromptError):
        prompts.render("../etc/passwd")


def test_prompt_values_cannot_inject_placeholders():
    """A value containing ${...} is inserted literally, not expanded."""
    p = prompts.render("answer", requester_name="a", boundary="<<b>>", context="${question}", question="Q!")
    assert "${question}" in p.user


@pytest.mark.parametrize(
    "event, expected",
    [
        ({"bot_id": "B1", "text": "x"}, True),
        ({"subtype": "bot_message"}, True),
        ({"user": "U0CLAWBOT"}, True),
        ({"user": "U0ALICE"}, False),
    ],
)
def test_is_bot_message(event, expected):
    """Bots (ours included) are recognised; people are not."""
    assert payloads.is_bot_message(event, "U0CLAWBOT") is expected


def test_thread_and_question_extraction():
    """A reply goes in the event's thread (or starts one); the leading mention is stripped."""
    assert payloads.thread_of({"ts": "1.0"}) == "1.0"
    assert payloads.thread_of({"ts": "2.0", "thread_ts": "1.0"}) == "1.0"
    assert payloads.question_text({"text": "<@U0CLAWBOT> what now?"}) == "what now?"
    assert payloads.question_text({"text": "<@U0CLAWBOT|clawback>, hi"}) == "hi"


def test_sanitize_keeps_source_links_and_defangs_others():
    """Links from the sources stay; new links, channel pings and unknown mentions are neutralised."""
    text, n = sanitize(
        "see https://ok.example/a and https://bad.example/b <!here> <@U1> <@U2>",
        allowed_urls=urls_in("ref https://ok.example/a."),
        allowed_users={"U1"},
    )
    assert "https://ok.example/a" in text and "https://bad.example" not in text
    assert "<!here>" not in text and "<@U1>" in text and "<@U2>" not in text and n == 3


def test_redactor_extra_patterns_and_card_luhn():
    """Site patterns apply; only Luhn-valid card numbers are redacted."""
    r = Redactor(extra=[("ticket", r"TKT-\d{4}")])
    text, counts = r.redact("TKT-1234 card 4111111111111111 order 4111111111111112")
    assert "TKT-1234" not in text and counts["ticket"] == 1 and counts["card_number"] == 1
    assert "4111111111111112" in text


def test_cost_uses_longest_prefix_then_default():
    """Prices resolve by exact name, longest prefix, then '*'."""
    prices = {
        "*": {"input": 1, "output": 1},
        "gpt-4o": {"input": 2.5, "output": 10},
        "gpt-4o-mini": {"input": 0.15, "output": 0.6},
    }
    assert cost_of(prices, "gpt-4o-mini-2024", 1_000_000, 0) == pytest.approx(0.15)
    assert cost_of(prices, "gpt-4o-2024", 0, 1_000_000) == pytest.approx(10)
    assert cost_of(prices, "other", 1_000_000, 1_000_000) == pytest.approx(2)


def test_settings_errors_name_the_variable(monkeypatch):
    """A bad value or a missing required setting names the variable."""
    monkeypatch.setenv("CLAWBACK_LLM_TIMEOUT", "-3")
    with pytest.raises(ConfigError, match="CLAWBACK_LLM_TIMEOUT"):
        load_settings(_env_file=None)
    monkeypatch.delenv("CLAWBACK_LLM_TIMEOUT")
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    settings = load_settings(_env_file=None)
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        settings.require("slack_signing_secret")
    monkeypatch.setenv("CLAWBACK_PRICES", "{not json")
    with pytest.raises(ConfigError, match="CLAWBACK_PRICES"):
        _ = load_settings(_env_file=None).prices


def test_settings_read_dotenv(tmp_path, monkeypatch):
    """Values come from .env when the environment does not set them."""
    monkeypatch.delenv("CLAWBACK_MODEL", raising=False)
    env = tmp_path / ".env"
    env.write_text("CLAWBACK_MODEL=from-dotenv\n")
    assert load_settings(_env_file=str(env)).clawback_model == "from-dotenv"


def test_message_key_fits_its_column_and_keeps_long_keys_apart():
    """Slack's ids make short keys, kept readable; a longer one (the column holds 160) is hashed, and two long
    keys that differ only at the end stay two keys, so the unique index never merges two messages."""
    assert message_key("T0CLAWBACK", "C0GENERAL", "1800000500.000100") == "slack-msg:T0CLAWBACK:C0GENERAL:1800000500.000100"
    assert message_key(None, "D0BOB", "1.2") == "slack-msg:-:D0BOB:1.2"
    a, b = message_key("T" * 200, "C1", "1.1"), message_key("T" * 200, "C1", "1.2")
    assert len(a) <= 160 and len(b) <= 160 and a != b
