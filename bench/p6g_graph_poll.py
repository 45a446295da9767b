"""P6g: Microsoft Graph first sync and idle poll, next to EWS measured in the same run.

For 1,000 and 10,000 messages it seeds the Graph stand-in (HTTPS, real msal and httpx) and the EWS stand-in
(real exchangelib) with the same mail older than the first-sync window, and measures, with requests and
seconds: a full sync of the inbox through the ``Mailbox`` (every message read, 512 per page: what a sync-state
reset of a mailbox without a window costs), the real poller's first sync (SQLite, an embedded Redis; only the
first-sync window is triaged) and idle polls. Graph's figures count Graph requests (delta pages, ``$batch``) and
token requests apart.
``python -m bench.p6g_graph_poll``.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SIZES = (1_000, 10_000)
OWNER = "U0EMMA"
ADDRESS = "emma@contoso.com"
SECRET = "bench-graph-secret"
PASSWORD = "bench-password"


def _policy(table: str) -> str:
    return f"""
[roles.owner]
scopes = ["mail.read", "mail.categorize", "mail.move", "mail.draft"]
daily_tokens = 100000000

[users.{OWNER}]
roles = ["owner"]

[mailboxes."{ADDRESS}"]
owner = "{OWNER}"
folders = {{ action = "Action" }}
{table}
"""


def _measure(backend: str, n: int, idle_polls: int, home: Path) -> dict[str, Any]:
    """First sync and idle polls of an ``n``-message inbox on one backend."""
    from bot.db import Database
    from bot.ingress import IngressDeps
    from bot.mail.ews import EwsMailbox
    from bot.mail.graph import GraphMailbox
    from bot.mail.poller import MailPoller
    from bot.migrate import ensure_schema
    from bot.ops import embedded_redis
    from bot.policy import policy_store
    from bot.queue import TaskQueue, connect_redis
    from bot.settings import Settings
    from bot.standins.ews import EwsStandIn
    from bot.standins.graph import GraphStandIn

    work = home / f"{backend}-{n}"
    work.mkdir(parents=True)
    old = datetime.now(UTC) - timedelta(days=60)
    if backend == "graph":
        server: Any = GraphStandIn(client_secret=SECRET, mailboxes=(ADDRESS,)).start()
        table = (
            f'backend = "graph"\ntenant_id = "contoso.onmicrosoft.com"\nclient_id = "{server.app.client_id}"\n'
            f'client_secret_env = "CLAWBACK_BENCH_UNUSED"\nlogin_url = "{server.login_url}"\n'
            f'graph_url = "{server.graph_url}"'
        )
    else:
        server = EwsStandIn(address=ADDRESS, username=ADDRESS, password=PASSWORD).start()
        table = f'ews_url = "{server.ews_url}"\npassword_env = "CLAWBACK_BENCH_UNUSED"'
    try:
        for i in range(n):
            server.add_message(
                subject=f"archived {i}",
                sender="alice@example.com",
                body_text=f"body {i}",
                received=old + timedelta(seconds=i),
            )
        (work / "policy.toml").write_text(_policy(table))
        settings = Settings(
            _env_file=None,
            database_url=f"sqlite:///{work / 'p6g.db'}",
            redis_url=embedded_redis.ensure(home / "redis"),
            clawback_home=work,
            clawback_policy=work / "policy.toml",
            clawback_mail_batch_size=512,
        )
        db = Database(settings.database_url)
        ensure_schema(db)
        queue = TaskQueue(connect_redis(settings), prefix=f"p6g{backend}{n}")
        ingress = IngressDeps(db=db, queue=queue, policy=policy_store(settings, db))
        clients: dict[str, Any] = {}

        def make(address: str, days: int | None) -> Any:
            return (
                GraphMailbox(
                    address,
                    tenant_id="contoso.onmicrosoft.com",
                    client_id=server.app.client_id,
                    client_secret=SECRET,
                    login_url=server.login_url,
                    graph_url=server.graph_url,
                    ca_bundle=str(server.ca_path),
                    first_sync_days=days,
                )
                if backend == "graph"
                else EwsMailbox(address, server.ews_url, username=address, password=PASSWORD)
            )

        def get(address: str) -> Any:
            if address not in clients:
                clients[address] = make(address, settings.clawback_mail_first_sync_days)
            return clients[address]

        def count() -> int:
            return len(server.graph_requests()) if backend == "graph" else len(server.requests)

        full = make(ADDRESS, None)
        t0, state, pages, messages = time.perf_counter(), None, 0, 0
        while True:
            result = full.sync_folder("inbox", state, max_changes=512)
            state, pages, messages = result.sync_state, pages + 1, messages + len(result.changes)
            if not result.more_available:
                break
        full_sync = {
            "full_sync_requests": count(),
            "full_sync_seconds": round(time.perf_counter() - t0, 2),
            "full_sync_messages": messages,
        }
        full.close()
        base = count()
        tokens_before = server.tokens_issued if backend == "graph" else 0
        poller = MailPoller(settings, db, ingress, get)
        t0 = time.perf_counter()
        assert poller.run_once() == 0
        first_s = time.perf_counter() - t0
        first = count() - base
        first_detail = (
            {
                "full_sync_batch_requests": len(server.graph_requests("/$batch")),
                "first_sync_token_requests": server.tokens_issued - tokens_before,
            }
            if backend == "graph"
            else {}
        )
        idle = []
        for _ in range(idle_polls):
            before, t1 = count(), time.perf_counter()
            assert poller.run_once() == 0
            idle.append((count() - before, time.perf_counter() - t1))
        out = {
            "backend": backend,
            "messages": n,
            "first_sync_requests": first,
            "first_sync_seconds": round(first_s, 2),
            "idle_poll_requests": statistics.median(r[0] for r in idle),
            "idle_poll_ms_median": round(statistics.median(r[1] for r in idle) * 1000, 1),
        }
        out.update(full_sync)
        out.update(first_detail)
        for c in clients.values():
            c.close()
        return out
    finally:
        server.stop()


def run(sizes: tuple[int, ...] = SIZES, idle_polls: int = 5) -> dict[str, Any]:
    """Graph and EWS figures for each size; returns them with Graph/EWS ratios."""
    from bot.ops import embedded_redis

    home = Path(tempfile.mkdtemp(prefix="clawback-p6g-"))
    try:
        rows = [_measure(b, n, idle_polls, home) for n in sizes for b in ("ews", "graph")]
    finally:
        try:
            embedded_redis.stop(home / "redis")
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass
    by = {(r["backend"], r["messages"]): r for r in rows}

    def ratio(key: str, n: int) -> float:
        return round(by["graph", n][key] / max(by["ews", n][key], 0.01), 2)

    result = {
        "id": "P6g",
        "what": "Graph vs EWS: full inbox sync, poller first sync and idle poll (requests, seconds), same run",
        "rows": rows,
        "graph_vs_ews": {
            str(n): {
                "full_sync_requests": ratio("full_sync_requests", n),
                "full_sync_seconds": ratio("full_sync_seconds", n),
                "first_sync_seconds": ratio("first_sync_seconds", n),
            }
            for n in sizes
        },
        "idle_poll_requests": {f"{r['backend']}-{r['messages']}": r["idle_poll_requests"] for r in rows},
        "target": "idle poll = 1 request per watched folder",
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    print(f"P6g Graph vs EWS ({r['machine']})")
    for row in r["rows"]:
        batches = f" ({row['full_sync_batch_requests']} $batch)" if row["backend"] == "graph" else ""
        print(
            f"  {row['backend']:5} {row['messages']:>6,} msgs: full sync {row['full_sync_requests']:>5} requests"
            f"{batches} in {row['full_sync_seconds']} s; poller first sync {row['first_sync_requests']} requests"
            f" in {row['first_sync_seconds']} s; idle poll {row['idle_poll_requests']} request(s), "
            f"{row['idle_poll_ms_median']} ms"
        )
    for n, x in r["graph_vs_ews"].items():
        print(
            f"  {int(n):,} messages, Graph/EWS: full sync requests {x['full_sync_requests']}x, seconds "
            f"{x['full_sync_seconds']}x; poller first sync seconds {x['first_sync_seconds']}x"
        )


if __name__ == "__main__":
    run()
