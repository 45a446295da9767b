"""Earned autonomy on triage, end to end: EWS stand-in mailbox, poller, RQ worker, signed Slack clicks.

suggest → Apply ×N → offer DM → Yes → auto → Wrong category / Undo move → demoted → suggest again; shadow
agreement from the owner's own moves; caps; a stranger's click; levels surviving a restart; audit; reports.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import autonomy
from bot.db import Action, AuditEntry, AutonomyDecision, AutonomyOffer, Database
from bot.mail.models import MailItem
from bot.measure import outcomes
from bot.measure.adoption import build_adoption
from bot.measure.report import Viewer
from bot.slack.blocks import AUTONOMY_YES
from tests.conftest import drain
from tests.mail.conftest import OWNER, policy_text
from workers.mail import verdicts

NOW = datetime.now(UTC)
AUTONOMY = """
[autonomy]
default = "auto"

[autonomy.actions."mail.move"]
start = "{start}"
max = "{max}"
promote_after = 3
promote_min_acceptance = 0.9
window = 4
demote_after = 2
"""


@pytest.fixture
def autonomy_levels() -> dict[str, str]:
    """mail.move's start and max in the test policy (tests override)."""
    return {"start": "suggest", "max": "auto"}


@pytest.fixture
def more_rules() -> str:
    """Rules for other mail actions, appended to the test policy (tests override)."""
    return ""


@pytest.fixture
def policy_file(tmp_path: Path, ews, mail_scopes, autonomy_levels, more_rules) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(policy_text(ews.ews_url, mail_scopes, AUTONOMY.format(**autonomy_levels) + more_rules))
    return path


def _news(ews, n: int, start: int = 0) -> list[str]:
    return [
        ews.add_message(
            subject=f"Widgets weekly #{i}",
            sender="news@widgets.example",
            body_html=f"<html><body><p>Issue {i}.</p><p><a href='https://widgets.example/u'>Unsubscribe</a></p>"
            "</body></html>",
            received=NOW - timedelta(minutes=30 - i),
        )
        for i in range(start, start + n)
    ]


def _items(deps) -> dict[str, MailItem]:
    with deps.db.read() as s:
        return {i.subject: i for i in s.execute(select(MailItem)).scalars()}


def _buttons(slack, task_id: str) -> dict[str, tuple[str, str]]:
    """The buttons of ``task_id``'s item in the newest message showing it: action_id → (label, ts)."""
    for msg in reversed(slack.bot_messages("D0EMMA")):
        for block in msg.blocks or []:
            if block.get("block_id") == f"mail:{task_id}":
                return {
                    e["action_id"]: (e.get("text", {}).get("text", ""), msg.ts) for e in block["elements"]
                }
    return {}


def _text_of(slack, task_id: str) -> str:
    for msg in reversed(slack.bot_messages("D0EMMA")):
        blob = json.dumps(msg.blocks or [])
        if task_id in blob:
            return blob
    return ""


def _level(deps, db: Database | None = None) -> str:
    return autonomy.level_for(db or deps.db, deps.policy.current, OWNER, "mail.move", "newsletter")


def _triage(poller, deps) -> None:
    assert poller.run_once() == 0
    drain(deps)


def _click(sender, action_id: str, task_id: str, ts: str, user: str = OWNER, **kw) -> None:
    sender.block_action(user, action_id, task_id, channel="D0EMMA", message_ts=ts, **kw)


def test_suggest_apply_offer_yes_auto_corrections_demote_back_to_suggest(
    ews, poller, mail_deps, slack, sender
):
    """The whole loop of issue 14 through real clicks, the mailbox, the worker and the offer DM."""
    deps = mail_deps
    _news(ews, 3)
    _triage(poller, deps)
    items = _items(deps)
    assert len(items) == 3 and all(i.folder == "inbox" for i in items.values())
    assert len(ews.messages("inbox")) == 3 and not ews.folders().get("Newsletters")  # nothing moved
    assert all(i.label == "Newsletter" for i in items.values())  # mail.categorize: default auto, done
    first = items["Widgets weekly #0"]
    buttons = _buttons(slack, first.task_id)
    assert buttons["mail_apply_move"][0].startswith("Apply") and "mail_dismiss" in buttons
    assert "Would move to Newsletters" in _text_of(slack, first.task_id)

    # A stranger's Apply is refused and audited; nothing moves.
    ts = buttons["mail_apply_move"][1]
    _click(sender, "mail_apply_move", first.task_id, ts, user="U0BOB")
    drain(deps)
    assert len(ews.messages("inbox")) == 3
    with deps.db.read() as s:
        denied = s.execute(select(AuditEntry).where(AuditEntry.action == "mail.move.apply")).scalars().all()
    assert [(d.actor, d.decision) for d in denied] == [("U0BOB", "deny")]

    # Apply ×3 (the first clicked twice: one move) → the moves happen; the third earns the offer.
    for n, item in enumerate(items.values()):
        _click(sender, "mail_apply_move", item.task_id, ts)
        if n == 0:
            _click(sender, "mail_apply_move", item.task_id, ts)
        drain(deps)
    assert sorted(m.subject for m in ews.messages("Newsletters")) == sorted(items)
    with deps.db.read() as s:
        moves = s.execute(select(Action).where(Action.kind == "mail.move")).scalars().all()
        decisions = (
            s.execute(select(AutonomyDecision).where(AutonomyDecision.action == "mail.move")).scalars().all()
        )
        (offer,) = s.execute(select(AutonomyOffer)).scalars().all()
    assert len(moves) == 3 and {m.autonomy_level for m in moves} == {"suggest"}
    assert {(d.level, d.verdict) for d in decisions} == {("suggest", "accepted")}
    assert "Applied: move to Newsletters" in _text_of(slack, first.task_id)
    assert "mail_apply_move" not in _buttons(slack, first.task_id)
    (dm,) = [m for m in slack.bot_messages("D0EMMA") if "right 3 of your last 3" in (m.text or "")]

    # Yes → auto; the next newsletters move at once, with Undo move under them.
    sender.block_action(OWNER, AUTONOMY_YES, str(offer.id), channel="D0EMMA", message_ts=dm.ts)
    drain(deps)
    assert _level(deps) == "auto"
    _news(ews, 2, start=3)
    _triage(poller, deps)
    new = [i for s_, i in _items(deps).items() if s_ in ("Widgets weekly #3", "Widgets weekly #4")]
    assert all(i.folder == "Newsletters" for i in new)
    with deps.db.read() as s:
        autos = (
            s.execute(
                select(Action).where(Action.kind == "mail.move", Action.task_id.in_([i.task_id for i in new]))
            )
            .scalars()
            .all()
        )
    assert {a.autonomy_level for a in autos} == {"auto"}
    b3 = _buttons(slack, new[0].task_id)
    assert b3["mail_undo_move"][0] == "Undo move" and "mail_apply_move" not in b3

    # Undo move on one, Wrong category on the other: two corrections in the window → demoted at once.
    _click(sender, "mail_undo_move", new[0].task_id, b3["mail_undo_move"][1])
    drain(deps)
    assert "Widgets weekly #3" in [m.subject for m in ews.messages("inbox")]
    assert _level(deps) == "auto"
    _click(sender, "mail_wrong", "", b3["mail_undo_move"][1], selected_option=f"{new[1].task_id}:fyi")
    drain(deps)
    assert _level(deps) == "suggest"
    assert "Widgets weekly #4" in [m.subject for m in ews.messages("inbox")]  # Wrong category moved it back
    notices = [
        m for m in slack.bot_messages("D0EMMA") if "went back from *auto* to *suggest*" in (m.text or "")
    ]
    assert notices and "Widgets weekly #3" in notices[0].text
    # each corrected item links to the digest/DM message that showed it
    (undone,) = [line for line in notices[0].text.splitlines() if "Widgets weekly #3" in line]
    assert (
        undone.startswith("• <https://standin.slack.local/archives/D0EMMA/p")
        and "|Widgets weekly #3>" in undone
    )

    # Suggest again: the next newsletter waits for Apply.
    _news(ews, 1, start=5)
    _triage(poller, deps)
    latest = _items(deps)["Widgets weekly #5"]
    assert latest.folder == "inbox" and "mail_apply_move" in _buttons(slack, latest.task_id)

    # Levels survive a restart: a fresh engine on the same database sees the same level.
    fresh = Database(deps.db.url)
    try:
        assert _level(deps, fresh) == "suggest"
    finally:
        fresh.dispose()

    # Audit: each step; the report splits by level.
    with deps.db.read() as s:
        actions = [a.action for a in s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()]
    for step in ("autonomy.verdict", "autonomy.offer", "autonomy.promoted", "autonomy.demoted", "mail.move"):
        assert any(a.startswith(step) for a in actions), step
    report = build_adoption(
        deps.db,
        since=None,
        until=None,
        viewer=Viewer.auditor(),
        policy=deps.policy.current,
        config=outcomes.config_from_settings(deps.settings),
    )
    levels = {r["level"]: r for r in report["by_level"]}
    assert {"suggest", "auto"} <= set(levels)


@pytest.mark.parametrize("autonomy_levels", [{"start": "shadow", "max": "auto"}])
def test_shadow_agreement_from_the_owners_own_moves(ews, poller, mail_deps, slack, autonomy_levels):
    """Shadow: nothing moves and nothing is shown; the sweep compares where the owner put each message."""
    deps = mail_deps
    ids = _news(ews, 4)
    _triage(poller, deps)
    items = _items(deps)
    assert len(ews.messages("inbox")) == 4
    assert all("mail_apply_move" not in _buttons(slack, i.task_id) for i in items.values())
    assert all("Would move" not in _text_of(slack, i.task_id) for i in items.values())
    # The owner files #0 where Clawback would have, #1 in another triage folder, leaves #2 in the Inbox and
    # files #3 in a folder of their own, which EWS agreement does not search (README: what shadow can see).
    _owner_move(ews, ids[0], "Newsletters")
    _owner_move(ews, ids[1], "Action")
    _owner_move(ews, ids[3], "Receipts")
    verdicts.sweep(
        deps, now=datetime.now(UTC) + timedelta(hours=deps.settings.clawback_outcome_window_hours + 1)
    )
    with deps.db.read() as s:
        got = {
            d.task_id: d.verdict
            for d in s.execute(
                select(AutonomyDecision).where(AutonomyDecision.action == "mail.move")
            ).scalars()
        }
    by_subject = {i.subject: got[i.task_id] for i in items.values()}
    assert by_subject == {
        "Widgets weekly #0": "accepted",
        "Widgets weekly #1": "rejected",
        "Widgets weekly #2": "none",
        "Widgets weekly #3": "none",
    }


def _owner_move(ews, item_id: str, folder: str) -> None:
    """The owner moves a message in Outlook (a folder under the Inbox, created if needed)."""
    ews.move(item_id, folder)


@pytest.mark.parametrize("autonomy_levels", [{"start": "suggest", "max": "suggest"}])
def test_the_cap_holds_no_offer_above_max(ews, poller, mail_deps, slack, sender, autonomy_levels):
    """max = suggest: three Applies earn nothing; the level stays suggest."""
    deps = mail_deps
    _news(ews, 3)
    _triage(poller, deps)
    for item in _items(deps).values():
        _, ts = _buttons(slack, item.task_id)["mail_apply_move"]
        _click(sender, "mail_apply_move", item.task_id, ts)
        drain(deps)
    assert len(ews.messages("Newsletters")) == 3
    with deps.db.read() as s:
        assert s.execute(select(AutonomyOffer)).scalars().all() == []
    assert _level(deps) == "suggest"


def test_dismiss_rejects_and_does_nothing(ews, poller, mail_deps, slack, sender):
    """Dismiss: nothing moves, the proposal is rejected, the buttons go."""
    deps = mail_deps
    _news(ews, 1)
    _triage(poller, deps)
    (item,) = _items(deps).values()
    _, ts = _buttons(slack, item.task_id)["mail_dismiss"]
    _click(sender, "mail_dismiss", item.task_id, ts)
    drain(deps)
    assert len(ews.messages("inbox")) == 1
    with deps.db.read() as s:
        (d,) = s.execute(select(AutonomyDecision).where(AutonomyDecision.action == "mail.move")).scalars()
    assert d.verdict == "rejected"
    assert "mail_apply_move" not in _buttons(slack, item.task_id)


@pytest.mark.parametrize("autonomy_levels", [{"start": "auto", "max": "auto"}])
def test_auto_kept_through_the_window_is_accepted(ews, poller, mail_deps, slack, autonomy_levels):
    """auto: moved at once; with no correction by the window's end the sweep accepts it (outcome auto_kept)."""
    deps = mail_deps
    _news(ews, 1)
    _triage(poller, deps)
    (item,) = _items(deps).values()
    assert item.folder == "Newsletters"
    later = datetime.now(UTC) + timedelta(hours=deps.settings.clawback_outcome_window_hours + 1)
    assert verdicts.sweep(deps, now=later) >= 1
    assert verdicts.sweep(deps, now=later) == 0  # judged once
    with deps.db.read() as s:
        (d,) = s.execute(select(AutonomyDecision).where(AutonomyDecision.action == "mail.move")).scalars()
    assert (d.level, d.verdict) == ("auto", "accepted") and d.outcome_id is not None


@pytest.mark.parametrize("autonomy_levels", [{"start": "shadow", "max": "auto"}])
def test_an_offer_the_housekeeping_sweep_finds_is_offered(ews, poller, mail_deps, slack, autonomy_levels):
    """Shadow agreement judged at the window's end by the workers' housekeeping (it enqueues the mail verdict
    sweep): three of three agreed → the offer DM goes out."""
    from sqlalchemy import update

    from bot.ops.worker import housekeeping_once

    deps = mail_deps
    ids = _news(ews, 3)
    _triage(poller, deps)
    for item_id in ids:
        _owner_move(ews, item_id, "Newsletters")
    with deps.db.session() as s:  # the outcome window has passed for these decisions
        s.execute(update(AutonomyDecision).values(created_at=datetime.now(UTC) - timedelta(days=30)))
    assert housekeeping_once(deps)["mail_verdict_sweeps"] == 1
    drain(deps)
    with deps.db.read() as s:
        (offer,) = s.execute(select(AutonomyOffer)).scalars().all()
    assert (offer.from_level, offer.to_level) == ("shadow", "suggest")
    assert [m for m in slack.bot_messages("D0EMMA") if "right 3 of your last 3" in (m.text or "")]


SUGGEST_LABEL_AND_DRAFT = """
[autonomy.actions."mail.categorize"]
start = "suggest"
max = "auto"

[autonomy.actions."mail.draft"]
start = "suggest"
max = "auto"
"""


def _decision(deps, task_id: str, action: str) -> AutonomyDecision:
    with deps.db.read() as s:
        return s.execute(
            select(AutonomyDecision).where(
                AutonomyDecision.task_id == task_id, AutonomyDecision.action == action
            )
        ).scalar_one()


def _action_row(deps, triage_id: str, kind: str) -> Action:
    from bot.db import Task

    with deps.db.read() as s:
        return s.execute(
            select(Action)
            .join(Task, Task.id == Action.task_id)
            .where(Action.kind == kind, Task.parent_id == triage_id)
        ).scalar_one()


@pytest.mark.parametrize("more_rules", [SUGGEST_LABEL_AND_DRAFT])
def test_apply_label_sets_the_proposed_label(ews, poller, mail_deps, slack, sender, more_rules):
    """suggest for labels: nothing labelled at triage; the owner's Apply label → exactly the proposed label in the
    mailbox (their own categories kept), the decision accepted, the action row at suggest."""
    deps = mail_deps
    (item_id,) = _news(ews, 1)
    ews.set_categories(item_id, ["Owner's own"])
    _triage(poller, deps)
    (item,) = _items(deps).values()
    assert ews.message(item_id).categories == ["Owner's own"] and item.label is None
    assert "Would label Newsletter" in _text_of(slack, item.task_id)
    label, ts = _buttons(slack, item.task_id)["mail_apply_label"]
    assert label == "Apply label"
    _click(sender, "mail_apply_label", item.task_id, ts)
    drain(deps)
    assert ews.message(item_id).categories == ["Owner's own", "Newsletter"]
    assert _items(deps)[item.subject].label == "Newsletter"
    assert _decision(deps, item.task_id, "mail.categorize").verdict == "accepted"
    assert _action_row(deps, item.task_id, "mail.categorize").autonomy_level == "suggest"
    assert "mail_apply_label" not in _buttons(slack, item.task_id)


@pytest.mark.parametrize("more_rules", [SUGGEST_LABEL_AND_DRAFT])
def test_apply_save_draft_saves_the_proposed_draft(ews, poller, mail_deps, slack, sender, more_rules):
    """suggest for drafts: the reply is written but not saved; "Apply: save draft" saves exactly that text to
    Drafts, to the sender only; the decision is accepted; a second click saves nothing more."""
    deps = mail_deps
    ews.add_message(
        subject="Lunch on Thursday?",
        sender="dave@example.com",
        body_text="Are you free for lunch on Thursday?",
        internet_message_id="<lunch@example.com>",
    )
    _triage(poller, deps)
    item = _items(deps)["Lunch on Thursday?"]
    assert item.draft_status == "proposed" and item.draft_text and ews.drafts() == []
    assert "Draft ready to save" in _text_of(slack, item.task_id)
    label, ts = _buttons(slack, item.task_id)["mail_apply_draft"]
    assert label == "Apply: save draft"
    for _ in range(2):
        _click(sender, "mail_apply_draft", item.task_id, ts)
        drain(deps)
    (draft,) = ews.drafts()
    assert draft.to == ["dave@example.com"] and item.draft_text in draft.body_text
    saved = _items(deps)["Lunch on Thursday?"]
    assert saved.draft_status == "open" and saved.draft_id == draft.item_id
    assert _decision(deps, item.task_id, "mail.draft").verdict == "accepted"
    assert _action_row(deps, item.task_id, "mail.draft").autonomy_level == "suggest"
