"""Transcripts: a Slack mention or DM travels web → RQ → LLM → threaded reply, on real parts."""

from __future__ import annotations

import json
import re

from sqlalchemy import func, select

from bot.db import LLMCall, Outcome, Task
from tests.conftest import drain


def _tasks(deps):
    with deps.db.session() as s:
        return list(s.execute(select(Task).order_by(Task.created_at)).scalars())


def _llm_rows(deps):
    with deps.db.session() as s:
        return list(s.execute(select(LLMCall)).scalars())


def test_mention_is_answered_in_thread_with_exact_token_footer(slack, llm, sender, deps):
    """A mention in a thread gets one reply in that thread, with the API-reported token total and task id."""
    parent = slack.post("C0GENERAL", "Launch moves to March 3, Bob owns the checklist.", user="U0BOB")
    slack.post("C0GENERAL", "Thanks, noted.", user="U0CAROL", thread_ts=parent)
    reply = sender.mention("U0ALICE", "C0GENERAL", "when is the launch and who owns it?", thread_ts=parent)
    assert reply.status == 200
    assert llm.completions() == []  # nothing slow before the ack
    drain(deps)
    posts = slack.calls("chat.postMessage")
    assert len(posts) == 1
    post = posts[0]
    assert post["channel"] == "C0GENERAL" and post["thread_ts"] == parent
    assert post["unfurl_links"] in (False, "0", "false", "False") and post["unfurl_media"] in (
        False,
        "0",
        "false",
        "False",
    )
    (row,) = _llm_rows(deps)
    (task,) = _tasks(deps)
    assert task.status == "done" and task.surface == "mention" and task.requester == "U0ALICE"
    blocks_text = json.dumps(post["blocks"], ensure_ascii=False)
    total = row.prompt_tokens + row.completion_tokens
    assert f"total {total:,}" in blocks_text
    assert f"task `{task.id}`" in blocks_text
    assert "Resolved" in blocks_text and "Not helpful" in blocks_text
    assert row.prompt_name == "answer" and re.fullmatch(r"[0-9a-f]{12}", row.prompt_version)
    # the thread's history reached the model as context
    request = llm.completions()[0]
    user_msg = request["messages"][1]["content"]
    assert "Launch moves to March 3" in user_msg and "Thanks, noted." in user_msg


def test_dm_is_answered_in_the_dm(slack, llm, sender, deps):
    """A DM question is answered in the DM channel."""
    assert sender.dm("U0BOB", "D0BOB", "what is our on-call rotation?").status == 200
    drain(deps)
    (post,) = slack.calls("chat.postMessage")
    assert post["channel"] == "D0BOB"
    (task,) = _tasks(deps)
    assert task.surface == "dm" and task.status == "done"


def test_slack_retries_and_duplicate_deliveries_answer_once(slack, llm, sender, deps):
    """The same event_id delivered three times (two as Slack retries) → one task, one LLM call, one reply."""
    for retry in (None, 1, 2):
        r = sender.mention(
            "U0ALICE",
            "C0GENERAL",
            "status of the launch?",
            event_id="EvSAME123",
            retry_num=retry,
            ts="1700000000.000100",
        )
        assert r.status == 200
    drain(deps)
    assert len(_tasks(deps)) == 1
    assert len(llm.completions()) == 1
    assert len(slack.calls("chat.postMessage")) == 1


def test_bad_missing_and_stale_signatures_get_401_and_queue_nothing(sender, deps):
    """Unsigned, wrongly signed and stale requests are refused with 401; nothing is created or queued."""
    import json
    import time

    body = json.dumps(
        sender.event_envelope(
            {"type": "app_mention", "user": "U0ALICE", "text": "hi", "ts": "1.0", "channel": "C0GENERAL"}
        )
    ).encode()
    assert sender.post(body, "application/json", signed=False).status == 401
    assert sender.post(body, "application/json", signature="v0=" + "0" * 64).status == 401
    assert sender.post(body, "application/json", timestamp=int(time.time()) - 60 * 10).status == 401
    assert _tasks(deps) == []
    assert deps.queue.queues["interactive"].count == 0


def test_malformed_bodies_get_400(sender, deps):
    """Signed but malformed bodies are refused with 400 and create nothing."""
    assert sender.post(b"{not json", "application/json").status == 400
    assert sender.post(b"[1,2]", "application/json").status == 400
    assert sender.post(b"payload=%7Bbroken", "application/x-www-form-urlencoded").status == 400
    assert sender.post(b"\xff\xfe", "application/x-www-form-urlencoded").status == 400
    assert _tasks(deps) == []


def test_oversized_body_gets_413(sender, deps):
    """A body over the limit is refused before it is parsed."""
    assert sender.post(b"x" * (600 * 1024), "application/json").status == 413


def test_own_and_other_bot_messages_are_never_answered(slack, llm, sender, deps):
    """The bot's own message is dropped; another bot's is recorded as ignored; neither reaches the LLM."""
    assert sender.dm("U0CLAWBOT", "D0ALICE", "my own reply", bot_id="B0CLAWBOT").status == 200
    assert sender.mention("U0OTHERBOT", "C0GENERAL", "hello bot", bot_id="B0OTHER").status == 200
    drain(deps)
    tasks = _tasks(deps)
    assert [(t.status, t.trigger) for t in tasks] == [("ignored", "bot")]
    assert llm.completions() == [] and slack.calls("chat.postMessage") == []


def test_llm_429_then_success_is_retried_transparently(slack, llm, sender, deps):
    """A 429 with Retry-After is retried with backoff; the user gets one answer; only the success has tokens."""
    llm.script({"status": 429, "retry_after": 0})
    sender.mention("U0ALICE", "C0GENERAL", "summarise please")
    drain(deps)
    assert len(llm.completions()) == 2
    assert len(slack.calls("chat.postMessage")) == 1
    (task,) = _tasks(deps)
    assert task.status == "done"
    rows = _llm_rows(deps)
    assert sum(r.total_tokens for r in rows) == sum(r.total_tokens for r in rows if r.status == "ok") > 0


def test_llm_down_tells_user_and_fails_task(slack, llm, sender, deps):
    """When every attempt fails, the user is told in the thread with the task id and the task is failed."""
    llm.script(*[{"status": 503}] * 20)
    sender.mention("U0ALICE", "C0GENERAL", "are you there?", ts="1700000001.000100")
    drain(deps)
    (task,) = _tasks(deps)
    assert task.status == "failed" and "model unavailable" in (task.status_reason or "")
    (post,) = slack.calls("chat.postMessage")
    assert task.id in post["text"] and post["thread_ts"] == "1700000001.000100"
    rows = _llm_rows(deps)
    assert rows and all(r.status == "error" and r.total_tokens == 0 and not r.usage_reported for r in rows)


def test_feedback_click_records_outcome_and_updates_message(slack, llm, sender, deps):
    """Clicking Resolved records an explicit outcome and replaces the buttons with a visible note."""
    sender.mention("U0ALICE", "C0GENERAL", "what's the wifi password policy?", ts="1700000002.000100")
    drain(deps)
    (task,) = _tasks(deps)
    reply_ts = task.result["reply_ts"]
    r = sender.block_action(
        "U0ALICE",
        "feedback_resolved",
        task.id,
        channel="C0GENERAL",
        message_ts=reply_ts,
        thread_ts="1700000002.000100",
    )
    assert r.status == 200
    drain(deps)
    with deps.db.session() as s:
        outcomes = list(s.execute(select(Outcome)).scalars())
    assert [(o.kind, o.source, o.actor) for o in outcomes] == [("resolved", "explicit", "U0ALICE")]
    (update,) = slack.calls("chat.update")
    assert update["ts"] == reply_ts and "Marked as resolved" in update["text"]
    assert "feedback_resolved" not in json.dumps(update["blocks"])


def test_feedback_from_someone_else_is_refused(slack, llm, sender, deps):
    """Only the requester's click counts; others are told privately and no outcome is recorded."""
    sender.mention("U0ALICE", "C0GENERAL", "question", ts="1700000003.000100")
    drain(deps)
    (task,) = _tasks(deps)
    sender.block_action(
        "U0BOB", "feedback_not_helpful", task.id, channel="C0GENERAL", message_ts=task.result["reply_ts"]
    )
    drain(deps)
    with deps.db.session() as s:
        assert s.execute(select(func.count()).select_from(Outcome)).scalar_one() == 0
    (eph,) = slack.calls("chat.postEphemeral")
    assert eph["user"] == "U0BOB"


def test_follow_up_question_in_the_thread_is_a_weak_not_resolved(slack, llm, sender, deps):
    """Asking again in the same thread right after an answer records a weak outcome on the first answer."""
    parent = slack.post("C0GENERAL", "Q about the release", user="U0BOB")
    sender.mention("U0ALICE", "C0GENERAL", "when is the release?", thread_ts=parent, ts="1800000000.000100")
    drain(deps)
    sender.mention(
        "U0ALICE", "C0GENERAL", "no, I meant the EU one?", thread_ts=parent, ts="1800000000.000200"
    )
    drain(deps)
    first, second = _tasks(deps)
    with deps.db.session() as s:
        kinds = [(o.task_id, o.kind) for o in s.execute(select(Outcome)).scalars()]
    assert kinds == [(first.id, "followup_question")]


def test_housekeeping_marks_stale_tasks_none_and_runs_once_at_a_time(slack, llm, sender, deps):
    """The worker's periodic upkeep records `none` past the outcome window, under a lock."""
    from datetime import timedelta

    from sqlalchemy import update

    from bot.db import utcnow
    from bot.ops.worker import housekeeping_once

    sender.mention("U0ALICE", "C0GENERAL", "old question")
    drain(deps)
    with deps.db.session() as s:
        s.execute(
            update(Task).values(
                created_at=utcnow() - timedelta(days=10), finished_at=utcnow() - timedelta(days=10)
            )
        )
    assert housekeeping_once(deps)["outcomes_none"] == 1
    assert housekeeping_once(deps) == {}  # another worker holds the lock for this round
    with deps.db.session() as s:
        assert [o.kind for o in s.execute(select(Outcome)).scalars()] == ["none"]


def test_nul_characters_are_refused_as_malformed(sender, deps):
    """A NUL anywhere in a payload (never sent by Slack; PostgreSQL rejects it) is a 400, not a 500."""
    import json as _json

    body = _json.dumps(
        sender.event_envelope(
            {"type": "app_mention", "user": "U0ALICE", "text": "hi\x00", "ts": "1.0", "channel": "C0GENERAL"}
        )
    ).encode()
    assert sender.post(body, "application/json").status == 400
    assert (
        sender.post(
            b"command=%2Fusage&user_id=U0ALICE&text=a%00b", "application/x-www-form-urlencoded"
        ).status
        == 400
    )
    assert _tasks(deps) == []
