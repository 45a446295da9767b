"""The mailbox actuator: the only code that changes a mailbox, and the owner's Slack DM for triage.

Each action re-checks the owner's scope and the kill switch, is recorded once per key in ``actions``, and is
audited *before* it happens (fail closed). There is no free-form send and no delete of mail: ``send_draft``
sends a draft triage saved, and ``delete_draft`` deletes one still in Drafts, each only for an owner's click.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import audit, controls, ledger, messages
from bot.db import Database, Task
from bot.errors import Denied, TransientError, UserFacingError
from bot.mail import messages as mail_messages
from bot.mail.base import (
    MailAuthError,
    Mailbox,
    MailError,
    MailMessage,
    MailNotFound,
    MailThrottled,
    MailUnavailable,
)
from bot.mail.config import MailboxConfig
from bot.mail.drafts import check_draft
from bot.mail.text import same_reply
from bot.policy import PolicyStore
from workers.actuators import _classify

log = logging.getLogger(__name__)


@contextmanager
def mail_errors(address: str) -> Iterator[None]:
    """Map mailbox errors for the worker: throttling and outages retry; bad credentials fail with a reason."""
    try:
        yield
    except MailThrottled as exc:
        raise TransientError(f"mail server busy ({address})", retry_after=exc.back_off_seconds) from exc
    except MailUnavailable as exc:
        raise TransientError(f"mail server unavailable ({address})") from exc
    except MailAuthError as exc:
        raise UserFacingError(
            mail_messages.MAILBOX_AUTH.format(mailbox=address), reason=f"mail auth: {exc}"
        ) from exc
    except MailNotFound:
        raise
    except MailError as exc:
        raise UserFacingError(f"the mail server refused: {exc}", reason=f"mail: {exc}") from exc


class MailboxActuator:
    """Acts on one mailbox for a task whose requester is the mailbox owner."""

    def __init__(self, mailbox: Mailbox, cfg: MailboxConfig, db: Database, policy: PolicyStore) -> None:
        self.mailbox = mailbox
        self.cfg = cfg
        self.db = db
        self.policy = policy

    def guard(self, task: Task, scope: str) -> None:
        """Defense in depth: the owner's scope, the owner identity, and the kill switch."""
        try:
            if task.requester != self.cfg.owner:
                raise Denied(
                    mail_messages.NOT_OWNER, reason=f"{task.requester} does not own {self.cfg.address}"
                )
            self.policy.current.require(task.requester, scope)
            if controls.active_pause(self.db, user=task.requester, intent=task.intent):
                raise Denied(messages.PAUSED, reason="paused by an administrator")
        except Denied as exc:
            audit.record(
                self.db,
                actor="clawback",
                on_behalf_of=task.requester,
                action=scope,
                decision="deny",
                task_id=task.id,
                target=self.cfg.address,
                scope=scope,
                details={"reason": exc.reason},
            )
            raise

    def _begin(
        self,
        task: Task,
        scope: str,
        key: str,
        detail: dict[str, Any],
        level: str | None = None,
        kind: str | None = None,
    ) -> tuple[Any, bool]:
        self.guard(task, scope)
        return ledger.begin_action(
            self.db,
            task_id=task.id,
            key=key,
            kind=kind or scope,
            scope=scope,
            target=self.cfg.address,
            detail=detail,
            autonomy_level=level,
        )

    def _audit(self, task: Task, scope: str, detail: dict[str, Any]) -> None:
        audit.record(
            self.db,
            actor="clawback",
            on_behalf_of=task.requester,
            action=scope,
            task_id=task.id,
            target=self.cfg.address,
            scope=scope,
            details=detail,
        )

    def categorize(
        self, task: Task, item_id: str, categories: list[str], *, level: str | None = None
    ) -> None:
        """Set the message's Exchange categories (mail.categorize); ``level``: the autonomy level in force."""
        key = f"{task.id}:mail.categorize"
        detail = {"item_id": item_id, "categories": categories}
        action, created = self._begin(task, "mail.categorize", key, detail, level)
        if not created and action.status == "done":
            return
        self._audit(task, "mail.categorize", detail)
        with mail_errors(self.cfg.address):
            self.mailbox.set_categories(item_id, categories)
        ledger.complete_action(self.db, key, "done", detail)

    def move(self, task: Task, item_id: str, folder: str, *, level: str | None = None) -> str | None:
        """Move the message to a configured folder, or back to the Inbox (mail.move); returns its new id (None
        if unknown)."""
        if folder != "inbox" and folder not in self.cfg.folders.values():
            raise Denied(
                "that folder is not a configured triage folder", reason=f"folder {folder!r} not allowed"
            )
        key = f"{task.id}:mail.move"
        detail = {"item_id": item_id, "folder": folder}
        action, created = self._begin(task, "mail.move", key, detail, level)
        if not created and action.status == "done":
            return (action.result or {}).get("new_id")
        if not created:
            # A crash after the move but before recording it: the old id is gone if the move happened.
            with mail_errors(self.cfg.address):
                if self.mailbox.get_message(item_id) is None:
                    ledger.complete_action(
                        self.db, key, "done", {**detail, "new_id": None, "recovered": True}
                    )
                    return None
        self._audit(task, "mail.move", detail)
        with mail_errors(self.cfg.address):
            new_id = self.mailbox.move(item_id, folder)
        ledger.complete_action(self.db, key, "done", {**detail, "new_id": new_id})
        return new_id

    def draft_reply(
        self,
        task: Task,
        item_id: str,
        body: str,
        *,
        source: MailMessage,
        internet_message_id: str | None = None,
        level: str | None = None,
    ) -> str:
        """Save a reply draft to the original sender only (mail.draft); returns the draft id.

        The draft may carry no address, link or 4+ digit number that ``source`` (the email it answers)
        lacks, whichever backend saves it: an offending draft is refused (audited) and never saved.
        """
        key = f"{task.id}:mail.draft"
        detail = {"item_id": item_id, "chars": len(body)}
        problems = check_draft(body, source)
        if problems:
            reason = mail_messages.DRAFT_REFUSED.format(reasons="; ".join(problems))
            audit.record(
                self.db,
                actor="clawback",
                on_behalf_of=task.requester,
                action="mail.draft",
                decision="deny",
                task_id=task.id,
                target=self.cfg.address,
                scope="mail.draft",
                details={**detail, "reason": reason},
            )
            raise Denied(reason, reason=f"draft refused: {'; '.join(problems)}")
        action, created = self._begin(task, "mail.draft", key, detail, level)
        if not created and action.status == "done":
            return str((action.result or {}).get("draft_id"))
        if not created and internet_message_id:
            # A crash after saving the draft but before recording it: find it rather than save a second one.
            with mail_errors(self.cfg.address):
                drafts = self.mailbox.find_reply_drafts(internet_message_id)
            for draft in drafts:
                if same_reply(draft.body_text, body):
                    result = {**detail, "draft_id": draft.item_id, "recovered": True}
                    ledger.complete_action(self.db, key, "done", result)
                    log.info("task %s: found the reply draft saved before a crash", task.id)
                    return draft.item_id
        self._audit(task, "mail.draft", detail)
        with mail_errors(self.cfg.address):
            draft_id = self.mailbox.create_reply_draft(item_id, body)
        ledger.complete_action(self.db, key, "done", {**detail, "draft_id": draft_id})
        return draft_id

    def delete_draft(self, task: Task, draft_id: str) -> str:
        """Delete a reply draft triage saved, for the owner's Discard (scope ``mail.draft``, action kind
        ``mail.draft.delete``); returns deleted, gone (deleted already: no error) or not a draft (it left
        Drafts, e.g. sent: nothing deleted). The caller checks the draft is Clawback's own."""
        key = f"{task.id}:mail.draft.delete"
        detail = {"draft_id": draft_id}
        action, created = self._begin(task, "mail.draft", key, detail, kind="mail.draft.delete")
        if not created and action.status == "done":
            return str((action.result or {}).get("outcome") or "deleted")
        self._audit(task, "mail.draft", {**detail, "effect": "delete the draft"})
        with mail_errors(self.cfg.address):
            outcome = self.mailbox.delete_draft(draft_id)
        ledger.complete_action(self.db, key, "done", {**detail, "outcome": outcome})
        return outcome

    def send_draft(self, task: Task, draft_id: str) -> None:
        """Send a draft triage saved (mail.send): only ever for the owner's click."""
        key = f"{task.id}:mail.send"
        detail = {"draft_id": draft_id}
        action, created = self._begin(task, "mail.send", key, detail)
        if not created and action.status == "done":
            return
        if not created:
            with mail_errors(self.cfg.address):
                if self.mailbox.get_draft(draft_id) is None:
                    ledger.complete_action(self.db, key, "done", {**detail, "recovered": True})
                    return
        self._audit(task, "mail.send", detail)
        with mail_errors(self.cfg.address):
            self.mailbox.send_draft(draft_id)
        ledger.complete_action(self.db, key, "done", detail)


def _key_of(message: dict[str, Any]) -> str | None:
    payload = (message.get("metadata") or {}).get("event_payload") or {}
    return payload.get("key") if isinstance(payload, dict) else None


def find_posted_dm(client: WebClient, channel: str, idem: str, text: str, limit: int = 100) -> str | None:
    """The ts of a recent message in ``channel`` we posted under ``idem`` (from its metadata), if any."""
    resp = client.conversations_history(channel=channel, limit=limit, include_all_metadata=True)
    for m in resp.get("messages", []):
        if _key_of(m) == idem:
            return str(m["ts"])
        if "metadata" not in m and m.get("bot_id") and m.get("text") == (text[:3000] or " "):
            # History without metadata (some API versions): read the message itself with its metadata.
            one = client.conversations_replies(
                channel=channel, ts=m["ts"], include_all_metadata=True, limit=1
            )
            if any(r.get("ts") == m["ts"] and _key_of(r) == idem for r in one.get("messages", [])):
                return str(m["ts"])
    return None


def post_owner_dm(
    client: WebClient, db: Database, task: Task, *, key: str, text: str, blocks: list[dict[str, Any]]
) -> tuple[str, str]:
    """Post to the owner's DM once per key; returns (channel, ts)."""
    idem = f"{task.id}:{key}"
    action, created = ledger.begin_action(
        db, task_id=task.id, key=idem, kind="slack.dm", scope="mail.read", target=task.requester, detail={}
    )
    if not created and action.status == "done":
        return action.result["channel"], action.result["ts"]
    if not created:
        # A crash after posting but before recording it: the message carries its key in its metadata.
        try:
            channel = client.conversations_open(users=task.requester)["channel"]["id"]
            found = find_posted_dm(client, channel, idem, text)
        except SlackApiError as exc:
            raise _classify(exc) from exc
        if found:
            ledger.complete_action(db, idem, "done", {"channel": channel, "ts": found, "recovered": True})
            log.info("task %s: found the DM posted before a crash (%s)", task.id, idem)
            return channel, found
    audit.record(
        db,
        actor="clawback",
        on_behalf_of=task.requester,
        action="slack.dm",
        task_id=task.id,
        target=task.requester,
        scope="mail.read",
        details={"key": idem, "blocks": len(blocks)},
    )
    try:
        channel = client.conversations_open(users=task.requester)["channel"]["id"]
        resp = client.chat_postMessage(
            channel=channel,
            text=text[:3000] or " ",
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
            metadata={"event_type": "clawback_mail", "event_payload": {"task_id": task.id, "key": idem}},
        )
    except SlackApiError as exc:
        raise _classify(exc) from exc
    ts = str(resp["ts"])
    ledger.complete_action(db, idem, "done", {"channel": channel, "ts": ts})
    return channel, ts
