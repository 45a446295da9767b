"""Attack: one message of a person, delivered by Slack under several event_ids (a Slack Connect channel shared
by two of our workspaces, an org-wide install with one delivery per authorization, a message and its
``file_share`` variant) must be answered once, not once per delivery — each answer costs tokens and spams the
thread. Ingress dedupes a person's message on (team, channel, ts) as well as on event_id."""

from __future__ import annotations

import threading

from sqlalchemy import select

from bot.db import Task
from bot.standins.slack_events import SlackEventSender
from tests.conftest import SIGNING_SECRET, drain


def _tasks(deps) -> list[Task]:
    with deps.db.session() as s:
        return list(s.execute(select(Task).order_by(Task.created_at)).scalars())


def test_one_mention_under_two_event_ids_is_answered_once(slack, llm, sender, deps):
    """Two deliveries of the same mention (same channel and ts, different event_id, the second to another
    workspace of ours): one task, one LLM call, one reply; the second delivery is acked (200), not refused."""
    second = SlackEventSender(sender.url, SIGNING_SECRET, team_id="T0SECOND")
    try:
        for who, eid in ((sender, "EvFIRST0001"), (second, "EvSECOND002")):
            reply = who.mention("U0ALICE", "C0GENERAL", "launch date?", ts="1800000500.000100", event_id=eid,
                                user_team="T0CLAWBACK" if who is second else None)
            assert reply.status == 200
    finally:
        second.close()
    drain(deps)
    assert len(_tasks(deps)) == 1
    assert len(llm.completions()) == 1 and len(slack.calls("chat.postMessage")) == 1


def test_a_dm_and_its_file_share_variant_are_answered_once(slack, llm, sender, deps):
    """A DM and its ``file_share`` variant share the ts: one answer."""
    assert sender.dm("U0BOB", "D0BOB", "what is in this file?", ts="1800000600.000100", event_id="EvDM1").status == 200
    assert sender.dm("U0BOB", "D0BOB", "what is in this file?", ts="1800000600.000100", event_id="EvDM2",
                     subtype="file_share").status == 200
    drain(deps)
    assert len(_tasks(deps)) == 1 and len(slack.calls("chat.postMessage")) == 1


def test_concurrent_deliveries_of_one_message_make_one_task(slack, llm, web, deps):
    """Deliveries racing each other (Slack sends to every authorization at once): still one task."""
    def deliver(n: int) -> None:
        s = SlackEventSender(web.url + "/slack/events", SIGNING_SECRET)
        try:
            assert s.mention("U0ALICE", "C0GENERAL", "race?", ts="1800000700.000100", event_id=f"EvRACE{n}").status == 200
        finally:
            s.close()

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_tasks(deps)) == 1


def test_two_messages_of_one_person_are_both_answered(slack, llm, sender, deps):
    """No over-dedupe: the same text sent twice (two ts) is two questions."""
    sender.mention("U0ALICE", "C0GENERAL", "same words", ts="1800000800.000100", event_id="EvTWO1")
    sender.mention("U0ALICE", "C0GENERAL", "same words", ts="1800000800.000200", event_id="EvTWO2")
    drain(deps)
    assert len(_tasks(deps)) == 2 and len(slack.calls("chat.postMessage")) == 2
