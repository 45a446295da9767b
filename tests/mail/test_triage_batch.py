"""Batched triage: short emails of one mailbox share a model call with the same decisions as alone.

Each batched email still gets its own task result, actions, audit entries and share of the reported tokens;
ids the model returns are mapped back by code (never to another batch or mailbox); one bad answer is repaired
or handed to a human alone; claimed tasks never run twice, and a failed or silent leader hands them back.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bot.db import Action, AuditEntry, LLMCall, Task
from bot.mail.models import MailItem
from bot.standins.triage_responder import classify, emails_of, triage_responder
from tests.conftest import drain
from tests.mail.test_triage_flow import _tasks
from workers import execute
from workers.mail.batch import BatchLimits
from workers.mail.decide import batch_keys

# Here the owner does not hold mail.draft, so the only calls are classification calls (with it, emails are
# batched the same and each draft has a call of its own: test_with_mail_draft_drafts_get_calls_of_their_own).
pytestmark = pytest.mark.scopes("mail.read", "mail.categorize", "mail.move")

SHORT = [
    ("Please approve the Q3 budget", "carol@example.com", "Please approve the Q3 budget by Friday."),
    ("Lunch on Thursday?", "dave@example.com", "Are you free for lunch on Thursday?"),
    ("Office closed", "erin@example.com", "FYI the office is closed on Monday."),
    ("Build #42 failed", "noreply@ci.example", "Build #42 failed on main. Automated message."),
    ("Password expiry", "it@login.example", "Your password expires today, verify your account now."),
]
LONG_BODY = " ".join(
    f"Section {n}: the {('budget', 'roadmap', 'hiring', 'vendor')[n % 4]} numbers moved by {n * 7} points "
    f"since review {n}."
    for n in range(400)
)


def _seed(ews, emails=SHORT, long: bool = True) -> None:
    for subject, sender, body in emails:
        ews.add_message(subject=subject, sender=sender, body_text=body)
    if long:
        ews.add_message(subject="Quarterly report", sender="fred@example.com", body_text=LONG_BODY)


def _requests(llm) -> list[list[str]]:
    """Subjects of the emails in each model request, in order."""
    return [[e[2] for e in emails_of(r["messages"])] for r in llm.completions()]


def _decision(result: dict) -> tuple:
    return (result.get("category"), result.get("priority"), "mail.draft" in result.get("actions", []))


def _calls(deps) -> list[LLMCall]:
    with deps.db.session() as s:
        return list(s.execute(select(LLMCall).order_by(LLMCall.id)).scalars())


def _records(deps) -> dict[str, MailItem]:
    with deps.db.session() as s:
        return {i.task_id: i for i in s.execute(select(MailItem)).scalars()}


def _done_entries(deps, task_id: str) -> int:
    with deps.db.session() as s:
        return s.execute(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.task_id == task_id, AuditEntry.action == "worker.triage.done")
        ).scalar_one()


def _assert_ledger_balances(deps) -> None:
    """The records' per-email shares add up to exactly what the API reported for all calls."""
    calls, records = _calls(deps), _records(deps).values()
    assert sum(r.prompt_tokens for r in records) == sum(c.prompt_tokens for c in calls)
    assert sum(r.completion_tokens for r in records) == sum(c.completion_tokens for c in calls)


def test_short_emails_share_one_call_with_the_same_decisions_as_alone(ews, poller, mail_deps, llm):
    """Five short emails: one call; the long one alone; decisions equal those of one call per email."""
    _seed(ews)
    poller.run_once()
    drain(mail_deps)
    batched = _tasks(mail_deps, "triage")
    assert sorted(len(r) for r in _requests(llm)) == [1, 5]
    assert ["Quarterly report"] in _requests(llm)
    assert all(t.status == "done" for t in batched)
    leader = batched[0]
    members = [t for t in batched if t.result["batch"]["size"] == 5]
    assert {t.result["batch"]["leader"] for t in members} == {leader.id}
    assert leader.result["batch"]["members"] == [t.id for t in members]
    # one llm_calls row, on the leader; every member has its own share, its own actions and audit
    calls = _calls(mail_deps)
    assert len(calls) == 2 and calls[0].task_id == leader.id and calls[0].step.startswith("triage_batch:")
    assert sum(t.result["prompt_tokens"] for t in members) == calls[0].prompt_tokens
    assert sum(t.result["completion_tokens"] for t in members) == calls[0].completion_tokens
    for t in members[1:]:
        assert t.result["batch"]["tokens_recorded_on"] == leader.id and t.result["llm_calls"] == 1
        assert t.result["prompt_tokens"] > 0 and t.result["completion_tokens"] > 0
        with mail_deps.db.session() as s:
            kinds = set(s.execute(select(Action.kind).where(Action.task_id == t.id)).scalars())
            audited = set(s.execute(select(AuditEntry.action).where(AuditEntry.task_id == t.id)).scalars())
        assert "mail.categorize" in kinds and "mail.categorize" in audited
        assert _done_entries(mail_deps, t.id) == 1
    _assert_ledger_balances(mail_deps)
    # the same emails again, one call each: the same decisions
    mail_deps.extras["triage_batch"] = BatchLimits(max_emails=1)
    _seed(ews)
    poller.run_once()
    drain(mail_deps)
    alone = _tasks(mail_deps, "triage")[len(batched) :]
    assert len(alone) == len(batched) and len(llm.completions()) == 2 + len(alone)
    assert [_decision(t.result) for t in alone] == [_decision(t.result) for t in batched]
    assert [t.payload["subject"] for t in alone] == [t.payload["subject"] for t in batched]


def test_one_invalid_answer_is_repaired_alone(ews, poller, mail_deps, llm):
    """A bad entry for one email: one repair call asks for that email only; the others are untouched."""

    def responder(messages, request):
        answer = json.loads(triage_responder(messages, request))
        if not any(m["role"] == "assistant" for m in messages):
            for d in answer["decisions"]:
                if d["summary"].endswith("Office closed"):
                    d["priority"] = 9
        return json.dumps(answer)

    llm.register_responder("triage", responder)
    _seed(ews, long=False)
    poller.run_once()
    drain(mail_deps)
    tasks = {t.payload["subject"]: t for t in _tasks(mail_deps, "triage")}
    assert all(t.status == "done" and t.result["category"] for t in tasks.values())
    repair = llm.completions()[1]["messages"][-1]["content"]
    assert len(llm.completions()) == 2 and "priority must be 1, 2 or 3" in repair
    members = _tasks(mail_deps, "triage")[0].result["batch"]["members"]
    keys = dict(zip(members, batch_keys(members[0], members), strict=True))
    assert [k for k in keys.values() if k in repair] == [keys[tasks["Office closed"].id]]
    assert tasks["Office closed"].result["llm_calls"] == 2
    assert all(t.result["llm_calls"] == 1 for s, t in tasks.items() if s != "Office closed")
    calls = _calls(mail_deps)
    assert [c.step.split(":")[0] for c in calls] == ["triage_batch", "repair_batch"]
    # the repair call's tokens are all on the repaired email
    others = [t for s, t in tasks.items() if s != "Office closed"]
    assert sum(t.result["prompt_tokens"] for t in others) < calls[0].prompt_tokens
    _assert_ledger_balances(mail_deps)


def test_still_invalid_after_repair_needs_a_human_for_that_email_only(ews, poller, mail_deps, llm, slack):
    """The same email invalid twice: it alone is 'needs human' (no label, no draft); the rest are triaged."""

    def responder(messages, request):
        answer = json.loads(triage_responder(messages, request))
        for d in answer["decisions"]:
            if d["summary"].endswith("Lunch on Thursday?"):
                d["category"] = "urgent!!"
        return json.dumps(answer)

    llm.register_responder("triage", responder)
    _seed(ews, long=False)
    poller.run_once()
    drain(mail_deps)
    records = {r.subject: r for r in _records(mail_deps).values()}
    lunch = records.pop("Lunch on Thursday?")
    assert lunch.status == "needs_human" and "after repair" in lunch.reason and lunch.label is None
    assert lunch.draft_id is None and lunch.prompt_tokens > 0
    assert all(r.status == "triaged" and r.label for r in records.values())
    assert not [d for d in ews.drafts() if d.to == ["dave@example.com"]]
    digest = [c for c in slack.calls("chat.postMessage") if c["channel"] == "D0EMMA"]
    assert digest and "Needs you" in json.dumps(digest[-1]["blocks"])
    _assert_ledger_balances(mail_deps)


def test_forged_and_duplicate_ids_are_never_mapped(ews, poller, mail_deps, llm):
    """Ids for emails outside the batch are ignored; an id answered twice is invalid and repaired."""
    mail_deps.extras["triage_batch"] = BatchLimits(max_emails=2)
    _seed(ews, SHORT[:3], long=False)
    poller.run_once()
    first, second, third = _tasks(mail_deps, "triage")
    # the id the third email will get in its own call (it does not fit the first batch of two)
    forged = batch_keys(third.id, [third.id])[0]

    def responder(messages, request):
        answer = json.loads(triage_responder(messages, request))
        if len(answer["decisions"]) == 2 and not any(m["role"] == "assistant" for m in messages):
            evil = {**answer["decisions"][1], "category": "phishing_spam", "priority": 3}
            answer["decisions"] += [{**evil, "id": forged}, {**evil, "id": third.id}, evil]
        return json.dumps(answer)

    llm.register_responder("triage", responder)
    drain(mail_deps)
    done = {t.id: t for t in _tasks(mail_deps, "triage")}
    assert _requests(llm)[0] == [SHORT[0][0], SHORT[1][0]]
    assert done[first.id].result["category"] == "action_required" and done[first.id].result["llm_calls"] == 1
    # the duplicated id was repaired alone and got its true decision back
    assert done[second.id].result["category"] == "reply_needed" and done[second.id].result["llm_calls"] == 2
    # the forged ids reached nothing: the third email was decided by its own call
    assert done[third.id].result["category"] == "fyi" and done[third.id].result["batch"]["leader"] == third.id
    assert len(llm.completions()) == 3


def test_batches_never_mix_mailboxes(ews, mail_deps, ingress, llm, sleeps, tmp_path):
    """Two mailboxes of one owner: each call holds one mailbox's emails; ids of the other are ignored."""
    from bot.mail.ews import EwsMailbox
    from bot.mail.poller import MailPoller
    from bot.policy import PolicyStore
    from bot.standins.ews import EwsStandIn
    from tests.mail.conftest import OWNER, OWNER_ADDRESS, PASSWORD, policy_text

    other = EwsStandIn(address="zed@example.com", username="zed@example.com", password="zz").start()
    try:
        extra = (
            f'\n[mailboxes."zed@example.com"]\nowner = "{OWNER}"\news_url = "{other.ews_url}"\n'
            'username = "zed@example.com"\npassword_env = "CLAWBACK_TEST_ZED"\n'
        )
        path = mail_deps.settings.clawback_policy
        path.write_text(policy_text(ews.ews_url, ["mail.read", "mail.categorize"], extra))
        ingress.policy = mail_deps.policy = PolicyStore(path)
        boxes: dict[str, EwsMailbox] = {}

        def factory(address):
            if address not in boxes:
                url, pw = (ews.ews_url, PASSWORD) if address == OWNER_ADDRESS else (other.ews_url, "zz")
                boxes[address] = EwsMailbox(address, url, username=address, password=pw, timeout=5)
            return boxes[address]

        mail_deps.extras["mailboxes"] = factory
        _seed(ews, SHORT[:2], long=False)
        _seed(other, [("Zed status", "gina@example.com", "FYI the zed status is green.")], long=False)
        MailPoller(mail_deps.settings, mail_deps.db, ingress, factory, sleep=sleeps).run_once()
        zed = [t for t in _tasks(mail_deps, "triage") if t.payload["mailbox"] == "zed@example.com"]
        forged = batch_keys(zed[0].id, [zed[0].id])[0]

        def responder(messages, request):
            answer = json.loads(triage_responder(messages, request))
            if len(answer["decisions"]) == 2:
                answer["decisions"].append({**answer["decisions"][0], "id": forged, "category": "newsletter"})
            return json.dumps(answer)

        llm.register_responder("triage", responder)
        drain(mail_deps)
        assert sorted(map(sorted, _requests(llm))) == [
            sorted(s for s, _f, _b in SHORT[:2]),
            ["Zed status"],
        ]
        (zed_done,) = [t for t in _tasks(mail_deps, "triage") if t.payload["mailbox"] == "zed@example.com"]
        assert zed_done.result["category"] == "fyi" and zed_done.result["batch"]["leader"] == zed_done.id
        assert other.message(zed_done.payload["item_id"]).categories == ["FYI"]
        for box in boxes.values():
            box.close()
    finally:
        other.stop()


def test_a_claimed_email_waits_for_its_leader_and_runs_once(ews, poller, mail_deps, llm):
    """A claimed task whose job starts while the leader's call is in flight waits and uses that decision."""
    _seed(ews, SHORT[:2], long=False)
    poller.run_once()
    leader, follower = _tasks(mail_deps, "triage")
    outcome: dict[str, str] = {}
    thread = threading.Thread(target=lambda: outcome.update(f=execute(mail_deps, follower.id)))
    llm.script({"before": thread.start, "delay": 1.0})
    assert execute(mail_deps, leader.id) == "done"
    thread.join(30)
    assert outcome == {"f": "done"}
    assert len(llm.completions()) == 1
    done = {t.id: t for t in _tasks(mail_deps, "triage")}
    assert done[follower.id].result["batch"]["leader"] == leader.id
    assert done[follower.id].result["category"] == "reply_needed"
    drain(mail_deps)  # their queued jobs find the tasks finished and do nothing
    assert len(llm.completions()) == 1
    assert _done_entries(mail_deps, leader.id) == 1 and _done_entries(mail_deps, follower.id) == 1
    _assert_ledger_balances(mail_deps)


def _as_if_the_leader_died(deps, leader: Task, held: list[Task]) -> None:
    """SQL as a leader killed mid-call leaves it: running, its record and the claimed ones held by it."""
    records = _records(deps)
    hold = f"b:{records[leader.id].id}"
    with deps.db.session() as s:
        s.execute(update(Task).where(Task.id == leader.id).values(status="running", attempts=1))
        ids = [records[t.id].id for t in [leader, *held]]
        s.execute(update(MailItem).where(MailItem.id.in_(ids)).values(status=hold))
    deps.queue.queues["bulk"].remove(leader.id)  # its job died with the worker


def test_a_silent_leader_is_taken_over_after_the_lease_and_reconciled(ews, poller, mail_deps, llm):
    """Leader killed mid-call: claimed emails triage themselves after the lease; the reconciler reruns it."""
    mail_deps.extras["triage_batch"] = BatchLimits(lease_seconds=0.5)
    _seed(ews, SHORT[:3], long=False)
    poller.run_once()
    leader, *held = _tasks(mail_deps, "triage")
    _as_if_the_leader_died(mail_deps, leader, held)
    drain(mail_deps)
    done = {t.id: t for t in _tasks(mail_deps, "triage")}
    assert [done[t.id].status for t in held] == ["done", "done"]
    assert {done[t.id].result["batch"]["leader"] for t in held} <= {t.id for t in held}
    assert done[leader.id].status == "running"
    assert mail_deps.queue.reconcile(mail_deps.db, older_than=timedelta(0)) == [leader.id]
    drain(mail_deps)
    done = {t.id: t for t in _tasks(mail_deps, "triage")}
    assert done[leader.id].status == "done" and done[leader.id].result["category"] == "action_required"
    assert all(_done_entries(mail_deps, t) == 1 for t in done)
    assert sum(len(r) for r in _requests(llm)) == 3  # each email decided once
    _assert_ledger_balances(mail_deps)


def test_a_rerun_leader_adopts_the_emails_it_had_claimed(ews, poller, mail_deps, llm):
    """Leader killed mid-call and rerun (RQ retry or reconciler) within the lease: one call for all again."""
    _seed(ews, SHORT[:3], long=False)
    poller.run_once()
    leader, *held = _tasks(mail_deps, "triage")
    _as_if_the_leader_died(mail_deps, leader, held)
    assert execute(mail_deps, leader.id) == "done"
    assert _requests(llm) == [[s for s, _f, _b in SHORT[:3]]]
    drain(mail_deps)
    done = {t.id: t for t in _tasks(mail_deps, "triage")}
    assert all(t.status == "done" and t.result["batch"]["leader"] == leader.id for t in done.values())
    assert len(llm.completions()) == 1 and done[leader.id].attempts == 2


def test_a_failing_leader_gives_its_claims_back(ews, poller, mail_deps, llm, caplog):
    """The batch call fails (model 500s): every claim goes back to pending; the retry decides each once."""
    _seed(ews, SHORT[:3], long=False)
    poller.run_once()
    leader, *others = _tasks(mail_deps, "triage")
    llm.script({"status": 500}, {"status": 500})  # both tries of the client's one retry
    with (
        caplog.at_level("INFO", logger="workers.mail.triage"),
        pytest.raises(Exception, match="model unavailable"),
    ):
        execute(mail_deps, leader.id, last_attempt=False)
    assert "gave back 3 claimed email(s)" in caplog.text
    assert {r.status for r in _records(mail_deps).values()} == {"pending"}
    drain(mail_deps)
    done = {t.id: t for t in _tasks(mail_deps, "triage")}
    assert all(t.status == "done" for t in done.values())
    assert all(_done_entries(mail_deps, t) == 1 for t in done)
    assert [len(r) for r in _requests(llm)] == [3, 3, 3]  # the failed call (two tries), then the retry
    _assert_ledger_balances(mail_deps)


def test_standin_responder_answers_each_email_of_a_batch_by_id():
    """The stand-in finds every email block (not the header's mention of the marker) and keeps ids."""
    from workers.mail.decide import EmailBlock, render_batch

    blocks = [
        EmailBlock(
            "m1", "Carol <c@x>", "1 recipient(s)", "Budget", "now", "none", "Please approve by Friday"
        ),
        EmailBlock("m2", "CI <noreply@x>", "1 recipient(s)", "Build", "now", "none", "Your build failed"),
    ]
    msgs = render_batch("<@U0EMMA>", "<<" + "a" * 16 + ">>", blocks).messages()
    answer = json.loads(triage_responder(msgs, {}))
    assert [d["id"] for d in answer["decisions"]] == ["m1", "m2"]
    expected = classify("Carol <c@x>", "Budget", "Please approve by Friday")
    expected.pop("reply_draft")  # the batch schema has no draft
    assert answer["decisions"][0] == {"id": "m1", **expected}


def test_p4_bench_meets_its_target_with_the_same_decisions():
    """The P4 benchmark: batched prepared text ≤ 35% of the naive tokens per email, with mail.draft too (its
    draft calls included); on the labelled corpus ≤ 50% of the plain-text body prompt either way; decisions
    (category, priority, draft or not) unchanged."""
    from bench.p4_triage_tokens import run

    result = run(n=30, runs=1, draft_scope=False)
    assert result["ratio"] <= result["target_ratio"] < result["single_ratio"]
    assert result["same_decisions"] == result["emails"] == result["same_as_single"]
    assert result["calls"] < result["naive_calls"] and result["draft_calls"] == 0
    drafting = run(n=30, runs=1, draft_scope=True)
    assert result["ratio"] < drafting["ratio"] <= drafting["target_ratio_draft_scope"]
    assert drafting["same_decisions"] == drafting["emails"] and drafting["draft_calls"] > 0
    assert drafting["batch_sizes"] == result["batch_sizes"]  # drafts no longer keep emails out of batches
    labelled = drafting["labelled"]  # issue 17: facts kept beside tokens saved, on the labelled corpus
    assert labelled["retention"] >= labelled["target_retention"]
    assert labelled["ratio_plain"] <= labelled["target_ratio_plain"] and labelled["ratio_raw"] < 1
    assert labelled["ratio_plain_draft_scope"] <= labelled["target_ratio_plain"]


@pytest.mark.scopes("mail.read", "mail.categorize", "mail.move", "mail.draft")
def test_with_mail_draft_drafts_get_calls_of_their_own(ews, poller, mail_deps, llm):
    """With mail.draft, all short emails share one classification call whatever their sender; each one that
    may get a draft and needs a reply then gets a draft call that sees only it, recorded on its own task
    (changed: such emails were triaged alone before)."""
    robots = [
        ("Build #43 failed", "noreply@ci.example", "Build #43 failed on main. Automated message."),
        ("Weekly digest", "notifications@news.example", "Your weekly digest. Manage preferences."),
    ]
    _seed(ews, SHORT + robots, long=False)
    poller.run_once()
    drain(mail_deps)
    tasks = {t.payload["subject"]: t for t in _tasks(mail_deps, "triage")}
    assert all(t.status == "done" for t in tasks.values())
    requests = _requests(llm)
    kinds = [r["response_format"]["json_schema"]["name"] for r in llm.completions()]
    assert sorted(len(r) for r, k in zip(requests, kinds, strict=True) if k == "triage") == [7]
    drafts = sorted(r[0] for r, k in zip(requests, kinds, strict=True) if k == "reply_draft")
    assert drafts == ["Lunch on Thursday?", "Please approve the Q3 budget"]
    assert all(len(r) == 1 for r, k in zip(requests, kinds, strict=True) if k == "reply_draft")
    calls = _calls(mail_deps)
    drafting = [c for c in calls if c.prompt_name == "draft"]
    assert sorted(c.task_id for c in drafting) == sorted(tasks[s].id for s in drafts)
    assert all(c.step == "draft" and c.prompt_version for c in drafting)
    for subject in drafts:
        result = tasks[subject].result
        assert "mail.draft" in result["actions"] and result["llm_calls"] == 2
        assert result["draft_call"]["call_id"] in {c.id for c in drafting}
    _assert_ledger_balances(mail_deps)
