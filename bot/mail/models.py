"""SQL models of the mail surface: sync state per (mailbox, folder) and one triage record per email task."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base, UTCDateTime, utcnow


class MailSyncState(Base):
    """Where the incremental sync of one folder stands; advanced only after the page's tasks are safe."""

    __tablename__ = "mail_sync_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mailbox: Mapped[str] = mapped_column(String(255))
    folder: Mapped[str] = mapped_column(String(255))  # logical name: inbox, drafts or a folder name
    sync_state: Mapped[str | None] = mapped_column(Text)
    complete: Mapped[int] = mapped_column(Integer, default=0)  # 1 once a sync reached the end at least once
    items_seen: Mapped[int] = mapped_column(Integer, default=0)
    tasks_created: Mapped[int] = mapped_column(Integer, default=0)
    skipped_old: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("mailbox", "folder", name="uq_mail_sync_state_mailbox_folder"),)


class MailItem(Base):
    """One triaged email: what was decided and done, so later syncs can see what the owner did with it."""

    __tablename__ = "mail_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(32), ForeignKey("tasks.id"), unique=True)
    mailbox: Mapped[str] = mapped_column(String(255))
    item_id: Mapped[str] = mapped_column(String(512))  # the id when the poller saw it
    current_item_id: Mapped[str] = mapped_column(String(512))  # after our move (Exchange changes ids)
    internet_message_id: Mapped[str | None] = mapped_column(String(998))
    subject: Mapped[str | None] = mapped_column(String(255))
    sender: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending triaged needs_human skipped
    reason: Mapped[str | None] = mapped_column(Text)  # why skipped / needs human
    category: Mapped[str | None] = mapped_column(String(32))
    priority: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(64))  # the Exchange category we set
    folder: Mapped[str] = mapped_column(String(255), default="inbox")  # where we left it
    draft_id: Mapped[str | None] = mapped_column(String(512))
    draft_text: Mapped[str | None] = mapped_column(Text)
    draft_status: Mapped[str | None] = mapped_column(String(16))  # open sending sent used discarded
    corrected: Mapped[int] = mapped_column(Integer, default=0)  # 1 once a correction was recorded
    feedback: Mapped[str | None] = mapped_column(String(64))  # right | wrong:<category>
    body_tokens: Mapped[int] = mapped_column(Integer, default=0)  # estimate of the text sent
    raw_tokens: Mapped[int] = mapped_column(Integer, default=0)  # estimate of the raw content
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)  # as the API reported
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    digest_key: Mapped[str | None] = mapped_column(String(32))  # the digest task that claimed it
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_mail_items_current", "mailbox", "current_item_id"),
        Index("ix_mail_items_draft", "mailbox", "draft_id"),
        Index("ix_mail_items_digest", "mailbox", "status", "digest_key"),
        Index("ix_mail_items_slack", "slack_channel", "slack_ts"),
    )
