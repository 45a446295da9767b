"""Clawback's exception tree.

    ClawbackError                 base for everything Clawback raises on purpose
    ├── ConfigError               bad or missing configuration (names the variable)
    ├── PolicyError               malformed policy file (names the line and the reason)
    ├── SchemaOutdated            the database schema is behind the code
    ├── ServiceUnavailable        a backing service (SQL, Redis) is down; ingress answers 503
    ├── UserFacingError           carries ``user_message``: the text shown to the person
    │   ├── Denied                a scope, channel, pause or approval check said no
    │   └── BudgetExceeded        token budget or rate limit reached
    │       └── RateLimited       too many requests this minute (``notify``: tell the person, once a window)
    ├── TransientError            worth retrying (LLM 429/5xx/timeouts, Slack rate limits)
    └── Superseded                this execution lost its task to a newer one (its worker's lease expired)

Anything else is a bug: it is logged with the task id and re-raised so RQ records and retries it.
"""

from __future__ import annotations


class ClawbackError(Exception):
    """Base class for errors Clawback raises on purpose."""


class ConfigError(ClawbackError):
    """Configuration is missing or invalid."""


class PolicyError(ClawbackError):
    """The policy file is malformed; ``line`` is 1-based when known."""

    def __init__(self, reason: str, *, path: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        where = path or "policy"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {reason}")


class SchemaOutdated(ClawbackError):
    """The database schema is older than this code expects."""


class ServiceUnavailable(ClawbackError):
    """A backing service is unreachable; callers should answer 503 or retry later."""


class UserFacingError(ClawbackError):
    """An error whose ``user_message`` is safe and useful to show to the requester."""

    def __init__(self, user_message: str, *, reason: str | None = None) -> None:
        self.user_message = user_message
        self.reason = reason or user_message
        super().__init__(self.reason)


class Denied(UserFacingError):
    """A policy check refused the request; ``scope`` names what was missing when relevant."""

    def __init__(self, user_message: str, *, reason: str, scope: str | None = None) -> None:
        self.scope = scope
        super().__init__(user_message, reason=reason)


class BudgetExceeded(UserFacingError):
    """The requester's token budget or request rate is used up."""


class RateLimited(BudgetExceeded):
    """Too many requests this minute; ``notify`` is False once the person was told in this window."""

    def __init__(self, user_message: str, *, reason: str, notify: bool = True) -> None:
        self.notify = notify
        super().__init__(user_message, reason=reason)


class Superseded(ClawbackError):
    """A newer execution of the same task took over (this one's worker was presumed dead): act no more."""


class TransientError(ClawbackError):
    """A failure worth retrying later; ``retry_after`` in seconds when the server said so."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)
