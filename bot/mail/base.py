"""The mailbox abstraction: plain message and sync records, the ``Mailbox`` protocol and its errors.

    ClawbackError
    └── MailError                 a mailbox operation failed
        ├── MailThrottled         the server asked us to back off (``back_off_seconds``)
        ├── MailAuthError         credentials were rejected
        ├── MailUnavailable       the server could not be reached or answered garbage
        ├── MailNotFound          a folder or item the caller named does not exist
        └── MailSyncStateInvalid  the server rejected a sync state: sync again from None

There is deliberately no free-form send and no delete of mail: the bot can only send a draft it created as a
reply, and only delete a reply draft that is still in Drafts (``delete_draft``, for the owner's Discard).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from bot.errors import ClawbackError

ChangeKind = Literal["create", "update", "delete", "read_flag"]
DraftDeletion = Literal["deleted", "gone", "not a draft"]


class MailError(ClawbackError):
    """A mailbox operation failed."""


class MailThrottled(MailError):
    """The server is busy; retry after ``back_off_seconds``."""

    def __init__(self, back_off_seconds: float, message: str = "mail server asked us to back off") -> None:
        super().__init__(f"{message} ({back_off_seconds:g}s)")
        self.back_off_seconds = back_off_seconds


class MailAuthError(MailError):
    """The mail server rejected the credentials."""


class MailUnavailable(MailError):
    """The mail server could not be reached or gave an unusable answer."""


class MailNotFound(MailError):
    """A folder or item does not exist."""


class MailSyncStateInvalid(MailError):
    """The server rejected the sync state; start over with ``sync_state=None``."""


@dataclass
class MailMessage:
    """One message as the rest of Clawback sees it; ``folder`` is the logical folder name."""

    item_id: str
    change_key: str
    internet_message_id: str
    subject: str
    sender_email: str
    sender_name: str
    to: list[str]
    cc: list[str]
    received_at: datetime
    body_text: str
    body_html: str | None
    categories: list[str] = field(default_factory=list)
    folder: str = "inbox"
    is_read: bool = False
    in_reply_to: str | None = None
    conversation_id: str | None = None
    has_attachments: bool = False
    size: int = 0


@dataclass
class SyncChange:
    """One change reported by an incremental sync; ``message`` is None for deletes and read-flag changes."""

    kind: ChangeKind
    item_id: str
    message: MailMessage | None = None
    is_read: bool | None = None


@dataclass
class SyncResult:
    """A page of changes and the state to pass to the next sync; call again while ``more_available``."""

    changes: list[SyncChange]
    sync_state: str
    more_available: bool


@runtime_checkable
class Mailbox(Protocol):
    """What Clawback may do with a mailbox."""

    address: str

    def sync_folder(self, folder: str, sync_state: str | None, max_changes: int = 100) -> SyncResult:
        """Changes in ``folder`` ("inbox", "drafts", "sent" or a folder name) since ``sync_state``."""
        ...

    def get_message(self, item_id: str) -> MailMessage | None:
        """The message with ``item_id``, or None if it no longer exists."""
        ...

    def set_categories(self, item_id: str, categories: list[str]) -> None:
        """Replace the message's categories."""
        ...

    def move(self, item_id: str, folder_name: str) -> str:
        """Move to ``folder_name`` (created under the Inbox if missing); returns the new item id."""
        ...

    def create_reply_draft(self, item_id: str, body_text: str) -> str:
        """Save a reply addressed only to the original sender in Drafts; returns the draft id."""
        ...

    def find_reply_drafts(self, internet_message_id: str) -> list[MailMessage]:
        """Drafts in Drafts replying to the message with ``internet_message_id`` (newest first)."""
        ...

    def get_draft(self, draft_id: str) -> MailMessage | None:
        """The draft, or None if it was sent or deleted."""
        ...

    def send_draft(self, draft_id: str) -> None:
        """Send a draft; a copy lands in Sent Items."""
        ...

    def delete_draft(self, draft_id: str) -> DraftDeletion:
        """Delete a draft that is still in Drafts (EWS: moved to Deleted Items; Graph: DELETE). Returns
        ``deleted``, ``gone`` (no such item: deleted already) or ``not a draft`` (the item exists outside Drafts,
        e.g. it was sent: left alone)."""
        ...

    def find_sent_reply(self, internet_message_id: str) -> MailMessage | None:
        """The sent reply to the message with ``internet_message_id``, if any (it may have been edited)."""
        ...

    def find_message(self, internet_message_id: str, folders: list[str]) -> MailMessage | None:
        """The message with ``internet_message_id`` wherever the owner put it, its ``folder`` set: EWS looks in
        the Inbox and ``folders`` (one FindItem), Graph in the whole mailbox; None when not found."""
        ...

    def check(self) -> str:
        """One cheap authenticated call (the Inbox folder); a short description, or a ``MailError``."""
        ...

    def item_count(self, folder: str) -> int:
        """How many items ``folder`` holds now (one cheap call; the total of a first sync's progress bar)."""
        ...
