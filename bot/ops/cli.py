"""The ``clawback`` command line (Typer)."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bot.errors import ClawbackError

app = typer.Typer(
    help="Clawback: a Slack-and-email agent with least privilege and honest token accounting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
audit_app = typer.Typer(help="Verify and export the tamper-evident audit log.", no_args_is_help=True)
policy_app = typer.Typer(help="Check policy files.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
redis_app = typer.Typer(help="The embedded Redis server.", no_args_is_help=True)
autonomy_app = typer.Typer(
    help="Earned autonomy: levels per person, action and mail category.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(db_app, name="db")
app.add_typer(redis_app, name="redis")
app.add_typer(autonomy_app, name="autonomy")

console = Console()
err = Console(stderr=True)


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _settings():
    from bot.settings import load_settings

    return load_settings()


def _db(settings, *, check: bool = True):
    from bot.db import Database
    from bot.migrate import ensure_schema

    db = Database(settings.database_url)
    if check:
        ensure_schema(db)
    return db


def parse_since(value: str | None) -> datetime | None:
    """``30d``, ``12h``, ``90m`` or an ISO date/time → an aware datetime."""
    if not value:
        return None
    m = re.fullmatch(r"(\d+)([dhm])", value.strip())
    if m:
        n, unit = int(m.group(1)), m.group(2)
        delta = {"d": timedelta(days=n), "h": timedelta(hours=n), "m": timedelta(minutes=n)}[unit]
        return datetime.now(UTC) - delta
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use 30d, 12h, 90m or an ISO date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)



def _slack_process(*required: str) -> tuple[Any, Any, Any, Any]:
    """What a Slack-facing process (web, socket) needs: settings (``required`` present), database, Redis, and the
    listeners' context (ingress with its queue and policy store)."""
    from bot.ingress import IngressDeps
    from bot.policy import policy_store
    from bot.queue import TaskQueue, connect_redis
    from handlers.context import HandlerContext

    _logging()
    settings = _settings()
    settings.require(*required)
    db = _db(settings)
    conn = connect_redis(settings)
    queue = TaskQueue(
        conn,
        prefix=settings.clawback_queue_prefix,
        retries=settings.clawback_job_retries,
        retry_intervals=settings.retry_intervals,
    )
    ctx = HandlerContext(IngressDeps(db=db, queue=queue, policy=policy_store(settings, db, conn)))
    return settings, db, conn, ctx


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 3000,
    threads: Annotated[int, typer.Option(help="Request threads")] = 16,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve GET /metrics on this port, apart from Slack's listener (default: not served)"
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(help="Interface of the metrics listener (keep it private: loopback or an internal one)"),
    ] = "127.0.0.1",
) -> None:
    """Serve the Slack app over HTTP (POST /slack/events, GET /healthz); GET /metrics on --metrics-port."""
    import waitress

    from bot.slack.app import SERVER_LIMITS, BackgroundWeb, build_web

    settings, db, conn, ctx = _slack_process("slack_bot_token", "slack_signing_secret")
    wsgi = build_web(settings, db=db, queue_conn=conn, ctx=ctx)
    console.print(f"clawback web listening on http://{host}:{port}/slack/events")
    if metrics_port is not None:
        metrics = BackgroundWeb(wsgi.metrics_app, threads=2, host=metrics_host, port=metrics_port)
        console.print(f"metrics on {metrics.url}/metrics")
    waitress.serve(
        wsgi,
        host=host,
        port=port,
        threads=threads,
        ident="clawback",
        connection_limit=1000,
        channel_timeout=30,
        **SERVER_LIMITS,
    )


@app.command()
def socket(
    health_port: Annotated[
        int | None,
        typer.Option(
            help="Serve GET /healthz (database, Redis, the Socket Mode link) on this port, for orchestrators"
        ),
    ] = None,
    health_host: Annotated[str, typer.Option(help="Interface of the health listener")] = "127.0.0.1",
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve GET /metrics on this port (default: not served)"),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(help="Interface of the metrics listener (keep it private: loopback or an internal one)"),
    ] = "127.0.0.1",
) -> None:
    """Run the same Slack app over Socket Mode (no public URL needed; needs SLACK_APP_TOKEN). Stops on SIGTERM."""
    import signal
    import threading

    from bot.slack.app import BackgroundWeb, build_socket

    settings, db, conn, ctx = _slack_process("slack_bot_token", "slack_signing_secret", "slack_app_token")
    app_ = build_socket(settings, db=db, queue_conn=conn, ctx=ctx)
    servers = []
    if health_port is not None:
        servers.append(BackgroundWeb(app_.health_wsgi, threads=2, host=health_host, port=health_port))
        console.print(f"health on {servers[-1].url}/healthz")
    if metrics_port is not None:
        servers.append(BackgroundWeb(app_.metrics_app, threads=2, host=metrics_host, port=metrics_port))
        console.print(f"metrics on {servers[-1].url}/metrics")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    app_.connect()
    console.print("clawback socket connected to Slack over Socket Mode")
    stop.wait()
    app_.close()
    for server in servers:
        server.close()


@app.command()
def worker(
    burst: Annotated[bool, typer.Option(help="Drain the queues (and due retries), then exit")] = False,
    fork: Annotated[
        bool, typer.Option(help="Run each job in a forked work horse (isolation, slower)")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Worker name")] = None,
    max_jobs: Annotated[
        int | None, typer.Option(help="Exit after this many jobs (recycle the process)")
    ] = None,
) -> None:
    """Run an RQ worker on Clawback's queues (interactive first, then bulk). Stops cleanly on SIGTERM."""
    from bot.ops.worker import run_worker
    from workers.runtime import build_deps

    _logging()
    settings = _settings()
    settings.require("slack_bot_token")
    deps = build_deps(settings)
    raise typer.Exit(run_worker(deps, burst=burst, fork=fork, name=name, max_jobs=max_jobs))


@app.command()
def reconcile() -> None:
    """Re-enqueue tasks that SQL says are pending but whose job Redis lost."""
    from bot.queue import TaskQueue, connect_redis

    settings = _settings()
    db = _db(settings)
    queue = TaskQueue(connect_redis(settings), prefix=settings.clawback_queue_prefix)
    ids = queue.reconcile(db, older_than=timedelta(seconds=0))
    console.print(f"re-enqueued {len(ids)} task(s)")


@app.command("mail-poll")
def mail_poll(once: Annotated[bool, typer.Option(help="Poll every mailbox once and exit")] = False) -> None:
    """Poll the configured mailboxes and enqueue triage tasks."""
    try:
        from bot.mail.poller import main as poll_main
    except ModuleNotFoundError:
        err.print("No mailbox support is configured in this build.")
        raise typer.Exit(1) from None
    _logging()
    raise typer.Exit(poll_main(_settings(), once=once))


@app.command()
def report(
    since: Annotated[str | None, typer.Option(help="Window, e.g. 30d, 12h, or an ISO date")] = "30d",
    by: Annotated[
        str | None,
        typer.Option(help="Group by user|intent|surface|team|prompt|model|channel|day (comma-separated)"),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    wide: Annotated[
        bool, typer.Option("--wide", help="Tables with every metric (wider than 80 columns)")
    ] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report here")
    ] = None,
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Slack user id whose scopes decide the view (audit.read: per person). Typed, not verified: "
            "the CLI is for operators who hold the database anyway; per-person reads audit the id and the OS user",
        ),
    ] = None,
) -> None:
    """Outcomes per token: k-anonymous aggregates; per-person rows and flags need --as <audit.read holder>."""
    from bot.errors import Denied
    from bot.measure.adoption import build_adoption, print_adoption
    from bot.measure.outcomes import config_from_settings
    from bot.measure.report import build_report, print_report_tables, to_csv, viewer_for
    from bot.ops.progress import progress_bar
    from bot.policy import load_policy

    if fmt not in ("table", "json", "csv"):
        raise typer.BadParameter("--format must be table, json or csv")
    settings = _settings()
    policy = load_policy(settings.clawback_policy)
    start = parse_since(since)
    try:
        viewer = viewer_for(policy, as_user)
        with progress_bar("building the report", enabled=None if fmt == "table" else False) as update:
            doc = build_report(
                _db(settings),
                since=start,
                by=by,
                viewer=viewer,
                policy=policy,
                settings=settings,
                progress=update,
            )
        doc["adoption"] = build_adoption(
            _db(settings),
            since=start,
            until=None,
            viewer=viewer,
            policy=policy,
            config=config_from_settings(settings),
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except Denied as exc:
        err.print(f"report refused: {exc.reason}. Per-person views need --as <user id holding audit.read>.")
        raise typer.Exit(2) from None
    if html is not None:
        from bot.measure.report_html import render_html

        html.write_text(render_html(doc), encoding="utf-8")
        err.print(f"HTML report written to {html}")
    if fmt == "json":
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
    elif fmt == "csv":
        sys.stdout.write(to_csv(doc))
    else:
        print_report_tables(doc, console, wide=wide)
        print_adoption(doc["adoption"], console)


@app.command()
def doctor(
    timeout: Annotated[float, typer.Option(help="Seconds each check may take")] = 10.0,
    socket_mode: Annotated[
        bool | None,
        typer.Option("--socket/--http", help="Check for Socket Mode (app token required) or HTTP mode"),
    ] = None,
) -> None:
    """Check settings, Slack, the LLM, Redis, the database, the policy, mailboxes and GitHub; one line each.

    Exit 1 when any check fails (warnings do not fail). Nothing is changed.
    """
    from bot.ops import doctor as doc
    from bot.settings import load_settings

    try:
        settings = load_settings()
    except ClawbackError as exc:
        console.print(
            doc.format_line(doc.CheckResult("settings", "fail", str(exc))), soft_wrap=True, markup=False
        )
        raise typer.Exit(1) from None
    checks = doc.plan_checks(settings, timeout=timeout, socket_mode=socket_mode)
    results = doc.run_checks(checks, timeout=timeout)
    for result in results:
        console.print(doc.format_line(result), soft_wrap=True, markup=False, highlight=False)
    failed = sum(r.status == "fail" for r in results)
    warned = sum(r.status == "warn" for r in results)
    console.print(f"{len(results)} checks: {failed} failed, {warned} warning(s)", highlight=False)
    raise typer.Exit(doc.exit_code(results))


@app.command("outcomes-sweep")
def outcomes_sweep() -> None:
    """Record outcome `none` for tasks past CLAWBACK_OUTCOME_WINDOW_HOURS, then refresh the report facts."""
    from bot.policy import load_policy
    from workers.measure import sweep

    settings = _settings()
    n = sweep(_db(settings), settings, policy=load_policy(settings.clawback_policy))
    console.print(f"{n} task(s) marked none (window {settings.clawback_outcome_window_hours:g} h)")


@app.command()
def pause(
    user: Annotated[str | None, typer.Option(help="Only this Slack user id")] = None,
    intent: Annotated[
        str | None,
        typer.Option(help="Only this intent (triage: every mail_* intent too; deploy: every deploy_*)"),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (shown in the audit log)")] = None,
    by: Annotated[str, typer.Option(help="Who is pausing (recorded)")] = "cli",
) -> None:
    """Kill switch: stop side effects now, including for jobs already queued."""
    from bot import controls

    controls.pause(_db(_settings()), by=by, user=user, intent=intent, reason=reason)
    console.print(f"paused: user={user or '*'} intent={intent or '*'}")


@app.command()
def resume(
    user: Annotated[str | None, typer.Option(help="Only pauses for this user")] = None,
    intent: Annotated[str | None, typer.Option(help="Only pauses for this intent")] = None,
    by: Annotated[str, typer.Option(help="Who is resuming (recorded)")] = "cli",
) -> None:
    """End pauses."""
    from bot import controls

    n = controls.resume(_db(_settings()), by=by, user=user, intent=intent)
    console.print(f"resumed {n} pause(s)")


@audit_app.command("verify")
def audit_verify(
    max_age: Annotated[
        float | None,
        typer.Option(
            help="Fail when the newest checkpoint is older than this many seconds "
            "(default CLAWBACK_AUDIT_CHECKPOINT_MAX_AGE; 0 = do not check, e.g. for an archived copy)"
        ),
    ] = None,
) -> None:
    """Recompute the hash chain and check the signed checkpoints; exit 1 naming why it cannot vouch."""
    from bot import audit

    settings = _settings()
    age = settings.clawback_audit_checkpoint_max_age if max_age is None else max_age
    from bot.ops.progress import progress_bar

    with progress_bar("verifying the audit chain") as update:
        result = audit.verify(
            _db(settings),
            key=settings.clawback_audit_key,
            checkpoints_file=settings.clawback_audit_checkpoints,
            max_age=timedelta(seconds=age) if age > 0 else None,
            progress=update,
        )
    if result.ok:
        console.print(
            f"audit log intact: {result.entries} entries, {result.checkpoints} checkpoint(s), newest signed "
            f"{result.newest_checkpoint_at}; {result.uncovered} entries not yet covered by a checkpoint"
            + ("" if age > 0 else " (checkpoint age not checked)"),
            soft_wrap=True,
        )
        return
    where = f"BROKEN at seq {result.first_bad_seq}" if result.first_bad_seq is not None else "NOT VERIFIED"
    err.print(f"audit log {where}: {result.reason}", soft_wrap=True)
    raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    since: Annotated[str | None, typer.Option(help="e.g. 7d or an ISO date")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl")] = "jsonl",
) -> None:
    """Print entries as JSON lines."""
    from bot import audit

    if fmt != "jsonl":
        raise typer.BadParameter("--format must be jsonl")
    for entry in audit.export(_db(_settings()), since=parse_since(since)):
        sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")


@audit_app.command("checkpoint")
def audit_checkpoint(
    every: Annotated[float, typer.Option(help="Repeat every N seconds (0 = once)")] = 0,
) -> None:
    """Sign the current head with CLAWBACK_AUDIT_KEY (run by an auditor process, not the workers)."""
    import time

    from bot import audit

    settings = _settings()
    settings.require("clawback_audit_key")
    db = _db(settings)
    while True:
        cp = audit.checkpoint(db, settings.clawback_audit_key, copy_to=settings.clawback_audit_checkpoints)
        console.print(f"checkpoint at seq {cp.seq}" if cp else "audit log is empty; nothing to sign")
        if not every:
            return
        time.sleep(every)


@audit_app.command("chains")
def audit_chains(
    count: Annotated[int, typer.Argument(help="Number of hash chains from now on (1-256; only ever more)")],
) -> None:
    """Run the audit log as COUNT chains, so appenders on PostgreSQL do not all queue on one head row.

    Restart web and worker processes afterwards; checkpoints sign every chain's head, verify checks each chain.
    """
    from bot import audit

    try:
        before = audit.set_chains(_db(_settings()), count)
    except ValueError as exc:
        err.print(str(exc))
        raise typer.Exit(1) from exc
    console.print(f"audit log: {before} chain(s) before, {count} now; restart web and worker processes")


@policy_app.command("check")
def policy_check(path: Annotated[Path, typer.Argument(help="Policy TOML file")]) -> None:
    """Validate a policy file; exit 1 naming the line and the reason."""
    from bot.policy import load_policy

    try:
        policy = load_policy(path)
    except ClawbackError as exc:
        err.print(f"policy error: {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"policy OK: {len(policy.roles)} role(s), {len(policy.users)} user(s), sha256 {policy.digest[:12]}"
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply schema migrations."""
    from bot import migrate

    db = _db(_settings(), check=False)
    migrate.upgrade(db)
    console.print(f"database at revision {migrate.current_revision(db)}")


@autonomy_app.command("show")
def autonomy_show(user: Annotated[str | None, typer.Option(help="Only this Slack user id")] = None) -> None:
    """Levels in force (person, action, category), accepted/judged at that level, and what would change them."""
    from rich.table import Table

    from bot import autonomy
    from bot.policy import load_policy

    settings = _settings()
    policy = load_policy(settings.clawback_policy)
    rows = autonomy.standings(_db(settings), policy, user)
    if not policy.autonomy.configured:
        console.print("no [autonomy] section in the policy: every action runs at " + policy.autonomy.default)
    table = Table(title="Earned autonomy", show_lines=False, expand=False)
    for name in ("user", "action", "level", "ok/judged", "next"):
        table.add_column(name, overflow="fold")
    for r in rows:
        action = f"{r.action} ({r.category})" if r.category else r.action
        table.add_row(r.user, action, f"{r.level} ≤{r.max}", f"{r.accepted}/{r.judged}", r.next_step)
    console.print(table, width=min(console.width, 80))


@autonomy_app.command("set")
def autonomy_set(
    user: Annotated[str, typer.Option(help="Slack user id")],
    action: Annotated[str, typer.Option(help="mail.categorize, mail.move, mail.draft or chat.reply.channel")],
    level: Annotated[str, typer.Option(help="shadow, suggest or auto (never above the policy's max)")],
    category: Annotated[str | None, typer.Option(help="Mail category (mail actions only)")] = None,
) -> None:
    """Set a person's level (audited with the operating-system user as the actor)."""
    from bot import autonomy
    from bot.measure.report import _os_user
    from bot.policy import load_policy

    settings = _settings()
    policy = load_policy(settings.clawback_policy)
    actor = f"cli:{_os_user() or 'unknown'}"
    try:
        change = autonomy.set_level(
            _db(settings),
            policy,
            user=user,
            action=action,
            category=category,
            level=level,
            actor=actor,
            details={"os_user": _os_user()},
        )
    except ValueError as exc:
        err.print(f"autonomy set refused: {exc}")
        raise typer.Exit(2) from None
    console.print(f"{user} {action}{f' ({category})' if category else ''}: {level} (change {change})")


@redis_app.command("stop")
def redis_stop() -> None:
    """Stop the embedded Redis server of this checkout."""
    from bot.ops import embedded_redis

    stopped = embedded_redis.stop(_settings().clawback_home)
    console.print("stopped" if stopped else "not running")


@app.command()
def demo(keep: Annotated[bool, typer.Option(help="Keep the demo's data directory")] = False) -> None:
    """Run the whole pipeline on embedded defaults and local stand-ins: no credentials, no network."""
    from bot.ops.demo import run_demo

    raise typer.Exit(run_demo(console, keep=keep))


def main() -> None:
    """Console entry point: clear one-line errors for Clawback's own failures."""
    try:
        app()
    except ClawbackError as exc:
        err.print(f"clawback: {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
