"""Every string a person sees from the email triage surface."""

from __future__ import annotations

DIGEST_HEADER = "Email triage for {mailbox}: {count} new message(s)"
URGENT_HEADER = "Priority 1 email in {mailbox}"
NEEDS_HUMAN = "I could not triage this one reliably, so I left it alone for you to look at."
OVERFLOW = "…and {count} more: {breakdown}. They are labelled in Outlook."
CONFIRMED = "Marked right by <@{user}>."
CORRECTED = "Corrected to *{label}* by <@{user}>."
DRAFT_SENT = "Draft sent by <@{user}>."
DRAFT_DISCARDED = "Draft discarded by <@{user}> (it stays in Drafts; delete it there if you like)."
DRAFT_USED = "The reply draft was sent from Outlook."
DRAFT_GONE = "that draft is no longer in Drafts (it was sent or deleted in Outlook)"
DRAFT_NOT_OPEN = "that draft was already sent or discarded"
NOT_OWNER = "Only the owner of this mailbox can do that."
SENT_CONFIRMATION = "Sent your reply to {to} (“{subject}”)."
MAILBOX_GONE = "this mailbox is no longer configured for triage"
MAILBOX_AUTH = "the mail server rejected Clawback's credentials for {mailbox}"
