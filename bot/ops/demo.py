"""``clawback demo``: the whole pipeline on embedded defaults and local stand-ins (no credentials, no network).

It starts an embedded Redis, the Slack and LLM stand-ins, the real web app on a loopback port and a real RQ
worker, then plays a scripted set of signed Slack requests and shows what happened, the ledger report and the
audit check. Everything lives in a temporary directory that is removed at the end (unless ``--keep``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from bot import audit
from bot.db import Database
from bot.ingress import IngressDeps
from bot.migrate import ensure_schema
from bot.ops import embedded_redis
from bot.settings import Settings
from bot.standins.llm import LLMStandIn
from bot.standins.slack import SlackStandIn
from bot.standins.slack_events import SlackEventSender

SIGNING_SECRET = "demo-signing-secret"
BOT_TOKEN = "xoxb-demo-token"
AUDIT_KEY = "demo-audit-key"

DEMO_POLICY = """
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "chat.read_thread", "usage.self"]
daily_tokens = 200000
requests_per_minute = 20

[roles.visitor]
scopes = []

[roles.mailowner]
scopes = ["chat.reply", "chat.read_thread", "usage.self", "mail.read", "mail.categorize", "mail.move",
          "mail.draft", "mail.send"]
daily_tokens = 200000
requests_per_minute = 60

[users.U0FRANK]
roles = ["visitor"]

[users.U0EMMA]
roles = ["mailowner"]
"""


def _steps(sender: SlackEventSender, slack: SlackStandIn) -> list[tuple[str, Callable[[], Any]]]:
    parent = slack.post(
        "C0GENERAL", "Heads-up: the launch moves to March 3. Bob owns the checklist.", user="U0BOB"
    )
    slack.post("C0GENERAL", "Does that include the EU rollout?", user="U0CAROL", thread_ts=parent)
    slack.post("C0GENERAL", "Yes, EU goes the same day.", user="U0BOB", thread_ts=parent)
    return [
        (
            "Alice mentions the bot in a thread",
            lambda: sender.mention(
                "U0ALICE",
                "C0GENERAL",
                "when is the launch and who owns it?",
                thread_ts=parent,
                event_id="EvDEMO0001",
                ts="1700000100.000100",
            ),
        ),
        (
            "Slack retries the same delivery (X-Slack-Retry-Num: 1)",
            lambda: sender.mention(
                "U0ALICE",
                "C0GENERAL",
                "when is the launch and who owns it?",
                thread_ts=parent,
                event_id="EvDEMO0001",
                ts="1700000100.000100",
                retry_num=1,
            ),
        ),
        (
            "Bob DMs the bot, pasting a secret by mistake",
            lambda: sender.dm(
                "U0BOB", "D0BOB", "why does deploy fail with key AKIAIOSFODNN7EXAMPLE?", event_id="EvDEMO0002"
            ),
        ),
        (
            "Frank (no scopes in the policy) mentions the bot",
            lambda: sender.mention("U0FRANK", "C0DEPLOYS", "restart prod please", event_id="EvDEMO0003"),
        ),
        (
            "Another bot mentions Clawback (recorded, never answered)",
            lambda: sender.mention(
                "U0OTHERBOT", "C0GENERAL", "ping", bot_id="B0OTHER", event_id="EvDEMO0004"
            ),
        ),
        (
            "A forged request with a bad signature",
            lambda: sender.post(b'{"type":"event_callback"}', "application/json", signature="v0=" + "0" * 64),
        ),
    ]


def run_demo(console: Console, *, keep: bool = False) -> int:
    """Run the demo; returns the process exit code."""
    from bot.deploy import demo as deploy_demo
    from bot.mail import demo as mail_demo
    from bot.measure import report as report_mod
    from bot.ops.worker import run_worker
    from bot.policy import policy_store
    from bot.slack.app import BackgroundWeb, build_web
    from bot.standins import deploy_responder, triage_responder
    from bot.standins.ci import CIStandIn
    from bot.standins.ews import EwsStandIn
    from bot.standins.graph import GraphStandIn
    from handlers.context import HandlerContext
    from workers.deploy import build_clients
    from workers.runtime import build_deps

    home = Path(tempfile.mkdtemp(prefix="clawback-demo-"))
    slack, llm = SlackStandIn(token=BOT_TOKEN), LLMStandIn()
    ews = EwsStandIn(address=mail_demo.DEMO_ADDRESS, password=mail_demo.DEMO_PASSWORD)
    graph = GraphStandIn(
        tenant_id=mail_demo.DEMO_GRAPH_TENANT,
        client_secret=mail_demo.DEMO_GRAPH_SECRET,
        mailboxes=(mail_demo.DEMO_GRAPH_ADDRESS,),
    )
    ci = CIStandIn()
    web = None
    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True
        ) as bar:
            t = bar.add_task("starting embedded Redis and the stand-ins…")
            redis_url = embedded_redis.ensure(home / "redis")
            slack.seed_demo()
            slack.add_user("U0FRANK", "frank")
            for server in (slack, llm, ews, graph, ci):
                server.start()
            triage_responder.register(llm)
            deploy_responder.register(llm)
            mail_demo.seed_demo(ews)
            mail_demo.seed_demo(graph)
            deploy_demo.seed_demo(ci)
            policy = (
                DEMO_POLICY
                + deploy_demo.DEMO_SERVICES_POLICY
                + deploy_demo.DEMO_ROLES_POLICY.replace('[users.U0DAVE]\nroles = ["planner"]\n', "")
                .replace('roles = ["deployer"]', 'roles = ["member", "deployer"]')
                .replace('roles = ["approver"]', 'roles = ["member", "approver"]')
                .replace('roles = ["approver", "deployer"]', 'roles = ["member", "approver", "deployer"]')
                + mail_demo.demo_policy_section(ews.ews_url)
                + mail_demo.demo_graph_policy_section(graph)
            )
            (home / "policy.toml").write_text(policy)
            settings = Settings(
                _env_file=None,
                slack_bot_token=BOT_TOKEN,
                slack_signing_secret=SIGNING_SECRET,
                slack_api_url=slack.url + "/api/",
                openai_base_url=llm.base_url,
                openai_api_key="demo",
                clawback_model="clawback-standin",
                redis_url=redis_url,
                database_url=f"sqlite:///{home / 'clawback.db'}",
                clawback_home=home,
                clawback_policy=home / "policy.toml",
                clawback_audit_key=AUDIT_KEY,
                clawback_retry_intervals="1,1",
                clawback_github_api_url=ci.url,
                clawback_github_token=ci.token,
                clawback_deploy_poll_seconds=0.2,
                clawback_deploy_max_polls=20,
            )
            db = Database(settings.database_url)
            ensure_schema(db)
            deps = build_deps(settings, db=db)
            deps.extras["mailboxes"] = mail_demo.demo_mailbox_factory(ews, graph)
            deps.extras["deploy_clients"] = build_clients(settings)
            ctx = HandlerContext(
                IngressDeps(db=db, queue=deps.queue, policy=policy_store(settings, db, deps.redis))
            )
            web = BackgroundWeb(build_web(settings, db=db, queue_conn=deps.redis, ctx=ctx))
            sender = SlackEventSender(web.url + "/slack/events", SIGNING_SECRET)
            console.print(f"[bold]Clawback demo[/] — web app at {web.url}, data in {home}")
            results = []
            for title, step in _steps(sender, slack):
                bar.update(t, description=title)
                results.append((title, step().status))
            bar.update(t, description="worker draining the queues…")
            run_worker(deps, burst=True, fork=False, max_wait=60)
            _click_feedback(sender, deps, slack)
            run_worker(deps, burst=True, fork=False, max_wait=60)
            table = Table(title="1. Signed Slack requests → clawback web")
            table.add_column("request")
            table.add_column("HTTP", justify="right")
            for title, status in results:
                table.add_row(title, str(status))
            console.print(table)
            _show_slack(console, slack)
            _show_llm(console, llm)

            bar.update(t, description="polling Emma's mailboxes (EWS and Graph stand-ins) and triaging…")
            mail = _mail_section(settings, db, ctx, deps, ews, graph, run_worker)
            bar.update(t, description="/deploy plan → request → approve → run…")
            deploy = _deploy_section(sender, deps, slack, ci, run_worker)
            sender.close()
        console.print(mail)
        console.print(deploy)
        console.print("[bold]5. The ledger (clawback report)[/]")
        # The demo operator reads as an auditor: with only a handful of demo people every team-sized group
        # would be suppressed (k-anonymity); the reads are audited like any other.
        report_mod.print_report_tables(
            report_mod.build_report(db, viewer=report_mod.Viewer.auditor("demo-operator")), console
        )
        audit.checkpoint(db, AUDIT_KEY)
        verdict = audit.verify(db, key=AUDIT_KEY)
        console.print(
            f"[bold]6. Audit log:[/] {verdict.entries} entries, chain "
            f"{'[green]intact[/]' if verdict.ok else '[red]BROKEN at ' + str(verdict.first_bad_seq)}"
        )
        return 0 if verdict.ok else 1
    finally:
        if web is not None:
            web.close()
        for server in (slack, llm, ews, graph, ci):
            server.stop()
        embedded_redis.stop(home / "redis")
        if keep:
            console.print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def _mail_section(
    settings: Settings, db: Database, ctx: Any, deps: Any, ews: Any, graph: Any, run_worker: Callable
) -> Table:
    """Poll once, triage, and show what happened to each message (categories, folders, drafts, sends)."""
    from bot.mail.poller import MailPoller

    poller = MailPoller(settings, db, ctx.ingress, deps.extras["mailboxes"])
    poller.run_once()
    run_worker(deps, burst=True, fork=False, max_wait=60)
    poller.run_once()  # a second poll: nothing new, no new task
    run_worker(deps, burst=True, fork=False, max_wait=60)
    table = Table(
        title="3. Email triage of two mailboxes: Exchange on premises (EWS stand-in) and Exchange Online "
        "(Microsoft Graph stand-in); the agent never sends mail"
    )
    for col in ("mailbox", "folder", "subject", "from", "categories"):
        table.add_column(col, overflow="fold")
    for label, listing in (("EWS", ews.messages), ("Graph", graph.messages_in)):
        for folder in ("inbox", "Action", "Newsletters", "Suspicious", "drafts"):
            try:
                items = listing(folder)
            except KeyError:
                continue
            for item in items:
                table.add_row(
                    label,
                    folder,
                    getattr(item, "subject", ""),
                    getattr(item, "sender_email", "") or "",
                    ", ".join(getattr(item, "categories", []) or []),
                )
    sent = len(ews.outbox) + len(graph.sent())
    table.caption = f"messages sent: {sent} · triage tasks: {_count(db, 'triage')}"
    return table


def _deploy_section(
    sender: SlackEventSender, deps: Any, slack: SlackStandIn, ci: Any, run_worker: Callable
) -> Table:
    """/deploy plan by Alice, her own approval refused, Bob approves: one dispatch of the planned sha."""
    from sqlalchemy import select

    from bot.db import Task
    from bot.deploy.models import DeployRequest

    steps = Table(title="4. Deploy assist: /deploy plan shop v1.1 prod")
    steps.add_column("step")
    steps.add_column("result", overflow="fold")
    reply = sender.command("U0ALICE", "/deploy", "plan shop v1.1 prod", channel="C0DEPLOYS")
    steps.add_row("Alice: /deploy plan shop v1.1 prod", f"HTTP {reply.status}, acked")
    run_worker(deps, burst=True, fork=False, max_wait=60)
    with deps.db.read() as s:
        plan = s.execute(select(Task).where(Task.intent == "deploy_plan")).scalars().first()
    if plan is None or plan.status != "done":
        steps.add_row("plan", f"not produced ({plan.status_reason if plan else 'no task'})")
        return steps
    steps.add_row("worker: compare + risk summary posted", f"task {plan.id}")
    sender.block_action(
        "U0ALICE",
        "deploy_request",
        plan.id,
        channel="C0DEPLOYS",
        message_ts=plan.result.get("plan_ts", "1.0"),
    )
    run_worker(deps, burst=True, fork=False, max_wait=60)
    with deps.db.read() as s:
        request = s.execute(select(DeployRequest)).scalars().first()
    if request is None:
        steps.add_row("Alice: Request deploy", "no request created")
        return steps
    steps.add_row("Alice: Request deploy", f"request {request.id} for sha {request.sha[:12]}")
    sender.block_action("U0ALICE", "deploy_approve", request.id, channel="C0DEPLOYS", message_ts="1.0")
    run_worker(deps, burst=True, fork=False, max_wait=60)
    steps.add_row("Alice approves her own request", f"refused · dispatches so far: {len(ci.dispatches)}")
    sender.block_action("U0BOB", "deploy_approve", request.id, channel="C0DEPLOYS", message_ts="1.0")
    run_worker(deps, burst=True, fork=False, max_wait=60)
    with deps.db.read() as s:
        request = s.get(DeployRequest, request.id)
    shas = [d["inputs"].get("sha", "")[:12] for d in ci.dispatches]
    steps.add_row(
        "Bob approves", f"workflow_dispatch × {len(ci.dispatches)} for {shas} → run {request.status}"
    )
    return steps


def _count(db: Database, intent: str) -> int:
    from sqlalchemy import func, select

    from bot.db import Task

    with db.read() as s:
        return int(
            s.execute(select(func.count()).select_from(Task).where(Task.intent == intent)).scalar_one()
        )


def _click_feedback(sender: SlackEventSender, deps: Any, slack: SlackStandIn) -> None:
    from sqlalchemy import select

    from bot.db import Task

    with deps.db.session() as s:
        task = s.execute(select(Task).where(Task.idempotency_key == "slack:EvDEMO0001")).scalar_one_or_none()
    if task and (task.result or {}).get("reply_ts"):
        sender.block_action(
            "U0ALICE",
            "feedback_resolved",
            task.id,
            channel="C0GENERAL",
            message_ts=task.result["reply_ts"],
            thread_ts=task.thread_ts,
        )


def _show_slack(console: Console, slack: SlackStandIn) -> None:
    table = Table(title="2. What Slack saw (the stand-in's call log)")
    table.add_column("method")
    table.add_column("channel")
    table.add_column("text", overflow="fold")
    for call in slack.calls():
        if call["_method"] in ("chat.postMessage", "chat.postEphemeral", "chat.update"):
            text = call.get("text") or ""
            blocks = call.get("blocks")
            if blocks and call["_method"] == "chat.postMessage":
                parsed = json.loads(blocks) if isinstance(blocks, str) else blocks
                footer = [b for b in parsed if b.get("type") == "context"]
                if footer:
                    text += "\n  ↳ " + footer[0]["elements"][0]["text"]
            table.add_row(call["_method"], call.get("channel", ""), text[:400])
    console.print(table)


def _show_llm(console: Console, llm: LLMStandIn) -> None:
    sent = llm.completions()
    leaked = any("AKIAIOSFODNN7EXAMPLE" in json.dumps(r) for r in sent)
    console.print(
        f"LLM stand-in served {len(sent)} completion(s); the pasted AWS key reached it: "
        f"{'[red]YES[/]' if leaked else '[green]no (redacted)[/]'}"
    )
