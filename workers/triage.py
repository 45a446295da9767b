"""Forwards the one RQ entry point queued by name before the mail jobs moved to ``workers/mail/``.

Jobs already in Redis call ``workers.triage.refresh_mail_message``; new ones are queued as
``workers.mail.refresh_mail_message``. Nothing else lives here.
"""

from __future__ import annotations

from workers.mail.digest import refresh_mail_message

__all__ = ["refresh_mail_message"]
