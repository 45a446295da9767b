"""An open-loop load generator of signed Slack events, loopback only, bounded in count and time.

Events are scheduled at a fixed rate; latency is measured from each event's *scheduled* time, so a server
that falls behind shows it (no coordinated omission). A share of events is re-sent as Slack retries
(same ``event_id``, ``X-Slack-Retry-Num``) to check that duplicates never become extra tasks. Given several
URLs (web processes), events go round-robin across them and each retry to the next one, as a load balancer
would send it.
"""

from __future__ import annotations

import statistics
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.standins.slack_events import SlackEventSender


@dataclass
class LoadResult:
    """What one load run did and saw."""

    rate: float
    seconds: float
    sent: int = 0
    retries_sent: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def percentile(self, p: float) -> float:
        """Latency percentile in milliseconds."""
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        k = min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))
        return data[k]

    def summary(self) -> dict:
        """JSON-ready summary."""
        return {
            "rate_per_s": self.rate,
            "seconds": self.seconds,
            "sent": self.sent,
            "retries_sent": self.retries_sent,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "p50_ms": round(self.percentile(50), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else None,
            "achieved_rate_per_s": round(self.sent / self.wall_s, 1) if self.wall_s else None,
        }


def run_load(
    url: str | Sequence[str],
    secret: str,
    *,
    rate: float,
    seconds: float,
    threads: int = 16,
    retry_every: int = 10,
    channel: str = "C0GENERAL",
    user: str = "U0ALICE",
    prefix: str = "EvLOAD",
) -> LoadResult:
    """Send ``rate`` mentions per second for ``seconds`` to ``url``; every ``retry_every``-th is re-sent.

    ``url`` may be several URLs: event ``i`` goes to ``url[i % n]``, its retry to ``url[(i + 1) % n]``.
    """
    urls = [url] if isinstance(url, str) else list(url)
    if seconds > 120 or rate > 2000:
        raise ValueError("bounded load only: at most 120 s and 2,000 events/s")
    total = int(rate * seconds)
    result = LoadResult(rate=rate, seconds=seconds)
    lock = threading.Lock()
    start = time.perf_counter() + 0.2
    next_index = iter(range(total))
    ts_base = 1_700_000_000 + zlib.crc32(prefix.encode()) % 100_000_000  # each run (prefix) its own messages

    def worker() -> None:
        senders = [SlackEventSender(u, secret, timeout=10) for u in urls]
        try:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                event_id = f"{prefix}{i:07d}"
                sends = [None, 1] if retry_every and i % retry_every == 0 else [None]
                for n, retry in enumerate(sends):
                    try:
                        reply = senders[(i + n) % len(senders)].mention(
                            user,
                            channel,
                            f"load question {i}",
                            event_id=event_id,
                            ts=f"{ts_base}.{i:06d}",  # unique per run, as Slack ts are per channel
                            retry_num=retry,
                        )
                        status = reply.status
                    except OSError:
                        status = -1
                    latency = (time.perf_counter() - due) * 1000
                    with lock:
                        result.statuses[status] = result.statuses.get(status, 0) + 1
                        if status != 200:
                            result.errors += 1
                        if retry is None:
                            result.sent += 1
                            result.latencies_ms.append(latency)
                            result.event_ids.append(event_id)
                        else:
                            result.retries_sent += 1
        finally:
            for sender in senders:
                sender.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 60)
    result.wall_s = time.perf_counter() - t0
    return result
