"""P6: an idle poll of a 10,000-message mailbox costs O(1) EWS requests (counted by the EWS stand-in).

It seeds the stand-in with 10,000 messages older than the first-sync window, lets the real poller (SQLite, an
embedded Redis) establish its sync state, then counts the requests of further polls with nothing new: with a
warm client (the poller process keeps its clients), with a cold client (a restarted poller), and while triaged
mail is still watched for implicit outcomes (Drafts and a target folder). ``python -m bench.p6_idle_poll``.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

N_MESSAGES = 10_000
OWNER = "U0EMMA"
ADDRESS = "emma@example.com"
PASSWORD = "bench-password"


def _policy(ews_url: str) -> str:
    return f"""
[roles.owner]
scopes = ["mail.read", "mail.categorize", "mail.move", "mail.draft"]
daily_tokens = 100000000

[users.{OWNER}]
roles = ["owner"]

[mailboxes."{ADDRESS}"]
owner = "{OWNER}"
ews_url = "{ews_url}"
password_env = "CLAWBACK_BENCH_UNUSED"
folders = {{ action = "Action" }}
"""


def run(n_messages: int = N_MESSAGES, idle_polls: int = 5) -> dict[str, Any]:
    """Count EWS requests per idle poll; returns the figures."""
    from bot.db import Database
    from bot.ingress import IngressDeps
    from bot.mail.ews import EwsMailbox
    from bot.mail.models import MailItem
    from bot.mail.poller import MailPoller
    from bot.migrate import ensure_schema
    from bot.ops import embedded_redis
    from bot.policy import policy_store
    from bot.queue import TaskQueue, connect_redis
    from bot.settings import Settings
    from bot.standins.ews import EwsStandIn

    home = Path(tempfile.mkdtemp(prefix="clawback-p6-"))
    ews = EwsStandIn(address=ADDRESS, username=ADDRESS, password=PASSWORD).start()
    try:
        old = datetime.now(UTC) - timedelta(days=60)
        for i in range(n_messages):
            ews.add_message(
                subject=f"archived {i}",
                sender="alice@example.com",
                body_text=f"body {i}",
                received=old + timedelta(seconds=i),
            )
        (home / "policy.toml").write_text(_policy(ews.ews_url))
        settings = Settings(
            _env_file=None,
            database_url=f"sqlite:///{home / 'p6.db'}",
            redis_url=embedded_redis.ensure(home / "redis"),
            clawback_home=home,
            clawback_policy=home / "policy.toml",
            clawback_mail_batch_size=512,
        )
        db = Database(settings.database_url)
        ensure_schema(db)
        queue = TaskQueue(connect_redis(settings), prefix="p6bench")
        ingress = IngressDeps(db=db, queue=queue, policy=policy_store(settings, db))

        def factory() -> Any:
            clients: dict[str, EwsMailbox] = {}

            def get(address: str) -> EwsMailbox:
                if address not in clients:
                    clients[address] = EwsMailbox(address, ews.ews_url, username=address, password=PASSWORD)
                return clients[address]

            return get

        poller = MailPoller(settings, db, ingress, factory())
        started = time.perf_counter()
        assert poller.run_once() == 0
        first_sync_s = time.perf_counter() - started
        first_sync_requests = len(ews.requests)

        def idle(p: MailPoller) -> tuple[int, list[str], float]:
            before = len(ews.requests)
            t0 = time.perf_counter()
            assert p.run_once() == 0
            return len(ews.requests) - before, ews.operations()[before:], time.perf_counter() - t0

        warm = [idle(poller) for _ in range(idle_polls)]
        cold = idle(MailPoller(settings, db, ingress, factory()))
        # triaged mail still watched: one item moved to Action with an open draft
        ews.add_message(subject="watched", sender="carol@example.com", body_text="Can you?")
        poller.run_once()
        with db.session() as s:
            item = s.query(MailItem).one()
            mb = poller.mailboxes(ADDRESS)
            item.draft_id = mb.create_reply_draft(item.item_id, "ok")
            item.draft_status, item.status = "open", "triaged"
            item.current_item_id, item.folder = mb.move(item.item_id, "Action"), "Action"
        poller.run_once()  # establishes the watched folders' states
        watching = [idle(poller) for _ in range(idle_polls)]
        result = {
            "id": "P6",
            "what": f"EWS requests per idle poll of a {n_messages:,}-message mailbox",
            "messages": n_messages,
            "requests_per_idle_poll": statistics.median(r[0] for r in warm),
            "operations_per_idle_poll": warm[0][1],
            "requests_per_idle_poll_cold_client": cold[0],
            "operations_cold_client": cold[1],
            "requests_per_idle_poll_while_watching_outcomes": statistics.median(r[0] for r in watching),
            "operations_while_watching": watching[0][1],
            "idle_poll_ms_median": round(statistics.median(r[2] for r in warm) * 1000, 1),
            "idle_poll_ms_spread": round((max(r[2] for r in warm) - min(r[2] for r in warm)) * 1000, 1),
            "first_sync_requests": first_sync_requests,
            "first_sync_seconds": round(first_sync_s, 2),
            "target": "≤ 2 requests",
            "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _print(result)
        return result
    finally:
        ews.stop()
        try:
            embedded_redis.stop(home / "redis")
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass


def _print(r: dict[str, Any]) -> None:
    print(f"P6 idle poll of a {r['messages']:,}-message mailbox ({r['machine']})")
    print(
        f"  warm client:            {r['requests_per_idle_poll']} request(s) {r['operations_per_idle_poll']}"
        f"  median {r['idle_poll_ms_median']} ms (spread {r['idle_poll_ms_spread']} ms)"
    )
    print(
        f"  restarted poller:       {r['requests_per_idle_poll_cold_client']} request(s) "
        f"{r['operations_cold_client']}"
    )
    print(
        f"  watching outcomes:      {r['requests_per_idle_poll_while_watching_outcomes']} request(s) "
        f"{r['operations_while_watching']}"
    )
    print(
        f"  first sync:             {r['first_sync_requests']} requests in {r['first_sync_seconds']} s"
        f"   (target per idle poll {r['target']})"
    )


if __name__ == "__main__":
    run()
