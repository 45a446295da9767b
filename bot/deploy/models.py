"""Deploy tables: requests bound to a params hash, approvals, the per service/environment lock, history.

* ``deploy_requests`` — one request to put ``sha`` of a service into an environment (a deploy or a
  rollback), bound to ``params_hash`` = sha256 of (service, environment, sha, requester).
* ``deploy_approvals`` — one decision (approve/reject) per request and person, carrying the params hash it
  was given for and when it stops counting.
* ``deploy_locks`` — at most one row per (service, environment): the primary key is the lock, so two
  processes (or machines) can never both hold it.
* ``deploy_history`` — what was deployed where and when: "what is deployed" and rollback targets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base, UTCDateTime, new_id, utcnow

# Request lifecycle: pending → executing → running → succeeded | failed | cancelled | unknown;
# pending → rejected | cancelled | expired; executing → refused (a check failed at execution time).
OPEN = ("pending", "executing", "running", "unknown")
FINISHED = ("succeeded", "failed", "cancelled", "rejected", "expired", "refused")


class DeployRequest(Base):
    """A request to deploy (or roll back to) one exact sha of a service in one environment."""

    __tablename__ = "deploy_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    task_id: Mapped[str] = mapped_column(String(32), ForeignKey("tasks.id"), unique=True)  # the request task
    plan_task_id: Mapped[str | None] = mapped_column(String(32))
    execute_task_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="deploy")  # deploy | rollback
    service: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(255))  # branch or tag the workflow is dispatched on
    sha: Mapped[str] = mapped_column(String(40))
    base_sha: Mapped[str | None] = mapped_column(String(40))  # what was deployed when it was planned
    requester: Mapped[str] = mapped_column(String(64), index=True)
    params_hash: Mapped[str] = mapped_column(String(64))
    approvals_required: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    rollback_of: Mapped[str | None] = mapped_column(String(32))  # the request whose deploy is undone
    channel_id: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    approval_ts: Mapped[str | None] = mapped_column(String(32))  # the message with Approve/Reject
    run_ref: Mapped[str | None] = mapped_column(String(512))
    run_url: Mapped[str | None] = mapped_column(String(512))
    run_status: Mapped[str | None] = mapped_column(String(16))
    polls: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_deploy_requests_target", "service", "environment", "status"),)


class DeployApproval(Base):
    """One person's decision on a request; valid only for ``params_hash`` and until ``expires_at``."""

    __tablename__ = "deploy_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(32), ForeignKey("deploy_requests.id"), index=True)
    approver: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(8))  # approve | reject
    params_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("request_id", "approver", name="uq_deploy_approvals_request_approver"),
    )


class DeployLock(Base):
    """The in-flight lock of one service/environment: the primary key makes it exclusive."""

    __tablename__ = "deploy_locks"

    service: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(32))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DeployHistory(Base):
    """A sha that reached an environment; ``rolled_back`` once a later rollback undid it."""

    __tablename__ = "deploy_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service: Mapped[str] = mapped_column(String(64))
    environment: Mapped[str] = mapped_column(String(64))
    sha: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="deploy")
    rolled_back: Mapped[bool] = mapped_column(Boolean, default=False)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_deploy_history_target", "service", "environment", "id"),)
