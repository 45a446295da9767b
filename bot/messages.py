"""Every string a person sees from the core and the chat surfaces, in one place (the domain packages keep
theirs beside them: ``bot/mail/messages.py``, ``bot/deploy/messages.py``)."""

from __future__ import annotations

from datetime import datetime

CHANNEL_NOT_ALLOWED = (
    "I'm not enabled for that in this channel. Ask an admin to allow it in the Clawback policy."
)
OTHER_TEAM = (
    "Clawback works for members of this organisation only, and the Clawback policy does not enable your team, "
    "so I did not do this. Nothing was changed."
)
PAUSED = "Clawback is paused by an administrator right now, so I did not act on this. Nothing was changed."
EMPTY_QUESTION = (
    "Ask me something after the mention, e.g. `@Clawback what did we decide about the launch date?`"
)
THREAD_NOT_READ_IN_CHANNEL = (
    "I didn't read this thread: reading threads isn't enabled for me in this channel, so I answered from your "
    "message alone."
)
FEEDBACK_THANKS_RESOLVED = "Marked as resolved by <@{user}>. Thanks, that is what we measure."
FEEDBACK_THANKS_NOT_HELPFUL = "Marked as not helpful by <@{user}>. Thanks, that is what we measure."
FEEDBACK_NOT_YOURS = "Only the person who asked can rate this answer."
FEEDBACK_ONLY_ANSWERS = "These buttons rate answers only, so nothing was recorded for this task."
NO_BUDGET = (
    "You have no token budget in Clawback (none of your roles sets `daily_tokens`), so nothing was sent to the "
    "model. Ask an admin."
)


def missing_scope(scope: str) -> str:
    """Denial text naming the missing scope."""
    return f"You don't have the `{scope}` permission in Clawback, so I did not do this. Ask an admin if you need it."


def over_budget(resets_at: datetime) -> str:
    """Denial text for a used-up daily token budget."""
    return (
        "You've used your daily Clawback token budget. "
        f"It resets at {resets_at:%H:%M} UTC ({resets_at:%Y-%m-%d}). Nothing was sent to the model."
    )


def budget_too_small(needed: int, left: int, resets_at: datetime) -> str:
    """Denial text when this request's worst case does not fit in what is left of the daily budget."""
    return (
        f"This request could use up to {needed:,} tokens, but only {left:,} of your daily Clawback token budget "
        f"are left (it resets at {resets_at:%H:%M} UTC, {resets_at:%Y-%m-%d}). Nothing was sent to the model."
    )


def rate_limited(seconds: int) -> str:
    """Denial text for too many requests in a minute."""
    return f"You're sending requests faster than your limit allows. Try again in about {seconds} s."


def task_failed(task_id: str, reason: str) -> str:
    """What the user sees when a task failed for good."""
    return f"Sorry, I couldn't finish this: {reason}. Nothing else was done. (task `{task_id}`)"


def task_denied(task_id: str, reason: str) -> str:
    """What the user sees when a task was refused."""
    return f"{reason} (task `{task_id}`)"


def footer(model: str, prompt_tokens: int, completion_tokens: int, cost: float, task_id: str) -> str:
    """The context footer under every answer: model, tokens, cost, task id."""
    total = prompt_tokens + completion_tokens
    return (
        f"{model} · tokens in {prompt_tokens:,} / out {completion_tokens:,} / total {total:,}"
        f" · est. ${cost:.4f} · task `{task_id}`"
    )


# Earned autonomy (bot/autonomy.py, workers/autonomy.py)
AUTONOMY_NOT_YOURS = "Only the person this offer was made to can answer it, so nothing changed."
AUTONOMY_ACCEPTED = (
    "<@{user}> said yes: Clawback now works at *{level}* here. Corrections bring it back at once."
)
AUTONOMY_DECLINED = "<@{user}> said not now. Clawback will ask again after {n} more judged decisions."
AUTONOMY_EXPIRED = "This offer no longer applies (the level or its cap changed since), so nothing changed."

# chat.reply.channel below auto (workers/chat_reply.py): the answer reaches the asker privately first
ANSWER_SUGGESTED = (
    "Only you see this answer to your question in <#{channel}>. "
    "Post it to the thread if it helps, or dismiss it."
)
ANSWER_POSTED = "<@{user}> posted this answer to the thread."
ANSWER_DISMISSED = "<@{user}> dismissed this answer: nothing was posted in the thread."
ANSWER_NOT_YOURS = "Only the person who asked can post or dismiss this answer, so nothing happened."
ANSWER_ALREADY_DISMISSED = "This answer was dismissed, so it was not posted."
