"""Attack: an administrator pauses mail triage (`clawback pause --intent triage`) during an incident; the owner (or
a compromised client replaying clicks) then clicks Apply / Undo move / Confirm send on items triaged earlier. Those
clicks are tasks of their own intents (mail_apply, mail_undo, mail_send, ...), and each acts on the mailbox: a pause
of triage must stop them too. Without it, "pause mail triage" left every mailbox write one click away."""

from __future__ import annotations

import pytest

from bot import controls
from bot.db import Database
from workers.mail import INTENTS as MAIL_INTENTS


@pytest.mark.parametrize("intent", sorted(MAIL_INTENTS))
def test_a_triage_pause_covers_every_mail_intent(db: Database, intent: str) -> None:
    controls.pause(db, by="U0ADMIN", intent="triage", reason="incident")
    assert controls.active_pause(db, user="U0OWNER", intent=intent) is not None
    with db.session() as s:
        assert controls.is_paused(s, user="U0OWNER", intent=intent)


def test_a_pause_of_one_follow_up_intent_stays_narrow(db: Database) -> None:
    controls.pause(db, by="U0ADMIN", intent="mail_send", reason="no sending today")
    assert controls.active_pause(db, user="U0OWNER", intent="mail_send") is not None
    assert controls.active_pause(db, user="U0OWNER", intent="triage") is None
    assert controls.active_pause(db, user="U0OWNER", intent="mail_apply") is None


def test_a_deploy_pause_covers_every_deploy_intent(db: Database) -> None:
    controls.pause(db, by="U0ADMIN", intent="deploy", reason="change freeze")
    for intent in ("deploy_plan", "deploy_request", "deploy_execute", "deploy_rollback"):
        assert controls.active_pause(db, user="U0DEV", intent=intent) is not None
