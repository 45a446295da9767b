"""Outcomes on the wrong task (issue 11, item 14, answer part).

A validly signed "Resolved" click whose value is the id of one's own *failed deploy* turned ``deploy_failed``
into an accepted task (an explicit outcome outranks an implicit one). Feedback buttons rate answers only, and
nobody records an outcome on someone else's task: both are checked in the one shared rule
(``bot.measure.outcomes.click_refusal``) that every click-recorded outcome goes through.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from bot import messages
from bot.db import AuditEntry, Outcome, Task
from bot.measure.outcomes import config_from_settings, decisive
from tests.conftest import drain


def _deploy_task_that_failed(deps) -> Task:
    """Alice's deploy request, finished as failed with its implicit ``deploy_failed`` outcome."""
    with deps.db.session() as s:
        task = Task(
            idempotency_key="deploy-request:planX:U0ALICE",
            requester="U0ALICE",
            surface="deploy",
            intent="deploy_request",
            team_id="T0CLAWBACK",
            channel_id="C0GENERAL",
            thread_ts="1700000000.000100",
            status="failed",
        )
        s.add(task)
        s.flush()
        s.add(Outcome(task_id=task.id, kind="deploy_failed", source="implicit", actor=None, detail={}))
        s.expunge(task)
    return task


def _outcomes(deps, task_id: str) -> list[tuple[int, str, str]]:
    with deps.db.session() as s:
        return [
            (o.id, o.kind, o.source)
            for o in s.execute(select(Outcome).where(Outcome.task_id == task_id)).scalars()
        ]


def _feedback_audit(deps) -> list[AuditEntry]:
    with deps.db.session() as s:
        rows = s.execute(select(AuditEntry).where(AuditEntry.action == "outcome.feedback")).scalars()
        return list(rows)


def test_resolved_click_on_own_failed_deploy_is_refused(slack, llm, sender, deps):
    """The requester's own signed "Resolved" on a deploy task: no outcome, a denied audit entry, a private note."""
    task = _deploy_task_that_failed(deps)
    reply = sender.block_action(
        "U0ALICE", "feedback_resolved", task.id, channel="C0GENERAL", message_ts="1700000000.000200"
    )
    assert reply.status == 200  # acknowledged: Slack must not retry it
    drain(deps)
    # Nothing was recorded: the deploy still counts as failed.
    assert [kind for _id, kind, _src in _outcomes(deps, task.id)] == ["deploy_failed"]
    assert decisive(_outcomes(deps, task.id), config_from_settings(None)) == "deploy_failed"
    (entry,) = _feedback_audit(deps)
    assert entry.decision == "deny" and entry.actor == "U0ALICE" and entry.task_id == task.id
    assert "answers" in json.loads(entry.details)["reason"]
    # The person is told why, privately, where they clicked.
    (note,) = slack.calls("chat.postEphemeral")
    assert note["user"] == "U0ALICE" and note["text"] == messages.FEEDBACK_ONLY_ANSWERS
    assert not slack.calls("chat.update")


def test_resolved_click_on_someone_elses_answer_is_refused(slack, llm, sender, deps):
    """Bob's signed "Resolved" on Alice's answer: no outcome, audited as denied, Bob told privately."""
    sender.mention("U0ALICE", "C0GENERAL", "what's our on-call rota?", ts="1700000005.000100")
    drain(deps)
    with deps.db.session() as s:
        (answer,) = s.execute(select(Task)).scalars()
        s.expunge(answer)
    sender.block_action(
        "U0BOB", "feedback_resolved", answer.id, channel="C0GENERAL", message_ts=answer.result["reply_ts"]
    )
    drain(deps)
    assert _outcomes(deps, answer.id) == []
    (entry,) = _feedback_audit(deps)
    assert entry.decision == "deny" and json.loads(entry.details)["reason"] == "not the requester"
    (note,) = slack.calls("chat.postEphemeral")
    assert note["user"] == "U0BOB" and note["text"] == messages.FEEDBACK_NOT_YOURS


def test_the_shared_rule_covers_mail_clicks_on_answers(deps):
    """The mail buttons use the same rule: "Right" on an answer task is not a triage outcome."""
    from bot.measure.outcomes import click_refusal

    answer = Task(requester="U0ALICE", intent="answer", surface="mention", idempotency_key="k")
    triage = Task(requester="U0ALICE", intent="triage", surface="email", idempotency_key="k2")
    assert click_refusal(answer, "U0ALICE", "resolved") is None
    assert click_refusal(answer, "U0BOB", "resolved") == "not the requester"
    assert "answers" in (click_refusal(triage, "U0ALICE", "resolved") or "")
    assert click_refusal(triage, "U0ALICE", "label_kept") is None
    assert click_refusal(answer, "U0ALICE", "label_kept") is not None
    assert click_refusal(answer, "U0ALICE", "deploy_succeeded") is not None  # never by a click
