"""Mailbox access behind a small protocol; ``bot.mail.ews`` is the only module that imports exchangelib."""

from bot.mail.base import (
    MailAuthError,
    Mailbox,
    MailError,
    MailMessage,
    MailNotFound,
    MailSyncStateInvalid,
    MailThrottled,
    MailUnavailable,
    SyncChange,
    SyncResult,
)

__all__ = [
    "Mailbox",
    "MailAuthError",
    "MailError",
    "MailMessage",
    "MailNotFound",
    "MailSyncStateInvalid",
    "MailThrottled",
    "MailUnavailable",
    "SyncChange",
    "SyncResult",
]
