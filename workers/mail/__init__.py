"""Email triage jobs: classify each email (structured output), act within the owner's scopes, tell the owner.

Intents: ``triage`` (one email, created by the poller; short emails of one mailbox share a classification
call, and an email that may get a reply draft has it written by a call of its own that sees only that email),
``mail_digest`` (the owner's digest DM, created by the poller after a poll), ``mail_preview`` (the owner
clicked "Send draft": show the exact draft), ``mail_send`` (the owner clicked "Confirm send" under it) and
``mail_relabel`` (the owner picked the right category after "Wrong category"), ``mail_discard`` (the owner
clicked "Discard draft": the draft Clawback saved is deleted), ``mail_apply`` and ``mail_undo`` (earned autonomy:
the owner applied a proposal, or undid an automatic move). The email is untrusted data: it
decides nothing about which actions run, who a draft goes to, or which links, addresses or numbers it may
carry; code does.

One file per job or concern, each importing only those listed before it:

- ``actuator``: the only code that changes a mailbox (audited before each effect), and the owner's DM.
- ``items``: the triage record (``MailItem``) and its email: mailbox config and client, fetch, clean, save.
- ``decide``: the classification call: schema, ``Decision``, prompt, answer parsing, token shares.
- ``batch``: which short queued emails share the leader's call, and the leases on their records.
- ``draft``: who may get a reply draft, and the one-email call that writes it.
- ``act``: acting on a stored decision (label, draft, move), refused drafts, the priority-1 DM.
- ``triage``: the ``triage`` job.
- ``digest``: the ``mail_digest`` job and ``refresh_mail_message`` (a message rebuilt after a click).
- ``send``: the ``mail_preview`` and ``mail_send`` jobs.
- ``relabel``: the ``mail_relabel`` job.
- ``discard``: the ``mail_discard`` job.
- ``apply``: the ``mail_apply`` (Apply a proposal) and ``mail_undo`` (Undo an automatic move) jobs.
- ``verdicts``: the sweep that judges earned-autonomy decisions at the end of the outcome window.

RQ entry point: ``workers.mail.refresh_mail_message`` (jobs queued under the older name
``workers.triage.refresh_mail_message`` still run: ``workers/triage.py`` forwards it).
"""

from __future__ import annotations

from workers.mail.apply import apply_proposal, undo_move
from workers.mail.digest import digest, refresh_mail_message
from workers.mail.discard import discard_draft
from workers.mail.relabel import relabel
from workers.mail.send import preview_send, send_draft
from workers.mail.triage import triage

__all__ = ["INTENTS", "refresh_mail_message"]

INTENTS = {
    "triage": ("mail.read", triage),
    "mail_digest": ("mail.read", digest),
    "mail_preview": ("mail.send", preview_send),
    "mail_send": ("mail.send", send_draft),
    "mail_relabel": ("mail.categorize", relabel),
    "mail_discard": ("mail.draft", discard_draft),
    "mail_apply": ("mail.read", apply_proposal),  # the actuator checks the applied action's own scope
    "mail_undo": ("mail.move", undo_move),
}
