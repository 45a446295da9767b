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

# Earned autonomy for channel answers: everyone starts at auto (the demo's other steps run as always); the
# admin puts Carol at suggest, and she earns auto back with two answers she posts herself.
[autonomy]
default = "auto"

[autonomy.actions."chat.reply.channel"]
start = "auto"
max = "auto"
promote_after = 2
promote_min_acceptance = 1.0
window = 3
demote_after = 2
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
            bar.update(t, description="earned autonomy: Carol's channel answers…")
            earned = _autonomy_section(sender, deps, slack, run_worker)
            sender.close()
        console.print(mail)
        console.print(deploy)
        console.print(earned)
        console.print("[bold]6. The ledger (clawback report)[/]")
        # The demo operator reads as an auditor: with only a handful of demo people every team-sized group
        # would be suppressed (k-anonymity); the reads are audited like any other.
        report_mod.print_report_tables(
            report_mod.build_report(db, viewer=report_mod.Viewer.auditor("demo-operator")), console
        )
        audit.checkpoint(db, AUDIT_KEY)
        verdict = audit.verify(db, key=AUDIT_KEY)
        console.print(
            f"[bold]7. Audit log:[/] {verdict.entries} entries, chain "
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


def _autonomy_section(sender: SlackEventSender, deps: Any, slack: SlackStandIn, run_worker: Callable) -> Table:
    """Carol's channel answers: admin sets suggest → she posts two private answers herself → offer → Yes → auto →
    two Not helpful → back to suggest. Every step is a signed request or click through the real app and worker."""
    from sqlalchemy import select

    from bot import autonomy
    from bot.db import AutonomyOffer, Task
    from bot.slack.blocks import AUTONOMY_YES, FEEDBACK_NOT_HELPFUL, POST_TO_THREAD
    from workers.chat_reply import decision_of

    db, carol, action = deps.db, "U0CAROL", "chat.reply.channel"
    steps = Table(title="5. Earned autonomy: Carol's answers in channel threads (chat.reply.channel)")
    steps.add_column("step")
    steps.add_column("what happened", overflow="fold")
    steps.add_column("level after", justify="center")

    def level() -> str:
        return autonomy.level_for(db, deps.policy.current, carol, action)

    def drain() -> None:
        run_worker(deps, burst=True, fork=False, max_wait=60)

    def ask(question: str) -> Task:
        sender.mention(carol, "C0GENERAL", question)
        drain()
        with db.read() as s:
            return s.execute(select(Task).order_by(Task.created_at.desc()).limit(1)).scalar_one()

    def in_thread(task: Task) -> int:
        return sum(1 for m in slack.bot_messages("C0GENERAL") if m.thread_ts == task.thread_ts)

    autonomy.set_level(db, deps.policy.current, user=carol, action=action, category=None, level="suggest",
                       actor="demo-admin")  # fmt: skip
    steps.add_row("admin: clawback autonomy set --user U0CAROL --level suggest", "audited", level())
    for n, question in enumerate(("what is the launch date?", "who owns the checklist?"), start=1):
        task = ask(question)
        d = decision_of(db, task.id)
        private = "a DM with Post to thread / Dismiss" if d is not None and d.detail.get("dm_ts") else "?"
        steps.add_row(f"Carol asks in #general ({n})", f"answer sent privately: {private}; in the thread: "
                      f"{in_thread(task)} message(s)", level())  # fmt: skip
        if d is not None:
            sender.block_action(carol, POST_TO_THREAD, str(d.id), channel="D0CAROL", message_ts=d.detail["dm_ts"])
            drain()
            steps.add_row("Carol clicks Post to thread", f"in the thread: {in_thread(task)} message(s)", level())
    with db.read() as s:
        offer = s.execute(select(AutonomyOffer).where(AutonomyOffer.user == carol)).scalars().first()
    if offer is None:
        steps.add_row("offer", "none was made", level())
        return steps
    offered = [m.text for m in slack.bot_messages("D0CAROL") if "from now on" in m.text]
    steps.add_row("Clawback DMs an offer", (offered[-1] if offered else "?").split("\n")[0][:120], level())
    sender.block_action(carol, AUTONOMY_YES, str(offer.id), channel="D0CAROL", message_ts="1.0")
    drain()
    steps.add_row("Carol clicks Yes", "promotion audited with the decisions behind it", level())
    for question in ("is EU in the launch?", "when is the EU rollout?"):
        task = ask(question)
        replies = [m for m in slack.bot_messages("C0GENERAL") if m.thread_ts == task.thread_ts]
        steps.add_row("Carol asks again", f"answered in the thread at once: {len(replies)} message(s)", level())
        if replies:
            sender.block_action(carol, FEEDBACK_NOT_HELPFUL, task.id, channel="C0GENERAL",
                                message_ts=replies[-1].ts, thread_ts=task.thread_ts)  # fmt: skip
            drain()
            steps.add_row("Carol: Not helpful", "rejected", level())
    told = [m.text for m in slack.bot_messages("D0CAROL") if "went back from" in m.text]
    notice = told[-1].split("\n")[0].split(". ")[0] + "." if told else "no demotion notice"
    steps.caption = f"{notice} Deploys are never autonomous."
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
