"""Reports from the ledger: what the agent achieved per token, grouped, private by design.

Numbers come from ``measure_task_facts`` (``bot.measure.facts``), aggregated in SQL and finished in Python from a
few thousand grouped rows, so a month of a million LLM calls reports in well under a second.

Metrics per group (see ``METRIC_COLUMNS``): tasks, tokens, cost; the share of tokens spent on tasks that got a
real outcome (explicit, implicit or weak — not a timeout); accepted and rejected outcomes (decisive outcome
per task, see ``bot.measure.outcomes``), acceptance rate (accepted / judged) and its weighted form; tokens and cost
per accepted outcome; label correction rate (corrected / (kept + corrected)); draft use rate (used / (used +
discarded)); deploy success and rollback rates (over succeeded + failed + rolled back); median and p95
latency, estimated from a histogram with ≤ 5% error (task latency created → finished for task dimensions,
model-call latency for ``prompt`` and ``model``).

Privacy:

- a person sees their own numbers (``usage.self``);
- everything else is an aggregate over at least k people (``[privacy] k_anonymity``, default 5), the totals
  included: smaller groups are suppressed (primary suppression); then, across every table one report
  publishes (totals, the ``by`` rows, by intent, by surface, the timeline), no margin may have exactly one
  suppressed cell under it and the suppressed cells under a shown margin must cover at least k people, else
  the next smallest cell is suppressed too, to a fixed point (complementary suppression, ``protect``). The
  totals are the margin of every table; a table whose dimensions include another published table's has that
  table as a margin too (by intent × day: by intent and the timeline). The outcome mix is hidden with the totals;
- per-person rows (``by user``) and flags with evidence need ``audit.read`` (or ``admin``); reading them is
  audited with the reader id as given and the operating-system user; per-person rows are sorted by user id;
- nothing sorts or ranks people (or any group) by tokens: rows are always sorted by their key.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, func, literal, select

from bot.db import Database, LLMCall, utcnow
from bot.errors import Denied
from bot.measure import facts
from bot.measure.facts import TaskFact, bucket_value
from bot.measure.outcomes import STRENGTHS, OutcomeConfig, config_from_settings
from bot.policy import Policy, load_policy

SCHEMA = "clawback.report/1"
DIMENSIONS = ("user", "intent", "surface", "team", "prompt", "model", "channel", "day")
_TASK_SQL = {
    "user": TaskFact.requester,
    "intent": TaskFact.intent,
    "surface": TaskFact.surface,
    "channel": TaskFact.channel_id,
    "day": TaskFact.day,
}
_CALL_SQL = {"prompt": None, "model": LLMCall.model}
NO_TEAM = "(no team)"
# Kept for callers of the first report version: kinds that count as accepted by default.
ACCEPTED = (
    "resolved",
    "label_kept",
    "draft_sent",
    "draft_sent_unchanged",
    "draft_sent_edited",
    "deploy_succeeded",
)

METRIC_COLUMNS = [
    "tasks",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "tokens_with_outcome_share",
    "accepted_outcomes",
    "rejected_outcomes",
    "acceptance_rate",
    "weighted_acceptance_rate",
    "tokens_per_accepted_outcome",
    "cost_per_accepted_outcome",
    "correction_rate",
    "draft_use_rate",
    "deploy_success_rate",
    "rollback_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "no_outcome",
    "awaiting_outcome",
    "failed",
    "denied",
    "pending",
]


# -- who is looking -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    """Who a report is for, and therefore what it may show."""

    user: str | None  # Slack user id; None = the operator at the CLI without --as
    per_person: bool = False  # audit.read/admin: per-person rows and flags with evidence
    self_only: bool = False  # only the viewer's own numbers

    @property
    def label(self) -> str:
        """Short description for the report header and the audit log."""
        role = "auditor" if self.per_person else "self" if self.self_only else "team"
        return f"{self.user or 'operator'} ({role})"

    @classmethod
    def operator(cls) -> Viewer:
        """The CLI operator: k-anonymous aggregates only."""
        return cls(None)

    @classmethod
    def auditor(cls, user: str | None = None) -> Viewer:
        """Full view (per-person rows, flags with evidence)."""
        return cls(user, per_person=True)


def viewer_for(policy: Policy, user: str | None) -> Viewer:
    """The view ``user`` is entitled to (None: the CLI operator); raises Denied without any usage scope."""
    if user is None:
        return Viewer.operator()
    if policy.has_scope(user, "audit.read") or policy.has_scope(user, "admin"):
        return Viewer(user, per_person=True)
    if policy.has_scope(user, "usage.team"):
        return Viewer(user)
    if policy.has_scope(user, "usage.self"):
        return Viewer(user, self_only=True)
    raise Denied("You cannot see usage reports.", reason="missing scope usage.self", scope="usage.self")


# -- accumulation --------------------------------------------------------------------------------------------


@dataclass
class _Acc:
    """Running sums for one group."""

    tasks: int = 0
    p: int = 0
    c: int = 0
    cost: float = 0.0
    states: Counter = field(default_factory=Counter)  # state -> tasks
    state_tokens: Counter = field(default_factory=Counter)  # state -> tokens
    hist: Counter = field(default_factory=Counter)  # latency bucket -> count
    people: set = field(default_factory=set)
    people_n: int | None = None  # counted in SQL when the rows carry no requester

    @property
    def npeople(self) -> int:
        """Distinct people in the group."""
        return self.people_n if self.people_n is not None else len(self.people)

    def add(self, requester: str, state: str, n: int, p: int, c: int, cost: float) -> None:
        self.tasks += n
        self.p += p
        self.c += c
        self.cost += cost
        self.states[state] += n
        self.state_tokens[state] += p + c
        if requester is not None:
            self.people.add(requester)

    def merge(self, other: _Acc) -> None:
        self.tasks += other.tasks
        self.p += other.p
        self.c += other.c
        self.cost += other.cost
        self.states.update(other.states)
        self.state_tokens.update(other.state_tokens)
        self.hist.update(other.hist)
        self.people |= other.people


def percentile(hist: Counter, q: float) -> float | None:
    """The q-quantile (0–1) of a bucketed latency histogram, at the bucket's middle."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, (round(q * 1000) * total + 999) // 1000)  # ceil(q * n) without float surprises
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return round(bucket_value(bucket), 1)
    return None


def _ratio(a: float, b: float, digits: int = 4) -> float | None:
    return round(a / b, digits) if b else None


def metrics(acc: _Acc, config: OutcomeConfig) -> dict[str, Any]:
    """The documented metrics of one group."""
    accepted = rejected = 0
    w_acc = w_rej = 0.0
    outcome_tokens = 0
    fam: Counter = Counter()
    status_counts: Counter = Counter()
    for state, n in acc.states.items():
        if state.startswith("~"):
            status_counts[state[1:]] += n
            continue
        kind = config.kind(state)
        assert kind is not None
        if kind.strength == "timeout":
            status_counts["none"] += n
            continue
        outcome_tokens += acc.state_tokens[state]
        if kind.cls == "accepted":
            accepted += n
            w_acc += n * kind.weight
        elif kind.cls == "rejected":
            rejected += n
            w_rej += n * kind.weight
        if kind.family and kind.role:
            fam[(kind.family, kind.role)] += n
    tokens = acc.p + acc.c
    kept, corrected = fam[("label", "kept")], fam[("label", "corrected")]
    used, discarded = fam[("draft", "used")], fam[("draft", "discarded")]
    ok, bad, back = fam[("deploy", "succeeded")], fam[("deploy", "failed")], fam[("deploy", "rolled_back")]
    return {
        "tasks": acc.tasks,
        "prompt_tokens": acc.p,
        "completion_tokens": acc.c,
        "total_tokens": tokens,
        "cost": round(acc.cost, 6),
        "tokens_with_outcome_share": _ratio(outcome_tokens, tokens),
        "accepted_outcomes": accepted,
        "rejected_outcomes": rejected,
        "acceptance_rate": _ratio(accepted, accepted + rejected),
        "weighted_acceptance_rate": _ratio(w_acc, w_acc + w_rej),
        "tokens_per_accepted_outcome": _ratio(tokens, accepted, 1),
        "cost_per_accepted_outcome": _ratio(acc.cost, accepted, 6),
        "correction_rate": _ratio(corrected, kept + corrected),
        "draft_use_rate": _ratio(used, used + discarded),
        "deploy_success_rate": _ratio(ok, ok + bad + back),
        "rollback_rate": _ratio(back, ok + bad + back),
        "latency_p50_ms": percentile(acc.hist, 0.5),
        "latency_p95_ms": percentile(acc.hist, 0.95),
        "no_outcome": status_counts["none"],
        "awaiting_outcome": status_counts["done"],
        "failed": status_counts["failed"],
        "denied": status_counts["denied"],
        "pending": status_counts["queued"] + status_counts["running"],
    }


# -- SQL -----------------------------------------------------------------------------------------------------


@dataclass
class _Query:
    db: Database
    since: datetime | None
    until: datetime | None
    only_user: str | None

    def _where(self, stmt: Any, *, skip_ignored: bool = True) -> Any:
        if skip_ignored:  # (latency queries need not: ignored tasks have no latency)
            stmt = stmt.where(TaskFact.state != "~ignored")
        if self.since is not None:
            stmt = stmt.where(TaskFact.created_at >= self.since)
        if self.until is not None:
            stmt = stmt.where(TaskFact.created_at < self.until)
        if self.only_user is not None:
            stmt = stmt.where(TaskFact.requester == self.only_user)
        return stmt

    def _fetch(self, stmt: Any) -> list[tuple]:
        with self.db.session() as s:
            return [tuple(r) for r in s.connection().execute(stmt)]

    def task_rows(
        self, dims: Sequence[str], *, per_person: bool = True, latency: bool = True
    ) -> tuple[list[tuple], list[tuple]]:
        """(requester, *dims, state, n, p, c, cost) and (requester, *dims, bucket, n), grouped in SQL.

        Without ``per_person`` the requester column is NULL (fewer rows; people are counted by ``people``).
        """
        who = TaskFact.requester if per_person else literal(None, String)
        dim_cols = [_TASK_SQL[d] for d in dims if d != "user"]
        group = [TaskFact.requester, *dim_cols] if per_person else dim_cols
        main = self._where(
            select(
                who,
                *dim_cols,
                TaskFact.state,
                func.count(),
                func.sum(TaskFact.prompt_tokens),
                func.sum(TaskFact.completion_tokens),
                func.sum(TaskFact.cost),
            )
        ).group_by(*group, TaskFact.state)
        lat = self._where(
            select(who, *dim_cols, TaskFact.latency_bucket, func.count()), skip_ignored=False
        ).where(TaskFact.latency_bucket.is_not(None))
        lat = lat.group_by(*group, TaskFact.latency_bucket)
        return self._fetch(main), self._fetch(lat) if latency else []

    def people(self, dims: Sequence[str]) -> list[tuple]:
        """(*dims, distinct people) per group."""
        cols = [_TASK_SQL[d] for d in dims]
        return self._fetch(
            self._where(select(*cols, func.count(func.distinct(TaskFact.requester)))).group_by(*cols)
        )

    def people_sets(self, dims: Sequence[str]) -> dict[tuple, set]:
        """Group → its set of people (only used when small groups need complementary suppression)."""
        cols = [_TASK_SQL[d] for d in dims]
        out: dict[tuple, set] = defaultdict(set)
        for row in self._fetch(self._where(select(*cols, TaskFact.requester).distinct())):
            out[tuple(row[:-1])].add(row[-1])
        return out

    def call_rows(self, dims: Sequence[str]) -> tuple[list[tuple], list[tuple]]:
        """Like ``task_rows`` but per LLM call, for the ``prompt`` and ``model`` dimensions."""
        cols: list[Any] = [TaskFact.requester]
        for d in dims:
            if d == "prompt":
                cols += [LLMCall.prompt_name, LLMCall.prompt_version]
            elif d == "model":
                cols.append(LLMCall.model)
            elif d != "user" and d != "team":
                cols.append(_TASK_SQL[d])

        def joined(stmt: Any) -> Any:
            return self._where(stmt.select_from(LLMCall).join(TaskFact, TaskFact.task_id == LLMCall.task_id))

        main = joined(
            select(
                *cols,
                TaskFact.state,
                func.count(func.distinct(LLMCall.task_id)),
                func.sum(LLMCall.prompt_tokens),
                func.sum(LLMCall.completion_tokens),
                func.sum(LLMCall.cost),
            )
        ).group_by(*cols, TaskFact.state)
        ms = (
            func.max(LLMCall.latency_ms, 0.0) if self.db.is_sqlite else func.greatest(LLMCall.latency_ms, 0.0)
        )
        bucket = facts.bucket_sql(self.db, ms)
        lat = joined(select(*cols, bucket.label("b"), func.count())).group_by(*cols, bucket)
        return [_fold_prompt(r, dims) for r in self._fetch(main)], [
            _fold_prompt(r, dims) for r in self._fetch(lat)
        ]


def _fold_prompt(row: tuple, dims: Sequence[str]) -> tuple:
    """Join (prompt_name, prompt_version) into one ``name@version`` key."""
    if "prompt" not in dims:
        return row
    idx = 1
    for d in dims:
        if d == "prompt":
            break
        if d not in ("user", "team"):
            idx += 1
    return (*row[:idx], f"{row[idx]}@{row[idx + 1]}", *row[idx + 2 :])


def _teams(policy: Policy) -> dict[str, list[str]]:
    """Requester → the policy groups (teams) they belong to."""
    out: dict[str, list[str]] = defaultdict(list)
    for name, (_roles, members) in sorted(policy.groups.items()):
        for m in members:
            out[m].append(name)
    return out


def _group(
    rows: list[tuple],
    lat_rows: list[tuple],
    dims: Sequence[str],
    sql_dims: Sequence[str],
    teams: dict[str, list[str]],
) -> dict[tuple, _Acc]:
    """Fold SQL rows (requester, *sql_dims, ...) into groups keyed by ``dims`` (expanding teams)."""
    pos = {d: i + 1 for i, d in enumerate(sql_dims)}
    idx = [0 if d == "user" else pos.get(d, -1) for d in dims]

    def keys(row: tuple) -> Iterable[tuple]:
        if "team" not in dims:  # fast path: one key per row
            return (tuple(row[i] for i in idx),)
        requester = row[0]
        base: list[list[Any]] = [[]]
        for d, i in zip(dims, idx, strict=True):
            values = (teams.get(requester) or [NO_TEAM]) if d == "team" else [row[i]]
            base = [b + [v] for b in base for v in values]
        return [tuple(b) for b in base]

    groups: dict[tuple, _Acc] = defaultdict(_Acc)
    width = 1 + len(sql_dims)
    for row in rows:
        state, n, p, c, cost = row[width:]
        for key in keys(row):
            groups[key].add(row[0], state, int(n), int(p or 0), int(c or 0), float(cost or 0.0))
    for row in lat_rows:
        bucket, n = row[width:]
        for key in keys(row):
            if key in groups:
                groups[key].hist[int(bucket)] += int(n)
    return groups


def _sql_dims(dims: Sequence[str]) -> list[str]:
    return [d for d in dims if d not in ("user", "team")]


Cell = tuple[tuple[str, ...], tuple]  # (the table's dimensions, the group's key); ((), ()) is the totals


def protect(tables: dict[tuple[str, ...], tuple[dict[tuple, _Acc], Any]], k: int) -> set[Cell]:
    """Cells to suppress across every table published together in one report (see the module doc).

    ``tables`` maps dimensions to (groups, loader of their people sets or None when the groups carry them);
    ``()`` is the totals. Primary suppression: cells with fewer than k people. Complementary suppression, to a
    fixed point: every published margin (the totals for every table, and each published table whose dimensions
    are a subset of another's) equals the sum of the cells under it, so no such equation may hold exactly one
    suppressed cell, and when the margin is shown the suppressed cells under it must together cover at least
    k people; otherwise the smallest shown cell under it (by people, then key) is suppressed too, or the margin
    itself when none is left.
    """
    groups = {dims: g for dims, (g, _sets) in tables.items()}
    loaded: dict[tuple[str, ...], dict[tuple, set]] = {}

    def people(cell: Cell) -> set:
        dims, key = cell
        g, sets = tables[dims]
        if sets is None:
            return g[key].people
        if dims not in loaded:
            loaded[dims] = sets()
        return loaded[dims].get(key, set())

    def npeople(cell: Cell) -> int:
        return groups[cell[0]][cell[1]].npeople

    hidden: set[Cell] = {
        (dims, key) for dims, g in groups.items() for key, acc in g.items() if acc.npeople < k
    }
    equations: list[tuple[Cell, list[Cell]]] = []
    for dims, g in groups.items():
        for sub in groups:
            if not set(sub) < set(dims):
                continue
            at = [dims.index(d) for d in sub]
            under: dict[tuple, list[Cell]] = defaultdict(list)
            for key in g:
                under[tuple(key[i] for i in at)].append((dims, key))
            for mkey, cells in under.items():
                if mkey in groups[sub]:  # a margin that is not published gives no equation
                    equations.append(((sub, mkey), sorted(cells, key=lambda c: _key_sort(c[1]))))
    changed = True
    while changed:
        changed = False
        for margin, cells in equations:
            gone = [c for c in (margin, *cells) if c in hidden]
            if not gone:
                continue
            if len(gone) >= 2 and (margin in hidden or len(set().union(*(people(c) for c in gone))) >= k):
                continue
            shown = sorted((c for c in cells if c not in hidden), key=lambda c: (npeople(c), _key_sort(c[1])))
            pick = shown[0] if shown else margin if margin not in hidden else None
            if pick is not None:
                hidden.add(pick)
                changed = True
    return hidden


def _key_sort(key: tuple) -> tuple:
    return tuple((v is None, str(v) if v is not None else "") for v in key)


def _rows(
    groups: dict[tuple, _Acc], dims: Sequence[str], config: OutcomeConfig, hidden: set[tuple]
) -> list[dict[str, Any]]:
    out = []
    for key in sorted(groups, key=_key_sort):
        row: dict[str, Any] = dict(zip(dims, key, strict=True))
        if key in hidden:
            row["suppressed"] = True
            row.update({c: None for c in METRIC_COLUMNS})
            row["people"] = None
        else:
            row["suppressed"] = False
            row.update(metrics(groups[key], config))
            row["people"] = groups[key].npeople if groups[key].npeople >= 0 else None
        out.append(row)
    return out


# -- the report ----------------------------------------------------------------------------------------------


def parse_by(value: str | Sequence[str] | None) -> list[str]:
    """``user,intent`` → ["user", "intent"], validated."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    dims = [d.strip().lower() for d in items if d.strip()]
    for d in dims:
        if d not in DIMENSIONS:
            raise ValueError(f"unknown dimension {d!r} (use {', '.join(DIMENSIONS)})")
    if len(set(dims)) != len(dims):
        raise ValueError("each dimension may appear once")
    return dims


def build_report(
    db: Database,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    by: str | Sequence[str] | None = None,
    viewer: Viewer | None = None,
    policy: Policy | None = None,
    settings: Any | None = None,
    include_flags: bool = True,
    refresh: bool = True,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Any]:
    """The report document (JSON-ready): totals, rows for ``by``, by intent and surface, timeline,
    outcome mix,
    flags (with evidence only for ``audit.read``). ``progress(done, total, step)`` hears of each step."""
    step = _stepper(progress, 7)
    dims = parse_by(by)
    viewer = viewer or Viewer.operator()
    policy = policy or load_policy(None)
    config = config_from_settings(settings)
    k = policy.k_anonymity
    if "user" in dims and not (viewer.per_person or viewer.self_only):
        raise Denied(
            "Per-person rows need audit.read.", reason="report by user needs audit.read", scope="audit.read"
        )
    if refresh:
        step("refreshing facts")
        facts.refresh(db, config)
    q = _Query(db, since, until, viewer.user if viewer.self_only else None)
    private = not viewer.per_person and not viewer.self_only
    teams = _teams(policy)
    cache: dict[tuple, tuple[list, list]] = {}

    def grouped(group_dims: Sequence[str]) -> tuple[dict[tuple, _Acc], Any]:
        """Groups for ``group_dims`` and a loader of their people sets (for complementary suppression)."""
        sql = tuple(_sql_dims(group_dims))
        if any(d in _CALL_SQL for d in group_dims):
            rows, lat = q.call_rows(sql)
            return _group(rows, lat, group_dims, sql, teams), None
        per_person = sql in ((), ("intent",)) or "user" in group_dims or "team" in group_dims
        if per_person:
            # totals, by intent and by user x intent share one query (it streams through an index)
            fetch = sql if sql not in ((), ("intent",)) else ("intent",)
            if fetch not in cache:
                cache[fetch] = q.task_rows(fetch)
            rows, lat = cache[fetch]
            return _group(rows, lat, group_dims, fetch, teams), None
        rows, lat = q.task_rows(sql, per_person=False, latency=sql != ("day",) or dims == ["day"])
        groups = _group(rows, lat, group_dims, sql, teams)
        if private:  # people counts drive suppression; auditors and one's own view need none
            for *key, n in q.people(sql):
                if tuple(key) in groups:
                    groups[tuple(key)].people_n = int(n)
        else:
            for acc in groups.values():
                acc.people_n = -1  # not counted
        return groups, lambda: q.people_sets(sql)

    # Every table this report publishes, computed once: suppression is decided across all of them together.
    tables: dict[tuple[str, ...], tuple[dict[tuple, _Acc], Any]] = {}
    for table_dims in ([], dims, ["intent"], ["surface"], ["day"]):
        if tuple(table_dims) not in tables:
            step("grouping by " + (" × ".join(table_dims) or "nothing"))
            tables[tuple(table_dims)] = grouped(table_dims)
    tables[()][0].setdefault((), _Acc())
    hidden = protect(tables, k) if private else set()

    def rows_of(table_dims: Sequence[str]) -> list[dict[str, Any]]:
        groups = tables[tuple(table_dims)][0]
        mine = {key for d, key in hidden if d == tuple(table_dims)}
        return _rows(groups, table_dims, config, mine)

    total = tables[()][0][()]
    totals_hidden = ((), ()) in hidden
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_at": utcnow().isoformat(),
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "by": dims,
        "viewer": viewer.label,
        "privacy": {
            "k_anonymity": k,
            "per_person": viewer.per_person or viewer.self_only,
            "suppressed_groups": len(hidden),
        },
        "totals": rows_of([])[0],
    }
    if dims:
        doc["rows"] = rows_of(dims)
    doc["by_intent"] = rows_of(["intent"])
    doc["by_surface"] = rows_of(["surface"])
    doc["timeline"] = [
        {
            key: r[key]
            for key in (
                "day",
                "suppressed",
                "tasks",
                "total_tokens",
                "cost",
                "accepted_outcomes",
                "rejected_outcomes",
            )
        }
        for r in rows_of(["day"])
    ]
    # The mix is the totals broken down by outcome: hidden with them.
    doc["outcome_mix"] = None if totals_hidden else _outcome_mix(total, config)
    doc["definitions"] = {"outcome_kinds": config.as_dict(), "strengths": STRENGTHS}
    if include_flags and not viewer.self_only:
        from bot.measure import signals

        step("looking for signals")
        found = signals.detect(db, since=since, until=until, settings=settings, config=config)
        doc["flags_summary"] = dict(sorted(Counter(f.kind for f in found).items()))
        doc["flags"] = [f.as_dict() for f in found] if viewer.per_person else None
    if viewer.per_person and ("user" in dims or doc.get("flags")):
        from bot import audit

        audit.record(
            db,
            actor=viewer.user or "cli",
            action="report.per_person",
            decision="info",
            scope="audit.read",
            details={
                "by": dims,
                "flags": len(doc.get("flags") or []),
                # The reader id is whatever was typed (the CLI is for operators who hold the database anyway);
                # the operating-system account says who typed it.
                "os_user": _os_user(),
            },
        )
    return doc


def _stepper(progress: Callable[[int, int, str], None] | None, total: int) -> Callable[[str], None]:
    """Counts steps for ``progress`` (a no-op without one)."""
    done = [0]

    def step(name: str) -> None:
        if progress is not None:
            done[0] += 1
            progress(done[0], max(total, done[0]), name)

    return step


def _os_user() -> str | None:
    """The operating-system account running this process, when it can be told."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _outcome_mix(total: _Acc, config: OutcomeConfig) -> dict[str, int]:
    """Tasks by outcome state (decisive kind, or none/failed/denied/pending/awaiting)."""
    mix: Counter = Counter()
    for state, n in total.states.items():
        if state.startswith("~"):
            status = state[1:]
            name = {"done": "awaiting", "queued": "pending", "running": "pending"}.get(status, status)
        else:
            name = state
        mix[name] += n
    return dict(sorted(mix.items()))


def own_usage(db: Database, user: str, *, since: datetime, settings: Any | None = None) -> dict[str, Any]:
    """One person's own numbers straight from the ledger (always fresh; fast through the requester index).

    Used by ``/usage`` and the Home tab: nobody else's numbers are read.
    """
    from sqlalchemy import and_

    from bot.db import Outcome, Task
    from bot.measure.facts import bucket_of
    from bot.measure.outcomes import decisive

    config = config_from_settings(settings)
    mine = and_(Task.requester == user, Task.created_at >= since, Task.status != "ignored")
    with db.session() as s:
        tasks = s.execute(
            select(Task.id, Task.intent, Task.status, Task.created_at, Task.finished_at).where(mine)
        ).all()
        usage = {
            r[0]: r[1:]
            for r in s.execute(
                select(
                    LLMCall.task_id,
                    func.sum(LLMCall.prompt_tokens),
                    func.sum(LLMCall.completion_tokens),
                    func.sum(LLMCall.cost),
                )
                .join(Task, Task.id == LLMCall.task_id)
                .where(mine)
                .group_by(LLMCall.task_id)
            )
        }
        outs: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
        for tid, oid, kind, source in s.execute(
            select(Outcome.task_id, Outcome.id, Outcome.kind, Outcome.source)
            .join(Task, Task.id == Outcome.task_id)
            .where(mine)
        ):
            outs[tid].append((oid, kind, source))
    total, per_intent = _Acc(), defaultdict(_Acc)
    for tid, intent, status, created, finished in tasks:
        p, c, cost = usage.get(tid, (0, 0, 0.0))
        state = decisive(outs.get(tid, []), config) or f"~{status}"
        for acc in (total, per_intent[intent]):
            acc.add(user, state, 1, int(p or 0), int(c or 0), float(cost or 0.0))
            if status in ("done", "failed") and finished is not None and created is not None:
                acc.hist[bucket_of((finished - created).total_seconds() * 1000)] += 1
    return {
        "user": user,
        "since": since.isoformat(),
        "totals": metrics(total, config),
        "by_intent": [{"intent": key, **metrics(acc, config)} for key, acc in sorted(per_intent.items())],
        "outcome_mix": _outcome_mix(total, config),
    }


# -- formats -------------------------------------------------------------------------------------------------


def csv_columns(dims: Sequence[str]) -> list[str]:
    """The CSV header for a report grouped by ``dims``."""
    return [*dims, "suppressed", "people", *METRIC_COLUMNS]


def to_csv(doc: dict[str, Any]) -> str:
    """The report's rows (or, without ``by``, its per-intent rows) as CSV with a fixed header."""
    dims = doc.get("by") or ["intent"]
    rows = doc.get("rows") if doc.get("by") else doc.get("by_intent")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_columns(dims), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows or []:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


# -- tables for people (``clawback report``) -------------------------------------------------------------------

# The default table fits an 80-column terminal; ``--wide`` shows every metric.
NARROW_COLUMNS: list[tuple[str, str]] = [
    ("tasks", "tasks"),
    ("total_tokens", "tokens"),
    ("cost", "cost"),
    ("tokens_with_outcome_share", "w/ outcome"),
    ("acceptance_rate", "accepted"),
    ("cost_per_accepted_outcome", "$/accepted"),
]
_HEADERS = {
    "tokens_with_outcome_share": "tokens w/ outcome",
    "cost_per_accepted_outcome": "$/accepted",
    "tokens_per_accepted_outcome": "tokens/accepted",
    "latency_p50_ms": "p50",
    "latency_p95_ms": "p95",
}
WIDE_COLUMNS: list[tuple[str, str]] = [(c, _HEADERS.get(c, c.replace("_", " "))) for c in METRIC_COLUMNS]


def format_metric(column: str, value: Any) -> str:
    """A metric as people read it: dollars for costs, % for rates and shares, seconds for latencies."""
    if value is None:
        return "—"
    if column == "cost" or column.startswith("cost_"):
        return f"${value:,.2f}" if value >= 1 else f"${value:.4f}" if value > 0 else "$0"
    if column.endswith(("_rate", "_share")):
        pct = value * 100
        return f"{pct:.0f}%" if pct >= 10 or pct == 0 else f"{pct:.1f}%"
    if column.endswith("_ms"):
        return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"
    if column.endswith("_tokens") or column.startswith("tokens_") or column == "total_tokens":
        return _compact(value)
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _compact(n: float) -> str:
    """12,345 → 12.3k; 4,200,000 → 4.2M (token counts in the narrow table)."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f}{suffix}"
    return f"{n:,.0f}"


def report_tables(doc: dict[str, Any], *, wide: bool = False) -> list[Any]:
    """The report as Rich tables (rows in the document's order: by name, never by tokens)."""
    from rich import box
    from rich.table import Table

    cols = WIDE_COLUMNS if wide else NARROW_COLUMNS
    sections = [("Totals", [], [doc["totals"]])]
    if doc.get("by"):
        sections.append(("By " + " × ".join(doc["by"]), doc["by"], doc.get("rows") or []))
    sections += [
        ("By intent", ["intent"], doc.get("by_intent") or []),
        ("By surface", ["surface"], doc.get("by_surface") or []),
    ]
    tables: list[Any] = []
    for title, keys, rows in sections:
        table = Table(
            title=title,
            box=box.SIMPLE_HEAD,
            title_justify="left",
            pad_edge=False,
            show_edge=False,
            collapse_padding=True,
        )
        for key in keys:
            table.add_column(key, no_wrap=True)
        for _, header in cols:
            table.add_column(header, justify="right", no_wrap=wide)
        for r in rows:
            key_cells = ["—" if r.get(k) is None else str(r.get(k)) for k in keys]
            if r.get("suppressed"):
                table.add_row(*key_cells, "hidden", *[""] * (len(cols) - 1))
                continue
            table.add_row(*key_cells, *[format_metric(c, r.get(c)) for c, _ in cols])
        tables.append(table)
    return tables


def print_report_tables(doc: dict[str, Any], console: Any, *, wide: bool = False) -> None:
    """Print a report on ``console`` (Rich) as tables: narrow columns for 80 columns, or all (``wide``)."""
    from rich.console import Console
    from rich.table import Table

    for table in report_tables(doc, wide=wide):
        if wide:
            # As wide as the table needs (pipe it to `less -S`), never squeezed into "answ…".
            needed = Console(width=10_000).measure(table).maximum
            Console(width=max(console.width, needed), file=console.file).print(table)
        else:
            console.print(table)
        console.print()
    privacy = doc.get("privacy") or {}
    if privacy.get("suppressed_groups"):
        n, k = privacy["suppressed_groups"], privacy["k_anonymity"]
        console.print(f"{n} group(s) hidden: fewer than {k} people.")
    if doc.get("flags"):
        table = Table(title="Flags (signals for a conversation, not verdicts)")
        for c in ("kind", "subject", "explanation", "evidence"):
            table.add_column(c)
        for f in doc["flags"]:
            table.add_row(f["kind"], f["subject"], f["explanation"], ", ".join(f["evidence"][:5]))
        console.print(table)
    elif doc.get("flags_summary"):
        summary = ", ".join(f"{k}: {n}" for k, n in doc["flags_summary"].items())
        console.print(f"Flags: {summary} (details need --as <audit.read holder>)")
