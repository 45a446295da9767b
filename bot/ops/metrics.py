"""Prometheus metrics: by surface, intent, outcome and model — never by person, each series over >= k people.

Process-local counters cover ingress (the web process). Pipeline-wide totals (tokens, cost, tasks,
outcomes) come from the ledger at scrape time through ``LedgerCollector``, so they are right however
many worker machines there are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy import func, select

from bot.db import Database, LLMCall, Outcome, Task


class IngressMetrics:
    """Counters and histograms of the web process, in their own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "clawback_ingress_requests",
            "Slack requests by kind and result",
            ["kind", "result"],
            registry=registry,
        )
        self.ack_seconds = Histogram(
            "clawback_ingress_ack_seconds",
            "Time to acknowledge a Slack request",
            ["kind"],
            registry=registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.ignored = Counter(
            "clawback_ignored_messages", "Bot messages ignored (no loops)", ["kind"], registry=registry
        )


OTHER = "other"


def pool_small_groups(
    people: dict[tuple[str, str], set[str]], k: int
) -> dict[tuple[str, str], tuple[str, str]]:
    """Map each (surface, intent) to the labels it is published under, so every label covers >= k people.

    A group of fewer than ``k`` people goes into ``(surface, "other")``; a surface's pool still under ``k``
    goes into ``("other", "other")``; if that is still under ``k`` its groups are withheld: they map to nothing
    (absent from the result). Metrics publish no totals, so a withheld group cannot be recovered by subtraction.
    """
    labels: dict[tuple[str, str], tuple[str, str]] = {}
    pooled: dict[str, set[str]] = {}
    for (surface, intent), who in people.items():
        if len(who) >= k:
            labels[(surface, intent)] = (surface, intent)
        else:
            pooled.setdefault(surface, set()).update(who)
    last: set[str] = set()
    for (surface, intent), who in people.items():
        if (surface, intent) in labels:
            continue
        if len(pooled[surface]) >= k:
            labels[(surface, intent)] = (surface, OTHER)
        else:
            last.update(who)
    if len(last) >= k:
        for key in people:
            if key not in labels:
                labels[key] = (OTHER, OTHER)
    return labels


class LedgerCollector:
    """Pipeline totals read from SQL at scrape time (cached for ``ttl`` seconds), k-anonymous per series.

    ``k`` gives the policy's ``[privacy] k_anonymity`` at scrape time: every published (surface, intent)
    series covers at least k people (see ``pool_small_groups``).
    """

    def __init__(self, db: Database, ttl: float = 15.0, *, k: Callable[[], int] = lambda: 5) -> None:
        self.db = db
        self.ttl = ttl
        self.k = k
        self._cached: tuple[float, list] = (0.0, [])

    def collect(self) -> Iterator:
        now = time.monotonic()
        if now - self._cached[0] > self.ttl:
            self._cached = (now, self._build())
        yield from self._cached[1]

    def _build(self) -> list:
        tasks = GaugeMetricFamily(
            "clawback_tasks", "Tasks by surface, intent and status", labels=["surface", "intent", "status"]
        )
        tokens = CounterMetricFamily(
            "clawback_llm_tokens",
            "LLM tokens as reported by the API",
            labels=["surface", "intent", "model", "kind"],
        )
        cost = CounterMetricFamily(
            "clawback_llm_cost_usd", "Estimated LLM cost", labels=["surface", "intent", "model"]
        )
        outcomes = CounterMetricFamily(
            "clawback_outcomes", "Outcomes by surface, intent and kind", labels=["surface", "intent", "kind"]
        )
        try:
            with self.db.session() as s:
                people: dict[tuple[str, str], set[str]] = {}
                for surface, intent, who in s.execute(
                    select(Task.surface, Task.intent, Task.requester).distinct()
                ):
                    people.setdefault((surface, intent), set()).add(who)
                label = pool_small_groups(people, self.k())
                sums: dict[tuple, list[float]] = {}

                def add(family: str, key: tuple[str, str], rest: tuple, *values: float) -> None:
                    if key in label:  # withheld groups are not published at all
                        acc = sums.setdefault((family, *label[key], *rest), [0.0] * len(values))
                        for i, v in enumerate(values):
                            acc[i] += v or 0

                for surface, intent, status, n in s.execute(
                    select(Task.surface, Task.intent, Task.status, func.count()).group_by(
                        Task.surface, Task.intent, Task.status
                    )
                ):
                    add("tasks", (surface, intent), (status,), n)
                for surface, intent, model, p, c, usd in s.execute(
                    select(
                        Task.surface,
                        Task.intent,
                        LLMCall.model,
                        func.sum(LLMCall.prompt_tokens),
                        func.sum(LLMCall.completion_tokens),
                        func.sum(LLMCall.cost),
                    )
                    .join(Task, Task.id == LLMCall.task_id)
                    .group_by(Task.surface, Task.intent, LLMCall.model)
                ):
                    add("llm", (surface, intent), (model,), p, c, usd)
                for surface, intent, kind, n in s.execute(
                    select(Task.surface, Task.intent, Outcome.kind, func.count())
                    .join(Task, Task.id == Outcome.task_id)
                    .group_by(Task.surface, Task.intent, Outcome.kind)
                ):
                    add("outcomes", (surface, intent), (kind,), n)
        except Exception:
            return []
        for (family, surface, intent, extra), values in sums.items():
            if family == "tasks":
                tasks.add_metric([surface, intent, extra], values[0])
            elif family == "llm":
                tokens.add_metric([surface, intent, extra, "prompt"], values[0])
                tokens.add_metric([surface, intent, extra, "completion"], values[1])
                cost.add_metric([surface, intent, extra], values[2])
            else:
                outcomes.add_metric([surface, intent, extra], values[0])
        return [tasks, tokens, cost, outcomes]
