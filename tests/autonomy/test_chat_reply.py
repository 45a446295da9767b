"""Transcripts: channel answers at the asker's earned level (``chat.reply.channel``), over signed events and
block_actions to the web app, the RQ worker and the Slack stand-in.

suggest → private answer → Post to thread ×N → offer → Yes → auto answers in the thread → Not helpful
×demote_after → demoted → the next answer is private again; plus the refusals, shadow, and the sweep.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import autonomy, controls
from bot.db import Action, AuditEntry, AutonomyDecision, AutonomyOffer, Outcome, Task, utcnow
from bot.slack.blocks import (
    AUTONOMY_YES,
    DISMISS_ANSWER,
    FEEDBACK_NOT_HELPFUL,
    FEEDBACK_RESOLVED,
    POST_TO_THREAD,
)
from tests.autonomy.conftest import POLICY
from tests.conftest import drain
from workers import measure
from workers.chat_reply import decision_of

CH, DM = "C0GENERAL", "D0ALICE"
ACTION = "chat.reply.channel"
RULE = """
[autonomy.actions."chat.reply.channel"]
start = "{start}"
max = "auto"
promote_after = 3
promote_min_acceptance = 0.8
window = 4
demote_after = 2
"""


@pytest.fixture
def start() -> str:
    """Where everyone starts for channel answers (parametrize to change)."""
    return "suggest"


@pytest.fixture
def policy_file(tmp_path: Path, start: str) -> Path:
    """The autonomy test policy plus a rule for channel answers (promote after 3, demote at 2 in 4)."""
    path = tmp_path / "policy.toml"
    path.write_text(POLICY + RULE.format(start=start))
    return path


def ask(sender, deps, text: str = "when is the launch?", user: str = "U0ALICE") -> Task:
    """A mention in #general (a new thread each time), answered by the worker; returns its task."""
    assert sender.mention(user, CH, text).status == 200
    drain(deps)
    with deps.db.read() as s:
        return s.execute(select(Task).order_by(Task.created_at.desc()).limit(1)).scalar_one()


def in_thread(slack, task: Task) -> list:
    """The bot's messages in the task's thread."""
    return [m for m in slack.bot_messages(CH) if m.thread_ts == task.thread_ts]


def decision(deps, task: Task) -> AutonomyDecision:
    """The task's channel-answer decision."""
    found = decision_of(deps.db, task.id)
    assert found is not None
    return found


def private_copy(slack, deps, task: Task):
    """The asker's private copy of the answer to ``task`` (the DM whose buttons carry its decision)."""
    d = decision(deps, task)
    (msg,) = [m for m in slack.bot_messages(DM) if m.ts == d.detail["dm_ts"]]
    return msg


def buttons(msg) -> list[str]:
    """Labels of the message's buttons."""
    return [e["text"]["text"] for b in msg.blocks if b["type"] == "actions" for e in b["elements"]]


def click(sender, deps, user: str, action_id: str, value: str, channel: str = DM, ts: str = "1.0") -> None:
    """A signed block_actions click, then the worker."""
    assert sender.block_action(user, action_id, value, channel=channel, message_ts=ts).status == 200
    drain(deps)


def post_to_thread(slack, sender, deps, task: Task, user: str = "U0ALICE") -> None:
    msg = private_copy(slack, deps, task)
    click(sender, deps, user, POST_TO_THREAD, str(decision(deps, task).id), ts=msg.ts)


def level(deps) -> str:
    return autonomy.level_for(deps.db, deps.policy.current, "U0ALICE", ACTION)


def audit_actions(deps) -> list[tuple[str, str, str]]:
    with deps.db.read() as s:
        rows = s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
        return [(r.action, r.actor, r.decision) for r in rows]


def test_suggest_post_offer_yes_auto_demote_and_private_again(slack, llm, sender, deps):
    """The whole loop, driven by Alice's clicks only."""
    # suggest: the answer reaches Alice privately, nothing in the thread
    first = ask(sender, deps)
    assert in_thread(slack, first) == []
    msg = private_copy(slack, deps, first)
    assert buttons(msg) == ["Post to thread", "Dismiss"]
    assert f"<#{CH}>" in json.dumps(msg.blocks) and first.result["autonomy_level"] == "suggest"
    shown = msg.text

    # Post to thread ×3: the exact text shown goes to the thread, the private copy says so
    post_to_thread(slack, sender, deps, first)
    (posted,) = in_thread(slack, first)
    assert posted.text == shown and "Resolved" in json.dumps(posted.blocks)
    assert "posted this answer to the thread" in private_copy(slack, deps, first).text
    assert buttons(private_copy(slack, deps, first)) == []
    for _ in range(2):
        post_to_thread(slack, sender, deps, ask(sender, deps))

    # offer → Yes → auto
    (offer_msg,) = [m for m in slack.bot_messages(DM) if "right 3 of your last 3 channel answers" in m.text]
    assert "answer in channel threads for you from now on" in offer_msg.text
    with deps.db.read() as s:
        (offer,) = s.execute(select(AutonomyOffer)).scalars()
    click(sender, deps, "U0ALICE", AUTONOMY_YES, str(offer.id), ts=offer_msg.ts)
    assert level(deps) == "auto"

    # auto: answered in the thread at once; Not helpful ×2 demotes
    for n in range(2):
        task = ask(sender, deps)
        (reply,) = in_thread(slack, task)
        assert task.result["autonomy_level"] == "auto" and "Post to thread" not in json.dumps(reply.blocks)
        click(sender, deps, "U0ALICE", FEEDBACK_NOT_HELPFUL, task.id, channel=CH, ts=reply.ts)
        assert level(deps) == ("auto" if n == 0 else "suggest")
    (notice,) = [m for m in slack.bot_messages(DM) if "went back from" in m.text]
    assert "*auto* to *suggest*" in notice.text and "wait for your Post to thread again" in notice.text
    # each corrected answer: the question's first words, linked to the answer in the thread
    corrected = [line for line in notice.text.splitlines() if line.startswith("• ")]
    assert len(corrected) == 2 and "task `" not in notice.text
    assert all(
        line.startswith(f"• <https://standin.slack.local/archives/{CH}/p")
        and line.endswith("|“when is the launch?”>")
        for line in corrected
    )

    # private again
    last = ask(sender, deps)
    assert in_thread(slack, last) == [] and buttons(private_copy(slack, deps, last)) == [
        "Post to thread",
        "Dismiss",
    ]

    # the level is on every action row; the audit has each step
    with deps.db.read() as s:
        rows = s.execute(select(Action.task_id, Action.target, Action.autonomy_level)).all()
        verdicts = [
            d.verdict for d in s.execute(select(AutonomyDecision).order_by(AutonomyDecision.id)).scalars()
        ]
    by_task = {(t, target): lvl for t, target, lvl in rows}
    assert by_task[(first.id, DM)] == "suggest" and by_task[(first.id, CH)] == "suggest"
    assert by_task[(task.id, CH)] == "auto" and by_task[(last.id, DM)] == "suggest"
    assert verdicts == ["accepted"] * 3 + ["rejected"] * 2 + [None]
    steps = [a for a, _, _ in audit_actions(deps)]
    for step in ("answer.post", "autonomy.offered", "autonomy.promoted", "autonomy.demoted"):
        assert step in steps


def test_post_to_thread_twice_posts_once(slack, llm, sender, deps):
    """A double click: one post in the thread, one outcome, one verdict."""
    task = ask(sender, deps)
    post_to_thread(slack, sender, deps, task)
    post_to_thread(slack, sender, deps, task)
    assert len(in_thread(slack, task)) == 1
    with deps.db.read() as s:
        kinds = [o.kind for o in s.execute(select(Outcome).where(Outcome.task_id == task.id)).scalars()]
    assert kinds == ["answer_posted"]
    assert decision(deps, task).verdict == "accepted"


def test_someone_else_cannot_post_or_dismiss(slack, llm, sender, deps):
    """Bob's clicks on Alice's private answer are refused privately and audited; nothing is posted or judged."""
    task = ask(sender, deps)
    d = decision(deps, task)
    click(sender, deps, "U0BOB", POST_TO_THREAD, str(d.id), channel=CH)
    click(sender, deps, "U0BOB", DISMISS_ANSWER, str(d.id), channel=CH)
    assert in_thread(slack, task) == []
    told = [c["text"] for c in slack.calls("chat.postEphemeral") if c.get("user") == "U0BOB"]
    assert len(told) == 2 and all("Only the person who asked" in t for t in told)
    assert ("answer.post", "U0BOB", "deny") in audit_actions(deps)
    assert ("answer.dismiss", "U0BOB", "deny") in audit_actions(deps)
    assert decision(deps, task).verdict is None
    assert buttons(private_copy(slack, deps, task)) == ["Post to thread", "Dismiss"]


def test_dismiss_rejects_and_a_later_post_does_nothing(slack, llm, sender, deps):
    """Dismiss: rejected, nothing posted, the private copy says so; Post to thread afterwards posts nothing."""
    task = ask(sender, deps)
    d = decision(deps, task)
    click(sender, deps, "U0ALICE", DISMISS_ANSWER, str(d.id), ts=private_copy(slack, deps, task).ts)
    assert decision(deps, task).verdict == "rejected"
    assert "dismissed this answer" in private_copy(slack, deps, task).text
    click(sender, deps, "U0ALICE", POST_TO_THREAD, str(d.id))
    assert in_thread(slack, task) == []


def test_post_to_thread_checks_again_at_the_click(slack, llm, sender, deps):
    """Paused after the answer was sent privately: the click posts nothing, Alice is told, nothing is judged."""
    task = ask(sender, deps)
    controls.pause(deps.db, by="U0ADMIN", user="U0ALICE", reason="test")
    post_to_thread(slack, sender, deps, task)
    assert in_thread(slack, task) == []
    assert ("answer.post_to_thread", "clawback", "deny") in audit_actions(deps)
    assert decision(deps, task).verdict is None


@pytest.mark.parametrize("start", ["shadow"])
def test_shadow_answers_privately_and_earns_nothing(slack, llm, sender, deps):
    """Shadow: the asker still gets the answer privately and may post it; decisions are judged none."""
    for _ in range(4):
        task = ask(sender, deps)
        assert in_thread(slack, task) == [] and task.result["autonomy_level"] == "shadow"
        post_to_thread(slack, sender, deps, task)
        assert len(in_thread(slack, task)) == 1
        assert decision(deps, task).verdict == "none"
    with deps.db.read() as s:
        assert s.execute(select(AutonomyOffer)).first() is None
    assert level(deps) == "shadow"


def test_no_click_within_the_window_is_none(slack, llm, sender, deps):
    """The outcome sweep marks the unanswered answer none, and its decision with it."""
    task = ask(sender, deps)
    measure.sweep(deps.db, deps.settings, now=utcnow() + timedelta(days=30), policy=deps.policy.current)
    assert decision(deps, task).verdict == "none"


def test_resolved_at_auto_is_accepted(slack, llm, sender, deps):
    """At auto, Resolved under the answer in the thread accepts the decision."""
    autonomy.set_level(
        deps.db,
        deps.policy.current,
        user="U0ALICE",
        action=ACTION,
        category=None,
        level="auto",
        actor="U0ADMIN",
    )
    task = ask(sender, deps)
    (reply,) = in_thread(slack, task)
    click(sender, deps, "U0ALICE", FEEDBACK_RESOLVED, task.id, channel=CH, ts=reply.ts)
    assert decision(deps, task).verdict == "accepted"


def test_dms_are_not_governed(slack, llm, sender, deps):
    """A question in a DM is answered in the DM as always, with no decision."""
    assert sender.dm("U0ALICE", DM, "what is our on-call rotation?").status == 200
    drain(deps)
    (post,) = slack.calls("chat.postMessage")
    assert post["channel"] == DM and "Post to thread" not in json.dumps(post["blocks"])
    with deps.db.read() as s:
        assert s.execute(select(AutonomyDecision)).first() is None
        assert {a.autonomy_level for a in s.execute(select(Action)).scalars()} == {None}


def test_a_click_whose_job_was_lost_is_judged_by_the_sweep(slack, llm, sender, deps):
    """Resolved is recorded at the click; if its job never runs, the next sweep judges the decision from it."""
    autonomy.set_level(
        deps.db,
        deps.policy.current,
        user="U0ALICE",
        action=ACTION,
        category=None,
        level="auto",
        actor="U0ADMIN",
    )
    task = ask(sender, deps)
    (reply,) = in_thread(slack, task)
    assert (
        sender.block_action("U0ALICE", FEEDBACK_RESOLVED, task.id, channel=CH, message_ts=reply.ts).status
        == 200
    )
    deps.queue.queues["interactive"].empty()  # the job that judges it is lost
    assert decision(deps, task).verdict is None
    measure.sweep(deps.db, deps.settings, policy=deps.policy.current)
    assert decision(deps, task).verdict == "accepted"


def test_a_demotion_the_sweep_finds_is_told(slack, llm, sender, deps):
    """Two Not helpful clicks whose jobs were lost: the workers' housekeeping judges them, demotes, and the
    person gets the demotion DM (the sweep announces with the housekeeping's queue)."""
    from bot.ops.worker import housekeeping_once

    autonomy.set_level(
        deps.db,
        deps.policy.current,
        user="U0ALICE",
        action=ACTION,
        category=None,
        level="auto",
        actor="U0ADMIN",
    )
    for _ in range(2):
        task = ask(sender, deps)
        (reply,) = in_thread(slack, task)
        assert (
            sender.block_action(
                "U0ALICE", FEEDBACK_NOT_HELPFUL, task.id, channel=CH, message_ts=reply.ts
            ).status
            == 200
        )
        deps.queue.queues["interactive"].empty()  # the job that judges it is lost
    assert level(deps) == "auto"
    slack.fail_next("chat.getPermalink", "message_not_found")  # Slack refuses one link: plain text for it
    housekeeping_once(deps)
    drain(deps)
    assert level(deps) == "suggest"
    (notice,) = [m for m in slack.bot_messages(DM) if "went back from" in m.text]
    assert "*auto* to *suggest*" in notice.text
    corrected = [line for line in notice.text.splitlines() if line.startswith("• ")]
    assert corrected[0] == "• “when is the launch?”" and corrected[1].startswith("• <https://")


def test_first_words_of_a_question():
    from workers.autonomy import first_words

    assert first_words("when is the launch?") == "when is the launch?"
    assert (
        first_words("one two three four five six seven eight nine ten")
        == "one two three four five six seven eight…"
    )
    assert first_words("x" * 200) == "x" * 80 + "…"
