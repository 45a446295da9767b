"""P6g: Microsoft Graph first sync and idle poll, next to EWS measured in the same run.

For 1,000 and 10,000 messages it seeds the Graph stand-in (HTTPS, real msal and httpx) and the EWS stand-in
(real exchangelib) with the same mail older than the first-sync window, lets the real poller (SQLite, an
embedded Redis) establish the inbox state, and counts requests and seconds; then it counts the requests of
idle polls. Graph's figures count Graph requests (delta pages, ``$batch``) and token requests apart.
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
    from bot import embedded_redis
    from bot.db import Database, ensure_schema
    from bot.ingress import IngressDeps
    from bot.mail.ews import EwsMailbox
    from bot.mail.graph import GraphMailbox
    from bot.mail.poller import MailPoller
    from bot.queue import TaskQueue, connect_redis
    from bot.settings import Settings
    from bot.standins.ews import EwsStandIn
    from bot.standins.graph import GraphStandIn
    from workers.runtime import policy_store

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

        def get(address: str) -> Any:
            if address not in clients:
                clients[address] = (
                    GraphMailbox(
                        address,
                        tenant_id="contoso.onmicrosoft.com",
                        client_id=server.app.client_id,
                        client_secret=SECRET,
                        login_url=server.login_url,
                        graph_url=server.graph_url,
                        ca_bundle=str(server.ca_path),
                    )
                    if backend == "graph"
                    else EwsMailbox(address, server.ews_url, username=address, password=PASSWORD)
                )
            return clients[address]

        def count() -> int:
            return len(server.graph_requests()) if backend == "graph" else len(server.requests)

        poller = MailPoller(settings, db, ingress, get)
        t0 = time.perf_counter()
        assert poller.run_once() == 0
        first_s = time.perf_counter() - t0
        first = count()
        first_detail = (
            {
                "token_requests": server.tokens_issued,
                "batch_requests": len(server.graph_requests("/$batch")),
                "delta_requests": len(server.graph_requests("/messages/delta")),
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
        out.update(first_detail)
        for c in clients.values():
            c.close()
        return out
    finally:
        server.stop()


def run(sizes: tuple[int, ...] = SIZES, idle_polls: int = 5) -> dict[str, Any]:
    """Graph and EWS figures for each size; returns them with Graph/EWS ratios."""
    from bot import embedded_redis

    home = Path(tempfile.mkdtemp(prefix="clawback-p6g-"))
    try:
        rows = [_measure(b, n, idle_polls, home) for n in sizes for b in ("ews", "graph")]
    finally:
        try:
            embedded_redis.stop(home / "redis")
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass
    by = {(r["backend"], r["messages"]): r for r in rows}
    ratios = {
        str(n): {
            "requests": round(
                by["graph", n]["first_sync_requests"] / max(by["ews", n]["first_sync_requests"], 1), 2
            ),
            "seconds": round(
                by["graph", n]["first_sync_seconds"] / max(by["ews", n]["first_sync_seconds"], 0.01), 2
            ),
        }
        for n in sizes
    }
    result = {
        "id": "P6g",
        "what": "Graph vs EWS: first sync and idle poll (requests, seconds), same run, same mail",
        "rows": rows,
        "graph_vs_ews_first_sync": ratios,
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
        extra = (
            f" ({row['delta_requests']} delta, {row['batch_requests']} $batch, {row['token_requests']} token)"
            if row["backend"] == "graph"
            else ""
        )
        print(
            f"  {row['backend']:5} {row['messages']:>6,} msgs: first sync {row['first_sync_requests']:>5} requests"
            f"{extra} in {row['first_sync_seconds']} s; idle poll {row['idle_poll_requests']} request(s), "
            f"{row['idle_poll_ms_median']} ms"
        )
    for n, ratio in r["graph_vs_ews_first_sync"].items():
        print(
            f"  first sync of {int(n):,}: Graph/EWS requests {ratio['requests']}x, seconds {ratio['seconds']}x"
        )


if __name__ == "__main__":
    run()
