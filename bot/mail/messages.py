"""Every string a person sees from the email triage surface."""

from __future__ import annotations

DIGEST_HEADER = "Email triage for {mailbox}: {count} new message(s)"
URGENT_HEADER = "Priority 1 email in {mailbox}"
NEEDS_HUMAN = "I could not triage this one reliably, so I left it alone for you to look at."
OVERFLOW = "…and {count} more: {breakdown}. They are labelled in Outlook."
CONFIRMED = "Marked right by <@{user}>."
CORRECTED = "Corrected to *{label}* by <@{user}>."
DRAFT_SENT = "Draft sent by <@{user}>."
DRAFT_DISCARDED = "Draft discarded by <@{user}>: deleted from Drafts."
DRAFT_NOT_OURS = "that draft is not one Clawback saved for this email, so it was left alone"
DRAFT_ALREADY_SENT = "that draft was sent already, so nothing was deleted"
DRAFT_USED = "The reply draft was sent from Outlook."
DRAFT_GONE = "that draft is no longer in Drafts (it was sent or deleted in Outlook)"
DRAFT_NOT_OPEN = "that draft was already sent or discarded"
NOT_OWNER = "Only the owner of this mailbox can do that."
SENT_CONFIRMATION = "Sent your reply to {to} (“{subject}”)."
MAILBOX_GONE = "this mailbox is no longer configured for triage"
MAILBOX_AUTH = "the mail server rejected Clawback's credentials for {mailbox}"
RELABEL_UNKNOWN = "that email or category is not known any more, so its label was left as it was"
DRAFT_REFUSED = "No reply draft was saved: it held {reasons}."
DRAFT_BATCHED = "text written by a model call that also read other emails"
DRAFT_NOT_WRITTEN = "No reply draft was saved: the model's answer was not a usable draft ({problem})."
DRAFT_NO_BUDGET = "No reply draft was written: {reason}"
SEND_PREVIEW_HEADER = "Send this reply?"
SEND_PREVIEW_TEXT = "Send this reply to {to}? Nothing is sent until you click “Confirm send”."
SEND_PREVIEW_NOTE = (
    "This is the exact text and the recipients that will be sent. "
    "Edited it in Outlook? Click “Send draft” again."
)
SEND_PREVIEW_TOO_LONG = (
    "This draft is {chars:,} characters long, too long to show here in full, so it can only be sent from "
    "Outlook."
)
CONFIRM_SEND = "Confirm send"
DRAFT_CHANGED = (
    "the draft is not what you confirmed any more (its text or recipients changed), so nothing was sent; "
    "click “Send draft” again to see it as it is now"
)
DRAFT_UNCONFIRMED = (
    "a draft is sent only after you have seen and confirmed its text; click “Send draft” to see it"
)
