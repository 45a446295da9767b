"""Every string a person sees from the deploy assistant."""

from __future__ import annotations

from datetime import datetime

HELP = (
    "*Deploy assistant*\n"
    "• `/deploy plan <service> <ref> [env]`: what would ship (commits, PRs, files) and a risk summary, "
    "with a *Request deploy* button\n"
    "• `/deploy status [service]`: what is deployed where, and what is in flight\n"
    "• `/deploy rollback <service> <env>`: go back to the previous good version (same approvals)\n"
    "• `/deploy cancel <request id>`: cancel a pending request or a running deploy\n"
    "• `/deploy help`: this text\n"
    "Deploys start only after the approvals the policy asks for, never by the requester's own approval, "
    "and never during a change freeze."
)
USAGE_PLAN = "Usage: `/deploy plan <service> <ref> [env]`, e.g. `/deploy plan api main prod`."
USAGE_ROLLBACK = "Usage: `/deploy rollback <service> <env>`."
USAGE_CANCEL = "Usage: `/deploy cancel <request id>` (the id is in the approval message)."
UNKNOWN_REQUEST = "I can't find that deploy request."
SELF_APPROVAL = (
    "You can't approve or reject your own deploy request: someone else has to. (Cancel it instead.)"
)
CHANGED = (
    "This request's parameters changed after it was made, so approvals no longer apply. Request it again."
)
PLAN_GONE = (
    "That plan can't be requested any more (it failed, was cancelled or is unknown). "
    "Run `/deploy plan` again."
)
PLAN_NOT_YOURS = "Only the person who asked for this plan can cancel it."
PLAN_ALREADY_REQUESTED = (
    "A deploy has already been requested from this plan, so it can't be cancelled any more. "
    "Use `/deploy cancel <request id>` to cancel the request."
)
NO_DEPLOY_TOOL = "(The model only summarises; it cannot start, approve or schedule deploys.)"


def unknown_command(word: str) -> str:
    """Reply to ``/deploy <something unknown>``."""
    return f"I don't know `/deploy {word}`.\n\n{HELP}"


def ack_queued(what: str, task_id: str) -> str:
    """The immediate ephemeral answer to a command that became a task."""
    return f"{what} (task `{task_id}`)"


def unknown_service(service: str, known: list[str]) -> str:
    """A command named a service the policy does not list."""
    listed = ", ".join(f"`{s}`" for s in known) or "none are configured"
    return f"I don't know the service `{service}` (known: {listed})."


def unknown_env(service: str, env: str, known: list[str]) -> str:
    """A command named an environment the service does not have."""
    return f"`{service}` has no environment `{env}` (it has: {', '.join(f'`{e}`' for e in known)})."


def unknown_ref(service: str, ref: str) -> str:
    """The ref does not exist in the repository."""
    return f"`{ref}` is not a branch, tag or commit of `{service}`'s repository."


def frozen(service: str, env: str, window: str, until: datetime) -> str:
    """A deploy refused because of a change freeze."""
    return (
        f"`{service}` → `{env}` is in a change freeze ({window}) until {until:%a %Y-%m-%d %H:%M} UTC, "
        "so nothing was deployed."
    )


def base_unknown(env: str) -> str:
    """The plan's summary when nobody knows what runs in ``env``."""
    return (
        f"Base unknown: Clawback has not deployed to `{env}`, GitHub lists no successful deployment there "
        "and the policy sets no `baseline`, so there is nothing to compare with and no risk was assessed. "
        "Review the commit yourself, or set `baseline` for this service in the policy."
    )


def ci_unavailable(detail: str) -> str:
    """The CI could not be reached (after retries)."""
    return f"the CI API is unavailable or timing out ({detail})"


def ci_refused(detail: str) -> str:
    """The CI rejected our credentials or the request."""
    return (
        f"the CI refused the request ({detail}); an admin should check the deploy workflow and the token "
        "(it needs actions:write and contents:write on the repository)"
    )


def pinned_ref_conflict(detail: str) -> str:
    """Our per-request ref exists at another commit: someone created it, so the deploy does not start."""
    return (
        f"the ref Clawback pins the approved commit to already exists at another commit ({detail}); "
        "nothing was deployed. An admin should check who created it and delete it; then request the deploy again"
    )


def wrong_commit(request_id: str, ran: str, approved: str, url: str | None) -> str:
    """The followed run reports a commit other than the approved one: recorded as failed."""
    link = f" (<{url}|run>)" if url else ""
    return (
        f":x: Deploy `{request_id}` is recorded as *failed*: the run{link} was at `{ran[:12]}`, "
        f"not the approved `{approved[:12]}`. Nothing was recorded as deployed."
    )


def not_pending(request_id: str, status: str) -> str:
    """A click on a request that is no longer waiting for decisions."""
    return f"Deploy request `{request_id}` is already {status}; nothing changed."


def expired(request_id: str) -> str:
    """Approval attempted after the request's approval window."""
    return (
        f"Deploy request `{request_id}` expired before it was approved. Ask for a new one (`/deploy plan`)."
    )


def missing_approve_scope(scope: str) -> str:
    """Approval by someone without the approver scope."""
    return f"You don't have `{scope}`, so you can't approve or reject this deploy."


def already_decided(decision: str) -> str:
    """A second click by the same person."""
    return f"You already chose {decision} on this request; that still stands."


def rejected(user: str) -> str:
    """Posted when a request is rejected."""
    return f"Rejected by <@{user}>. Nothing will be deployed."


def approved_ready(user: str) -> str:
    """The last needed approval arrived."""
    return f"Approved by <@{user}>. Starting the deploy."


def approved_waiting(user: str, count: int, needed: int) -> str:
    """An approval arrived but more are needed."""
    return f"Approved by <@{user}> ({count} of {needed}). Waiting for more approvals."


def approvals_missing(count: int, needed: int) -> str:
    """Execution refused for want of valid approvals."""
    return (
        f"this deploy has {count} valid approval(s) of the {needed} needed (approvals expire, and count only "
        "for the exact request and from people who still may approve)"
    )


def locked(service: str, env: str, holder: str) -> str:
    """Another deploy of the same target is in flight."""
    return (
        f"another deploy of `{service}` to `{env}` is in flight (request `{holder}`); "
        "wait for it to finish, or cancel it, and request again"
    )


def approval_needed(
    request_id: str,
    service: str,
    env: str,
    sha: str,
    requester: str,
    approvers: list[str],
    needed: int,
    ttl_minutes: float,
) -> str:
    """The message asking approvers to decide."""
    who = " ".join(f"<@{u}>" for u in approvers) or "_(nobody holds the approver scope; ask an admin)_"
    return (
        f"*Deploy request* `{request_id}` by <@{requester}>: `{service}` `{sha[:12]}` → `{env}`.\n"
        f"Needs {needed} approval(s) from someone other than the requester: {who}\n"
        f"Open for {ttl_minutes:g} minutes; approvals count only for exactly this request."
    )


def started(request_id: str, service: str, env: str, sha: str, url: str | None) -> str:
    """The deploy was triggered."""
    link = f" · <{url}|run>" if url else ""
    return f"Deploy `{request_id}` started: `{service}` `{sha[:12]}` → `{env}`{link}"


def run_update(request_id: str, status: str, url: str | None) -> str:
    """A run status change."""
    link = f" · <{url}|run>" if url else ""
    return f"Deploy `{request_id}`: {status.replace('_', ' ')}{link}"


def finished(request_id: str, final: str, service: str, env: str, sha: str, url: str | None) -> str:
    """A run's final result."""
    icon = {"succeeded": ":white_check_mark:", "failed": ":x:", "cancelled": ":no_entry_sign:"}.get(final, "")
    link = f" · <{url}|run>" if url else ""
    return f"{icon} Deploy `{request_id}` {final}: `{service}` `{sha[:12]}` → `{env}`{link}".strip()


def unknown_result(request_id: str, polls: int) -> str:
    """Following the run gave up."""
    return (
        f":warning: Deploy `{request_id}`: I stopped following the run after {polls} checks and don't know "
        "how it ended. It is marked *unknown* and the environment stays locked: check the run in the CI, "
        f"then `/deploy cancel {request_id}` to release it."
    )


def cancelled(request_id: str, user: str) -> str:
    """A request or run was cancelled."""
    return f"Deploy request `{request_id}` cancelled by <@{user}>."


def cancel_requested(request_id: str, user: str) -> str:
    """A running deploy is being cancelled."""
    return f"<@{user}> asked the CI to cancel deploy `{request_id}`; I'll post the result."


def cannot_cancel(request_id: str, status: str) -> str:
    """Cancel of a finished request."""
    return f"Deploy request `{request_id}` is {status}; there is nothing to cancel."


CANCEL_NOT_ALLOWED = "Only the requester or an approver of that environment can cancel this deploy."
WEBHOOK_NO_CANCEL = (
    "This service deploys through a webhook; cancel the run in that CI (I'll keep following it)."
)


def no_rollback_target(service: str, env: str) -> str:
    """Nothing earlier to go back to."""
    return f"I have no earlier good version of `{service}` in `{env}` to roll back to."


def plan_cancelled(user: str) -> str:
    """The plan's Cancel button was clicked."""
    return f"Plan cancelled by <@{user}>."
