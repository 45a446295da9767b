"""The mail poller (``clawback mail-poll``): incremental sync of every configured mailbox into triage tasks.

Per mailbox and poll:

1. Inbox: ``SyncFolderItems`` from the state stored in SQL, one page at a time. New messages become tasks
   (idempotency key ``mail:<mailbox>:<Internet Message-ID or item id>``, queue BULK); the stored state moves
   on only after the page's tasks are committed *and* enqueued, so a crash or a Redis outage repeats a page
   (deduplicated) instead of skipping one. The first run triages only the last ``first_sync_days`` days.
2. Outcomes: the Drafts folder and the folders triage moved mail into are synced only while triaged mail
   there is still being watched, so an idle poll of a quiet mailbox is one request whatever its size.
   The owner moving mail out of its folder or changing its label records ``label_corrected``; a reply draft
   that disappears from Drafts records ``draft_sent_unchanged``/``draft_sent_edited`` (found in Sent Items)
   or ``draft_discarded``.
3. A digest task for the owner when triaged mail is waiting (every poll with ``--once``; otherwise at most
   every ``CLAWBACK_MAIL_DIGEST_MINUTES``).

Throttling (``ErrorServerBusy``) backs off for the server's hint; bad credentials are logged clearly and back
off exponentially; other mailboxes carry on either way.
"""

from __future__ import annotations

import hashlib
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from bot import ledger
from bot.db import Database, Task, utcnow
from bot.errors import ConfigError
from bot.ingress import IngressDeps, redactor_for, submit
from bot.ledger import NewTask
from bot.mail.base import (
    MailAuthError,
    Mailbox,
    MailError,
    MailMessage,
    MailNotFound,
    MailSyncStateInvalid,
    MailThrottled,
    SyncChange,
)
from bot.mail.config import LABEL_CATEGORIES, MailboxConfig, mailboxes_from
from bot.mail.models import MailItem, MailSyncState
from bot.mail.text import same_reply
from bot.queue import BULK
from bot.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger(__name__)

# ``progress(done, total, step)``: a first sync's progress (items read of about ``total``, per mailbox).
Progress = Callable[[int, int, str], None]

INBOX = "inbox"
DRAFTS = "drafts"
MAX_PAGES_PER_POLL = 1000  # a safety bound: 1000 pages x batch size changes in one poll
INITIAL_PAGE = 512  # page size when establishing a watched folder's state


@dataclass
class PollReport:
    """What one poll of one mailbox did."""

    mailbox: str
    ok: bool = True
    pages: int = 0
    changes: int = 0
    created: int = 0
    duplicates: int = 0
    skipped_old: int = 0
    outcomes: int = 0
    digest_task: str | None = None
    error: str | None = None
    back_off: float | None = None
    notes: list[str] = field(default_factory=list)


def idempotency_key(mailbox: str, msg: MailMessage | None, item_id: str) -> str:
    """``mail:<mailbox>:<Internet Message-ID or item id>``, hashed when too long for the column."""
    ident = (msg.internet_message_id if msg is not None else "") or item_id
    key = f"mail:{mailbox}:{ident}"
    if len(key) > 255:
        key = f"mail:{mailbox}:sha256:{hashlib.sha256(ident.encode()).hexdigest()}"
    return key[:255]


# -- sync state ----------------------------------------------------------------------------------------


def load_state(db: Database, mailbox: str, folder: str) -> MailSyncState:
    """The stored sync state of a folder (created empty on first use)."""
    with db.session() as s:
        row = s.execute(
            select(MailSyncState).where(MailSyncState.mailbox == mailbox, MailSyncState.folder == folder)
        ).scalar_one_or_none()
        if row is not None:
            return row
    try:
        with db.session() as s:
            row = MailSyncState(
                mailbox=mailbox, folder=folder, complete=0, items_seen=0, tasks_created=0, skipped_old=0
            )
            s.add(row)
        return row
    except IntegrityError:  # another poller created it first
        return load_state(db, mailbox, folder)


def save_state(db: Database, row_id: int, **values: object) -> None:
    """Persist a folder's sync state and counters."""
    with db.session() as s:
        s.execute(
            update(MailSyncState).where(MailSyncState.id == row_id).values(updated_at=utcnow(), **values)
        )


# -- the inbox -------------------------------------------------------------------------------------------


class QueueStalled(MailError):
    """Tasks were committed but could not be enqueued: keep the sync state where it was."""


def redacted_headers(ingress: IngressDeps, msg: MailMessage) -> tuple[MailMessage, int]:
    """The message with its subject and sender redacted (what the ledger may store), and how many redactions."""
    redactor = redactor_for(ingress.policy)
    subject, c1 = redactor.redact(msg.subject or "")
    sender, c2 = redactor.redact(msg.sender_email or "")
    name, c3 = redactor.redact(msg.sender_name or "")
    clean = replace(msg, subject=subject, sender_email=sender, sender_name=name)
    return clean, sum(c1.values()) + sum(c2.values()) + sum(c3.values())


def _submit_message(ingress: IngressDeps, cfg: MailboxConfig, change: SyncChange, report: PollReport) -> bool:
    """Create and enqueue the triage task of one new message; False when it could not be enqueued.

    Only redacted headers are stored: a subject "password: …" reaches neither the task nor the triage record.
    """
    assert change.message is not None
    key = idempotency_key(cfg.address, change.message, change.item_id)
    msg, redactions = redacted_headers(ingress, change.message)
    new = NewTask(
        idempotency_key=key,
        requester=cfg.owner,
        surface="email",
        intent="triage",
        trigger="automation",
        payload={
            "mailbox": cfg.address,
            "item_id": msg.item_id,
            "internet_message_id": msg.internet_message_id or None,
            "subject": (msg.subject or "")[:200],
            "sender": (msg.sender_email or "")[:200],
            "received_at": msg.received_at.isoformat(),
        },
        redactions=redactions,
    )
    sub = submit(ingress, new, scope="mail.read", queue=BULK, notify_denial=False)
    if sub.created:
        report.created += 1
        _insert_item(ingress.db, sub.task_id, cfg, msg)
        return sub.enqueued or sub.denied is not None
    report.duplicates += 1
    return _requeue_if_lost(ingress, sub.task_id)


def _insert_item(db: Database, task_id: str, cfg: MailboxConfig, msg: MailMessage) -> None:
    """The triage record (the worker creates it instead if it got there first)."""
    try:
        with db.session() as s:
            s.add(
                MailItem(
                    task_id=task_id,
                    mailbox=cfg.address,
                    item_id=msg.item_id,
                    current_item_id=msg.item_id,
                    internet_message_id=(msg.internet_message_id or None) and msg.internet_message_id[:998],
                    subject=(msg.subject or "")[:255],
                    sender=(msg.sender_email or "")[:255],
                    received_at=msg.received_at,
                    status="pending",
                    folder=INBOX,
                    corrected=0,
                    body_tokens=0,
                    raw_tokens=0,
                    prompt_tokens=0,
                    completion_tokens=0,
                )
            )
    except IntegrityError:
        pass


def _requeue_if_lost(ingress: IngressDeps, task_id: str) -> bool:
    """A duplicate whose task is still queued but whose job Redis lost (e.g. a crash before enqueue)."""
    with ingress.db.session() as s:
        status = s.execute(select(Task.status).where(Task.id == task_id)).scalar_one_or_none()
    if status != "queued":
        return True
    try:
        if ingress.queue.job_status(task_id) is None:
            ingress.queue.enqueue(task_id, queue=BULK)
            log.info("task %s: re-enqueued (its job was missing)", task_id)
    except Exception as exc:  # noqa: BLE001 - a queue outage stops the page below
        log.warning("task %s: could not re-enqueue: %s", task_id, exc)
        return False
    return True


def sync_inbox(
    cfg: MailboxConfig,
    mailbox: Mailbox,
    db: Database,
    ingress: IngressDeps,
    settings: Settings,
    report: PollReport,
    *,
    now: datetime,
    progress: Progress | None = None,
) -> None:
    """Page through the inbox's changes, creating tasks and advancing the state page by page. ``progress``
    hears of a first sync (the inbox not yet read to the end) after every page."""
    row = load_state(db, cfg.address, INBOX)
    state, complete = row.sync_state, bool(row.complete)
    days = cfg.first_sync_days if cfg.first_sync_days is not None else settings.clawback_mail_first_sync_days
    window_start = now - timedelta(days=days)
    seen, created, skipped_old = row.items_seen, row.tasks_created, row.skipped_old
    if complete:
        progress = None  # an incremental sync: a page or two, nothing to show
    total = _first_sync_total(mailbox, cfg.address) if progress is not None else 0
    if progress is not None:
        progress(seen, max(total, seen), cfg.address)
    for _ in range(MAX_PAGES_PER_POLL):
        try:
            result = mailbox.sync_folder(INBOX, state, max_changes=settings.clawback_mail_batch_size)
        except MailSyncStateInvalid:
            log.warning("mailbox %s: the server rejected the stored sync state; syncing again", cfg.address)
            report.notes.append("sync state reset")
            state, complete = None, False
            save_state(db, row.id, sync_state=None, complete=0)
            continue
        report.pages += 1
        report.changes += len(result.changes)
        page_created = report.created
        stalled = False
        for change in result.changes:
            if change.kind == "create" and change.message is not None:
                if not complete and change.message.received_at < window_start:
                    skipped_old += 1
                    report.skipped_old += 1
                    continue
                if not _submit_message(ingress, cfg, change, report):
                    stalled = True
            elif change.kind == "update" and change.message is not None:
                report.outcomes += check_labels(db, cfg, change.message, INBOX)
        seen += len(result.changes)
        created += report.created - page_created
        if stalled:
            save_state(db, row.id, items_seen=seen, tasks_created=created, last_error="queue unavailable")
            raise QueueStalled("tasks are safe in SQL but could not be enqueued; the page will be read again")
        state = result.sync_state
        complete = complete or not result.more_available
        save_state(
            db,
            row.id,
            sync_state=state,
            complete=int(complete),
            items_seen=seen,
            tasks_created=created,
            skipped_old=skipped_old,
            last_error=None,
        )
        if progress is not None:
            # The total is the inbox's size now; a server-side first-sync window (Graph) reads fewer.
            progress(seen, seen if not result.more_available else max(total, seen), cfg.address)
        if result.changes:
            log.info(
                "mailbox %s: page %d: %d change(s), %d task(s) created so far, %d duplicate(s), "
                "%d older than the first-sync window%s",
                cfg.address,
                report.pages,
                len(result.changes),
                report.created,
                report.duplicates,
                report.skipped_old,
                "; more to come" if result.more_available else "",
            )
        if not result.more_available:
            return
    report.notes.append(f"stopped after {MAX_PAGES_PER_POLL} pages; the next poll continues")


def _first_sync_total(mailbox: Mailbox, address: str) -> int:
    """The inbox's item count for the progress bar; 0 (unknown) when the server will not say."""
    try:
        return mailbox.item_count(INBOX)
    except MailError as exc:
        log.info("mailbox %s: inbox size unknown (%s); progress without a total", address, exc)
        return 0


# -- implicit outcomes -----------------------------------------------------------------------------------


def _aware(value: datetime | None) -> datetime:
    """An aware UTC datetime (some drivers hand back naive ones); None is the distant past."""
    if value is None:
        return datetime.min.replace(tzinfo=UTC)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _watch_since(settings: Settings) -> datetime:
    return utcnow() - timedelta(hours=settings.clawback_outcome_window_hours)


def check_labels(db: Database, cfg: MailboxConfig, msg: MailMessage, folder: str) -> int:
    """A changed message: if the owner removed or replaced our label, record the correction."""
    with db.session() as s:
        item = s.execute(
            select(MailItem).where(
                MailItem.mailbox == cfg.address,
                MailItem.current_item_id == msg.item_id,
                MailItem.status == "triaged",
                MailItem.corrected == 0,
            )
        ).scalar_one_or_none()
        if item is None or not item.label:
            return 0
        present = {c.lower() for c in msg.categories}
        if item.label.lower() in present:
            return 0
        to = sorted(LABEL_CATEGORIES[c] for c in present if c in LABEL_CATEGORIES)
        item.corrected = 1
        task_id, label = item.task_id, item.label
    ledger.record_outcome(
        db,
        task_id,
        "label_corrected",
        source="implicit",
        actor=cfg.owner,
        detail={"signal": "category_changed", "from": label, "to": to[0] if to else None, "folder": folder},
    )
    return 1


def _left_folder(
    db: Database, cfg: MailboxConfig, item_ids: set[str], folder: str, before: datetime | None
) -> int:
    """Record corrections for watched mail that left ``folder`` (ids given, or all not in ``item_ids``)."""
    n = 0
    with db.session() as s:
        rows = list(
            s.execute(
                select(MailItem).where(
                    MailItem.mailbox == cfg.address,
                    MailItem.folder == folder,
                    MailItem.status == "triaged",
                    MailItem.corrected == 0,
                )
            ).scalars()
        )
    for item in rows:
        if item.current_item_id not in item_ids:
            continue
        if before is not None and _aware(item.updated_at) > before:
            continue  # moved there after this sync began: not seen yet, not gone
        with db.session() as s:
            changed = s.execute(
                update(MailItem).where(MailItem.id == item.id, MailItem.corrected == 0).values(corrected=1)
            ).rowcount
        if changed:
            ledger.record_outcome(
                db,
                item.task_id,
                "label_corrected",
                source="implicit",
                actor=cfg.owner,
                detail={"signal": "moved_out_of_folder", "folder": folder, "from": item.label},
            )
            n += 1
    return n


def _draft_gone(
    db: Database, cfg: MailboxConfig, mailbox: Mailbox, draft_ids: set[str], before: datetime | None
) -> int:
    """Drafts that left Drafts: sent from Outlook (edited or not) or discarded."""
    with db.session() as s:
        rows = list(
            s.execute(
                select(MailItem).where(MailItem.mailbox == cfg.address, MailItem.draft_status == "open")
            ).scalars()
        )
    n = 0
    for item in rows:
        if item.draft_id not in draft_ids:
            continue
        if before is not None and _aware(item.updated_at) > before:
            continue
        sent = mailbox.find_sent_reply(item.internet_message_id) if item.internet_message_id else None
        if sent is not None:
            kind = (
                "draft_sent_unchanged" if same_reply(sent.body_text, item.draft_text) else "draft_sent_edited"
            )
            status = "used"
        else:
            kind, status = "draft_discarded", "discarded"
        with db.session() as s:
            changed = s.execute(
                update(MailItem)
                .where(MailItem.id == item.id, MailItem.draft_status == "open")
                .values(draft_status=status)
            ).rowcount
        if changed:
            ledger.record_outcome(
                db, item.task_id, kind, source="implicit", actor=cfg.owner, detail={"draft_id": item.draft_id}
            )
            n += 1
    return n


def watched_folders(db: Database, cfg: MailboxConfig, settings: Settings) -> list[str]:
    """Folders whose changes can still tell us something: Drafts with open drafts, and triage targets."""
    since = _watch_since(settings)
    with db.session() as s:
        drafts = s.execute(
            select(func.count())
            .select_from(MailItem)
            .where(
                MailItem.mailbox == cfg.address, MailItem.draft_status == "open", MailItem.created_at >= since
            )
        ).scalar_one()
        targets = s.execute(
            select(MailItem.folder)
            .where(
                MailItem.mailbox == cfg.address,
                MailItem.folder != INBOX,
                MailItem.status == "triaged",
                MailItem.corrected == 0,
                MailItem.created_at >= since,
            )
            .distinct()
        ).scalars()
        folders = sorted(set(targets))
    return ([DRAFTS] if drafts else []) + folders


def sync_watched(
    cfg: MailboxConfig, mailbox: Mailbox, db: Database, settings: Settings, report: PollReport, folder: str
) -> None:
    """Sync one watched folder and record what the owner did there."""
    row = load_state(db, cfg.address, folder)
    state = row.sync_state
    started = utcnow()
    initial = state is None
    seen_ids: set[str] = set()
    for _ in range(MAX_PAGES_PER_POLL):
        try:
            result = mailbox.sync_folder(folder, state, max_changes=INITIAL_PAGE if initial else 100)
        except MailSyncStateInvalid:
            state, initial, seen_ids = None, True, set()
            continue
        except MailNotFound:
            log.warning("mailbox %s: watched folder %r no longer exists", cfg.address, folder)
            return
        report.pages += 1
        gone: set[str] = set()
        for change in result.changes:
            if change.kind == "create":
                seen_ids.add(change.item_id)
            elif change.kind == "delete":
                gone.add(change.item_id)
            elif change.kind == "update" and change.message is not None and folder != DRAFTS:
                report.outcomes += check_labels(db, cfg, change.message, folder)
        if gone and not initial:
            if folder == DRAFTS:
                report.outcomes += _draft_gone(db, cfg, mailbox, gone, None)
            else:
                report.outcomes += _left_folder(db, cfg, gone, folder, None)
        state = result.sync_state
        save_state(db, row.id, sync_state=state, complete=1 if not result.more_available else row.complete)
        if not result.more_available:
            break
    if initial:
        # Establishing the state: anything we track that is not there any more left before we looked.
        if folder == DRAFTS:
            with db.session() as s:
                open_ids = set(
                    s.execute(
                        select(MailItem.draft_id).where(
                            MailItem.mailbox == cfg.address, MailItem.draft_status == "open"
                        )
                    ).scalars()
                )
            report.outcomes += _draft_gone(db, cfg, mailbox, open_ids - seen_ids, started)
        else:
            with db.session() as s:
                tracked = set(
                    s.execute(
                        select(MailItem.current_item_id).where(
                            MailItem.mailbox == cfg.address,
                            MailItem.folder == folder,
                            MailItem.corrected == 0,
                        )
                    ).scalars()
                )
            report.outcomes += _left_folder(db, cfg, tracked - seen_ids, folder, started)


# -- one mailbox -------------------------------------------------------------------------------------------


def pending_for_digest(db: Database, address: str) -> int:
    """Triage records not yet shown to the owner (priority 1 went out at once)."""
    with db.session() as s:
        return s.execute(
            select(func.count())
            .select_from(MailItem)
            .where(
                MailItem.mailbox == address,
                MailItem.digest_key.is_(None),
                MailItem.slack_ts.is_(None),
                or_(
                    MailItem.status.in_(("pending", "decided", "triaged", "needs_human")),
                    MailItem.status.like("b:%"),  # held by a triage batch in flight
                ),
            )
        ).scalar_one()


def create_digest_task(ingress: IngressDeps, cfg: MailboxConfig) -> str | None:
    """Queue the owner's digest behind the triage tasks of this poll."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%S.%f")
    sub = submit(
        ingress,
        NewTask(
            idempotency_key=f"mail-digest:{cfg.address}:{stamp}"[:255],
            requester=cfg.owner,
            surface="email",
            intent="mail_digest",
            trigger="schedule",
            payload={"mailbox": cfg.address},
        ),
        scope="mail.read",
        queue=BULK,
        notify_denial=False,
    )
    return sub.task_id if sub.created and not sub.denied else None


def poll_mailbox(
    cfg: MailboxConfig,
    mailbox: Mailbox,
    *,
    db: Database,
    ingress: IngressDeps,
    settings: Settings,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> PollReport:
    """One poll of one mailbox: new mail into tasks, then implicit outcomes. Mailbox errors propagate."""
    report = PollReport(cfg.address)
    policy = ingress.policy.current
    if not policy.has_scope(cfg.owner, "mail.read"):
        report.ok = False
        report.error = f"owner {cfg.owner} lacks the mail.read scope; mailbox not polled"
        log.warning("mailbox %s: %s", cfg.address, report.error)
        return report
    sync_inbox(cfg, mailbox, db, ingress, settings, report, now=now or utcnow(), progress=progress)
    for folder in watched_folders(db, cfg, settings):
        sync_watched(cfg, mailbox, db, settings, report, folder)
    return report


# -- the loop ------------------------------------------------------------------------------------------------


class MailPoller:
    """Polls every configured mailbox; keeps per-mailbox back-off so one bad mailbox never stops the rest."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        ingress: IngressDeps,
        mailboxes: Callable[[str], Mailbox],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
        progress: Progress | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.db = db
        self.ingress = ingress
        self.mailboxes = mailboxes
        self.clock = clock
        self.sleep = sleep
        self.rand = rand
        self.not_before: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.last_digest: dict[str, float] = {}

    def configs(self) -> list[MailboxConfig]:
        """Enabled mailboxes from the current policy."""
        return [c for c in mailboxes_from(self.ingress.policy.current.section("mailboxes")) if c.enabled]

    def _back_off(self, address: str, seconds: float) -> float:
        seconds = min(max(seconds, 0.0), self.settings.clawback_mail_max_backoff)
        self.not_before[address] = self.clock() + seconds
        return seconds

    def poll_one(self, cfg: MailboxConfig, *, once: bool = False) -> PollReport:
        """Poll one mailbox, turning every failure into a report (never raises)."""
        address = cfg.address
        try:
            mailbox = self.mailboxes(address)
            report = poll_mailbox(
                cfg, mailbox, db=self.db, ingress=self.ingress, settings=self.settings, progress=self.progress
            )
        except MailThrottled as exc:
            report = PollReport(address, ok=False, error=f"throttled: {exc}")
            report.back_off = self._back_off(address, exc.back_off_seconds)
            log.warning(
                "mailbox %s: server busy, backing off %.1f s (sync state kept)", address, report.back_off
            )
            return report
        except MailAuthError as exc:
            self.failures[address] = self.failures.get(address, 0) + 1
            secret = cfg.client_secret_env if cfg.uses_oauth else cfg.password_env
            report = PollReport(address, ok=False, error=f"credentials rejected: {exc}")
            report.back_off = self._back_off(
                address, self.settings.clawback_mail_poll_interval * 2 ** min(self.failures[address], 10)
            )
            log.error(
                "mailbox %s: the mail server rejected the credentials (user %s, secret from %s); "
                "not polling it for %.0f s; other mailboxes continue",
                address,
                cfg.username or address if not cfg.uses_oauth else f"OAuth2 client {cfg.client_id}",
                secret,
                report.back_off,
            )
            return report
        except (MailError, ConfigError) as exc:
            self.failures[address] = self.failures.get(address, 0) + 1
            report = PollReport(address, ok=False, error=f"{type(exc).__name__}: {exc}")
            report.back_off = self._back_off(
                address, self.settings.clawback_mail_poll_interval * 2 ** min(self.failures[address] - 1, 10)
            )
            log.warning(
                "mailbox %s: poll failed (%s); retrying in %.0f s", address, report.error, report.back_off
            )
            return report
        except Exception as exc:  # noqa: BLE001 - one mailbox's bug must not stop the others
            log.exception("mailbox %s: unexpected error while polling", address)
            self.failures[address] = self.failures.get(address, 0) + 1
            report = PollReport(address, ok=False, error=f"{type(exc).__name__}: {exc}")
            report.back_off = self._back_off(address, self.settings.clawback_mail_poll_interval)
            return report
        self.failures.pop(address, None)
        self.not_before.pop(address, None)
        self._maybe_digest(cfg, report, once=once)
        return report

    def _maybe_digest(self, cfg: MailboxConfig, report: PollReport, *, once: bool) -> None:
        due_every = self.settings.clawback_mail_digest_minutes * 60
        last = self.last_digest.get(cfg.address)
        if not once and (due_every <= 0 or (last is not None and self.clock() - last < due_every)):
            return
        if pending_for_digest(self.db, cfg.address) == 0:
            return
        report.digest_task = create_digest_task(self.ingress, cfg)
        self.last_digest[cfg.address] = self.clock()

    def poll_all(self, *, once: bool = False) -> list[PollReport]:
        """Poll every mailbox that is not backing off."""
        reports = []
        for cfg in self.configs():
            wait = self.not_before.get(cfg.address, 0.0) - self.clock()
            if wait > 0 and not once:
                continue
            reports.append(self.poll_one(cfg, once=once))
        return reports

    def run_once(self, *, throttle_retries: int = 3) -> int:
        """``--once``: poll every mailbox; wait out throttling a few times; 0 when all succeeded."""
        reports = {r.mailbox: r for r in self.poll_all(once=True)}
        for _ in range(throttle_retries):
            busy = [r for r in reports.values() if r.error and r.error.startswith("throttled")]
            if not busy:
                break
            self.sleep(max(r.back_off or 0.0 for r in busy))
            for r in busy:
                cfg = next(c for c in self.configs() if c.address == r.mailbox)
                reports[r.mailbox] = self.poll_one(cfg, once=True)
        for r in reports.values():
            log.info(
                "mailbox %s: %s; %d task(s) created, %d duplicate(s), %d outcome(s)%s",
                r.mailbox,
                "ok" if r.ok else f"FAILED ({r.error})",
                r.created,
                r.duplicates,
                r.outcomes,
                f", digest task {r.digest_task}" if r.digest_task else "",
            )
        if not reports:
            log.warning('no mailboxes configured: add [mailboxes."address"] tables to the policy file')
        return 0 if all(r.ok for r in reports.values()) else 1

    def run_forever(self, stop: threading.Event) -> int:
        """Poll on an interval with jitter until ``stop`` is set."""
        while not stop.is_set():
            self.poll_all()
            pause = (
                self.settings.clawback_mail_poll_interval
                + self.rand() * self.settings.clawback_mail_poll_jitter
            )
            if self.not_before:
                soonest = min(self.not_before.values()) - self.clock()
                pause = max(0.5, min(pause, soonest)) if soonest > 0 else pause
            stop.wait(pause)
        return 0


def main(settings: Settings, once: bool, *, console: Console | None = None) -> int:
    """``clawback mail-poll [--once]``. With ``--once`` on a terminal (``console``, default stderr) a first
    sync draws a progress bar; logs and non-terminals get none."""
    from bot.mail.config import mailbox_factory
    from bot.migrate import ensure_schema
    from bot.ops.progress import on_terminal, progress_bar
    from bot.policy import policy_store
    from bot.queue import TaskQueue, connect_redis

    db = Database(settings.database_url)
    ensure_schema(db)
    queue = TaskQueue(
        connect_redis(settings),
        prefix=settings.clawback_queue_prefix,
        retries=settings.clawback_job_retries,
        retry_intervals=settings.retry_intervals,
    )
    policy = policy_store(settings, db)
    ingress = IngressDeps(db=db, queue=queue, policy=policy)
    poller = MailPoller(settings, db, ingress, mailbox_factory(settings, policy))
    if once:
        shown = on_terminal(console)
        with progress_bar("first mail sync", enabled=shown, console=console) as update:
            poller.progress = update if shown else None
            return poller.run_once()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping after the current poll", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "mail poller started: every %.0f s (+ up to %.0f s jitter)",
        settings.clawback_mail_poll_interval,
        settings.clawback_mail_poll_jitter,
    )
    return poller.run_forever(stop)
