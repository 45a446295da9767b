"""Prometheus metrics: by surface, intent, outcome and model — never by person.

Process-local counters cover ingress (the web process). Pipeline-wide totals (tokens, cost, tasks,
outcomes) come from the ledger at scrape time through ``LedgerCollector``, so they are right however
many worker machines there are.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

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


class LedgerCollector:
    """Pipeline totals read from SQL at scrape time (cached for ``ttl`` seconds)."""

    def __init__(self, db: Database, ttl: float = 15.0) -> None:
        self.db = db
        self.ttl = ttl
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
                for surface, intent, status, n in s.execute(
                    select(Task.surface, Task.intent, Task.status, func.count()).group_by(
                        Task.surface, Task.intent, Task.status
                    )
                ):
                    tasks.add_metric([surface, intent, status], n)
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
                    tokens.add_metric([surface, intent, model, "prompt"], p or 0)
                    tokens.add_metric([surface, intent, model, "completion"], c or 0)
                    cost.add_metric([surface, intent, model], usd or 0.0)
                for surface, intent, kind, n in s.execute(
                    select(Task.surface, Task.intent, Outcome.kind, func.count())
                    .join(Task, Task.id == Outcome.task_id)
                    .group_by(Task.surface, Task.intent, Outcome.kind)
                ):
                    outcomes.add_metric([surface, intent, kind], n)
        except Exception:
            return []
        return [tasks, tokens, cost, outcomes]
