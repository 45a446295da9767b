"""``/deploy`` and the deploy buttons. Parse, create the task (or enqueue the click), ack: nothing slow.

Surfaces: the slash command's tasks use surface ``command`` (requester = the verified ``user_id`` of the
command payload); the button-driven work (requests, executions) uses surface ``deploy``. Approve, Reject
and a plan's Cancel are clicks, not tasks: they are recorded by ``workers.deploy.handle_click`` as approval
rows and audit entries on the request they concern.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import redis
from rq import Retry
from slack_bolt import Ack, App

from bot.db import Task
from bot.deploy import blocks
from bot.deploy import messages as msg
from bot.errors import ServiceUnavailable
from bot.ingress import submit
from bot.ledger import NewTask
from bot.queue import INTERACTIVE
from handlers import payloads
from handlers.context import HandlerContext

log = logging.getLogger(__name__)

CLICK_JOB = "workers.deploy.handle_click"
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/@^~+-]{0,199}")
_ID = re.compile(r"[0-9a-f]{20}")
SCOPES = {
    "deploy_plan": "deploy.plan",
    "deploy_status": "deploy.plan",
    "deploy_rollback": "deploy.request",
    "deploy_cancel": "deploy.plan",
}


@dataclass(frozen=True)
class Command:
    """A parsed ``/deploy`` command: an intent and its payload, or ``reply`` to answer right away."""

    intent: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    reply: str | None = None
    ack: str = ""


def parse_command(text: str) -> Command:
    """Parse ``/deploy`` text (pure): plan, status, rollback, cancel, help."""
    words = (text or "").split()
    if not words or words[0].lower() in ("help", "-h", "--help"):
        return Command(reply=msg.HELP)
    verb, args = words[0].lower(), words[1:]
    if not all(_WORD.fullmatch(a) for a in args):
        return Command(reply="That has characters I don't accept in names or refs.\n" + msg.HELP)
    if verb == "plan":
        if len(args) not in (2, 3):
            return Command(reply=msg.USAGE_PLAN)
        payload = {
            "service": args[0].lower(),
            "ref": args[1],
            "environment": args[2].lower() if len(args) == 3 else None,
        }
        where = f" for `{payload['environment']}`" if payload["environment"] else ""
        return Command("deploy_plan", payload, ack=f"Planning `{args[0]}` at `{args[1]}`{where}…")
    if verb == "status":
        if len(args) > 1:
            return Command(reply="Usage: `/deploy status [service]`.")
        return Command("deploy_status", {"service": args[0].lower() if args else None}, ack="Looking…")
    if verb == "rollback":
        if len(args) != 2:
            return Command(reply=msg.USAGE_ROLLBACK)
        payload = {"service": args[0].lower(), "environment": args[1].lower()}
        return Command("deploy_rollback", payload, ack=f"Preparing a rollback of `{args[0]}` in `{args[1]}`…")
    if verb == "cancel":
        if len(args) != 1 or not _ID.fullmatch(args[0]):
            return Command(reply=msg.USAGE_CANCEL)
        return Command("deploy_cancel", {"request_id": args[0]}, ack=f"Cancelling `{args[0]}`…")
    return Command(reply=msg.unknown_command(verb[:40]))


def handle_command(ctx: HandlerContext, body: dict[str, Any]) -> str:
    """Create the task for a ``/deploy`` command; returns the ephemeral text to ack with."""
    user, channel, trigger = body.get("user_id"), body.get("channel_id"), body.get("trigger_id")
    if not isinstance(user, str) or not isinstance(channel, str) or not isinstance(trigger, str):
        return "Malformed command."
    command = parse_command(str(body.get("text") or ""))
    if command.intent is None:
        return command.reply or msg.HELP
    new = NewTask(
        idempotency_key=f"slack:cmd:{trigger}",
        requester=user,
        surface="command",
        intent=command.intent,
        team_id=body.get("team_id"),
        channel_id=channel,
        payload=command.payload,
    )
    result = submit(ctx.ingress, new, scope=SCOPES[command.intent], channel=channel, notify_denial=False)
    if result.denied is not None:
        return msg.ack_queued(result.denied.user_message, result.task_id)
    return msg.ack_queued(command.ack, result.task_id)


def handle_request_click(ctx: HandlerContext, body: dict[str, Any], value: Any) -> str:
    """*Request deploy* on a plan: one ``deploy_request`` task per (plan, person)."""
    user = (body.get("user") or {}).get("id")
    if not isinstance(user, str) or not isinstance(value, str) or not _ID.fullmatch(value):
        return "malformed"
    with ctx.ingress.db.session() as s:
        plan = s.get(Task, value)
    if plan is None or plan.intent not in ("deploy_plan", "deploy_rollback"):
        return "unknown plan"
    new = NewTask(
        idempotency_key=f"deploy-request:{value}:{user}",
        requester=user,
        surface="deploy",
        intent="deploy_request",
        team_id=(body.get("team") or {}).get("id"),
        channel_id=plan.channel_id,
        thread_ts=(plan.result or {}).get("plan_ts"),
        parent_id=plan.id,
        payload={"plan_task_id": plan.id},
    )
    result = submit(ctx.ingress, new, scope="deploy.request", channel=plan.channel_id)
    if not result.created:
        return "duplicate"
    return "denied" if result.denied else "queued"


def enqueue_click(ctx: HandlerContext, kind: str, body: dict[str, Any], value: Any) -> str:
    """Approve, Reject or a plan's Cancel: hand the click to a worker (checks and records happen there)."""
    user = (body.get("user") or {}).get("id")
    if not isinstance(user, str) or not isinstance(value, str) or not _ID.fullmatch(value):
        return "malformed"
    # The clicker's own team travels with the job: the worker binds it before deciding, so a guest from another
    # organisation holds only what the policy gives their team there too (the worker is another process).
    team = payloads.requester_team(body)
    homes = list(ctx.ingress.home_teams or payloads.installed_teams(body))
    try:
        ctx.ingress.queue.queues[INTERACTIVE].enqueue(
            CLICK_JOB,
            kind,
            value,
            user,
            team,
            homes,
            job_timeout=120,
            result_ttl=300,
            failure_ttl=7 * 86400,
            retry=Retry(max=3, interval=[1, 5, 20]),  # every step of a click is idempotent
        )
    except redis.RedisError as exc:  # nothing was recorded: answer 503 so the person sees it failed
        raise ServiceUnavailable(f"queue unavailable: {exc}") from exc
    return "queued"


def register(app: App, ctx: HandlerContext) -> None:
    """Attach ``/deploy`` and the deploy buttons."""

    @app.command("/deploy")
    def on_deploy(ack: Ack, body: dict[str, Any]) -> None:
        ack(text=handle_command(ctx, body))

    @app.action(blocks.REQUEST_DEPLOY)
    def on_request(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        handle_request_click(ctx, body, action.get("value"))
        ack()

    def on_click(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        enqueue_click(ctx, action["action_id"], body, action.get("value"))
        ack()

    for action_id in (blocks.APPROVE, blocks.REJECT, blocks.CANCEL_PLAN):
        app.action(action_id)(on_click)
