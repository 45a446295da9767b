"""P9: gaming signals' precision and recall, per person, on a labelled workload (``bench/p9_workload.py``).

42 simulated people over 10 days (about 5,900 Slack messages a seed): 15 gaming in one known way, 27 honest,
many of them hard cases built to look like a pattern. For each seed, the signals (``bot.measure.signals.detect``,
default thresholds) run over the ledger and every person is scored: flagged by any gaming signal or not.

- precision = gaming people flagged / people flagged; recall = gaming people flagged / gaming people;
  per pattern: the share of its people flagged (by any signal, and by the signal meant for it);
- ``spend_no_outcome`` is a waste signal, not a gaming one (people who never click trip it by design): it is
  left out of precision and recall and its flags are counted per kind of person;
- seeds 1–5 were used while choosing thresholds; seeds 101–105 were not, and are reported apart.

How the ledger is populated:

- ``ledger`` (every seed): the rows the pipeline writes for each message — task (payload text or the app's
  ``bot_id``/``app_id``, trigger, status ``ignored`` for app posts), one LLM call with its tokens, explicit
  outcomes for clicks, weak follow-up outcomes by the worker's own rule (``bot.measure.outcomes.note_followup``),
  the ``none`` sweep — inserted directly at their simulated times;
- ``pipeline`` (one held-out seed, ``--pipeline``): every message is a signed Slack event sent over HTTP to the
  real web app (``clawback web``'s WSGI app under waitress), every task runs in the real worker (RQ, the LLM
  stand-in over HTTP, the reply posted to the Slack stand-in), every click is a signed ``block_actions``
  payload. No setting moves the clock, so the run is compressed by rewriting each task's timestamps (task,
  LLM calls, click outcomes) to its simulated time afterwards; follow-ups, which the worker detects from real
  time, are disabled during the run (``CLAWBACK_FOLLOWUP_MINUTES`` near zero) and recorded afterwards with
  the same function on the simulated times.

    python -m bench.p9_signals [--seeds 1,2,3] [--pipeline 101] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from bench.p9_workload import END, Event, Person, Workload, generate
from bot.db import Database, LLMCall, Outcome, Task
from bot.measure import facts
from bot.measure.outcomes import note_followup, parse_kinds, sweep_none
from bot.measure.signals import Flag, Thresholds, detect
from bot.migrate import ensure_schema
from bot.settings import Settings

TUNE_SEEDS = (1, 2, 3, 4, 5)
HELDOUT_SEEDS = (101, 102, 103, 104, 105)
WASTE = {"spend_no_outcome"}
MEANT = {
    "burst": "burst",
    "reworded": "near_duplicate_prompts",
    "resummarize": "repeated_summary",
    "padded": "padded_prompts",
    "clockwork": "machine_cadence",
    "app_loop": "bot_loop",
}
FOLLOWUP = timedelta(minutes=10)  # CLAWBACK_FOLLOWUP_MINUTES' default


# -- populating the ledger ------------------------------------------------------------------------------------


def insert_ledger(db: Database, w: Workload) -> None:
    """Write the rows ingress and the worker write for each event, at its simulated time."""
    rnd = random.Random(w.seed * 7 + 1)
    tasks, calls, outcomes = [], [], []
    for n, e in enumerate(w.events):
        tid = f"p9{w.seed:04d}{n:07d}"
        app = e.bot_id is not None
        lat = rnd.uniform(900, 6000)
        finished = e.at + timedelta(milliseconds=lat)
        tasks.append(
            {
                "id": tid,
                "idempotency_key": f"p9:{w.seed}:{n}",
                "requester": e.person,
                "surface": "mention",
                "intent": "answer",
                "trigger": "bot" if app else "human",
                "channel_id": e.channel,
                "thread_ts": e.thread,
                "message_ts": e.ts,
                "parent_id": None,
                "status": "ignored" if app else "done",
                "payload": {"bot_id": e.bot_id, "app_id": e.app_id}
                if app
                else {"text": e.text, "redacted": {}},
                "result": {},
                "redactions": 0,
                "attempts": 1,
                "created_at": e.at,
                "started_at": e.at,
                "finished_at": finished,
            }
        )
        if app:
            continue
        p, c = 250 + len(e.text) // 4 + (300 if e.root else 0), rnd.randint(80, 400)
        calls.append(
            {
                "task_id": tid,
                "step": "answer",
                "model": "clawback-standin",
                "prompt_name": "answer",
                "prompt_version": "p9",
                "prompt_tokens": p,
                "completion_tokens": c,
                "cached_tokens": 0,
                "total_tokens": p + c,
                "usage_reported": True,
                "cost": (p * 0.4 + c * 1.6) / 1e6,
                "latency_ms": lat,
                "status": "ok",
                "created_at": e.at,
            }
        )
        if e.click:
            outcomes.append(
                {
                    "task_id": tid,
                    "kind": e.click,
                    "source": "explicit",
                    "actor": e.person,
                    "detail": {},
                    "created_at": finished + timedelta(minutes=rnd.uniform(0.5, 30)),
                }
            )
    with db.session() as s:
        for table, rows in ((Task, tasks), (LLMCall, calls), (Outcome, outcomes)):
            for i in range(0, len(rows), 2000):
                s.execute(insert(table), rows[i : i + 2000])
    record_followups(db)


def record_followups(db: Database) -> int:
    """The worker's follow-up rule (``note_followup``) applied to every task at its (simulated) time."""
    with db.session() as s:
        # Only a message inside a thread can follow up (a new message starts its own thread).
        stmt = select(Task).where(Task.trigger == "human", Task.thread_ts != Task.message_ts)
        tasks = list(s.execute(stmt.order_by(Task.created_at)).scalars())
        s.expunge_all()
    return sum(note_followup(db, t, within=FOLLOWUP) is not None for t in tasks)


def run_pipeline(db_env: Any, w: Workload) -> dict[str, Any]:
    """Send every event through the real web app and worker, click, then move each task to its simulated time."""
    from bench.common import SIGNING_SECRET, ServedWeb
    from bot.slack.blocks import FEEDBACK_NOT_HELPFUL, FEEDBACK_RESOLVED
    from bot.standins.slack_events import SlackEventSender
    from workers.runtime import build_deps

    env = db_env
    people = sorted({e.person for e in w.events})
    for who in people:  # the workspace the simulated people live in
        env.slack.add_user(who, who.lower())
        env.slack.add_channel("D" + who[1:], f"dm-{who}", members=[who], is_im=True)
    for channel in sorted({e.channel for e in w.events}):
        env.slack.add_channel(channel, channel.lower(), members=people)
    web = ServedWeb(env)
    sender = SlackEventSender(web.url, SIGNING_SECRET)
    deps = build_deps(env.settings, db=env.db, redis_conn=env.redis)
    from bot.ops.worker import run_worker

    t0 = time.perf_counter()
    keys: dict[str, Event] = {}
    statuses: Counter[int] = Counter()
    try:
        for n, e in enumerate(w.events):
            eid = f"EvP9{w.seed:03d}{n:07d}"
            event: dict[str, Any] = {
                "type": "app_mention",
                "user": e.person,
                "text": f"<@{sender.bot_user_id}> {e.text}",
                "ts": e.ts,
                "channel": e.channel,
                "event_ts": e.ts,
            }
            if e.root:
                event["thread_ts"] = e.thread
            if e.bot_id:
                event |= {"bot_id": e.bot_id, "app_id": e.app_id}
            statuses[sender.send_event(event, event_id=eid).status] += 1
            keys[f"slack:{eid}"] = e
        sent_s = time.perf_counter() - t0
        run_worker(deps, burst=True, fork=False, max_wait=60)
        worked_s = time.perf_counter() - t0 - sent_s
        with env.db.session() as s:
            ids = dict(s.execute(select(Task.idempotency_key, Task.id)).tuples().all())
        clicks = 0
        for key, e in keys.items():
            if e.click and key in ids:
                action = FEEDBACK_RESOLVED if e.click == "resolved" else FEEDBACK_NOT_HELPFUL
                statuses[
                    sender.block_action(e.person, action, ids[key], channel=e.channel, message_ts=e.ts).status
                ] += 1
                clicks += 1
        run_worker(deps, burst=True, fork=False, max_wait=60)
    finally:
        sender.close()
        web.close()

    # Compress time: each task, its LLM calls and its click outcomes move to the simulated time.
    def moved(at: datetime | None, shift: timedelta) -> datetime | None:
        return None if at is None else (at if at.tzinfo else at.replace(tzinfo=UTC)) + shift

    with env.db.session() as s:
        tasks = list(s.execute(select(Task)).scalars())
        calls: dict[str, list[LLMCall]] = defaultdict(list)
        for c in s.execute(select(LLMCall)).scalars():
            calls[c.task_id].append(c)
        outs: dict[str, list[Outcome]] = defaultdict(list)
        for o in s.execute(select(Outcome)).scalars():
            outs[o.task_id].append(o)
        for task in tasks:
            shift = keys[task.idempotency_key].at - moved(task.created_at, timedelta(0))
            task.created_at = moved(task.created_at, shift)
            task.started_at = moved(task.started_at, shift)
            task.finished_at = moved(task.finished_at, shift)
            for row in [*calls[task.id], *outs[task.id]]:
                row.created_at = moved(row.created_at, shift)
        by_status = Counter(task.status for task in tasks)
        n_tasks = len(tasks)
    followups = record_followups(env.db)
    return {
        "events": len(w.events),
        "clicks": clicks,
        "http_statuses": {str(k): v for k, v in sorted(statuses.items())},
        "tasks": n_tasks,
        "task_statuses": dict(by_status),
        "followups_recorded": followups,
        "send_s": round(sent_s, 1),
        "work_s": round(worked_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
    }


# -- scoring --------------------------------------------------------------------------------------------------


def flags_for(db: Database) -> list[Flag]:
    """The signals over the workload's period, as ``clawback report`` computes them."""
    sweep_none(db, window=timedelta(hours=72), now=END)
    facts.refresh(db, parse_kinds(None), full=True)
    settings = Settings(_env_file=None, clawback_reporting_dates="none")
    return detect(db, since=END - timedelta(days=14), until=END, settings=settings)


def score(w: Workload, flags: list[Flag]) -> dict[str, Any]:
    """Person-level precision and recall, per pattern, honest false positives per kind, waste flags."""
    kind_of = {p.id: p for p in w.people}
    gaming_flags: dict[str, set[str]] = defaultdict(set)
    waste: Counter[str] = Counter()
    for f in flags:
        if f.subject not in kind_of:
            continue
        if f.kind in WASTE:
            waste[kind_of[f.subject].kind] += 1
        else:
            gaming_flags[f.subject].add(f.kind)
    tp = sum(1 for p in w.people if p.gaming and gaming_flags.get(p.id))
    fp = sum(1 for p in w.people if not p.gaming and gaming_flags.get(p.id))
    gaming = sum(p.gaming for p in w.people)
    per_pattern: dict[str, dict[str, Any]] = {}
    for p in w.people:
        if p.gaming:
            d = per_pattern.setdefault(p.kind, {"people": 0, "flagged": 0, "by_meant_signal": 0})
            d["people"] += 1
            d["flagged"] += bool(gaming_flags.get(p.id))
            d["by_meant_signal"] += MEANT[p.kind] in gaming_flags.get(p.id, set())
    honest_fp: dict[str, list[str]] = defaultdict(list)
    for p in w.people:
        if not p.gaming and gaming_flags.get(p.id):
            honest_fp[p.kind].extend(sorted(gaming_flags[p.id]))
    return {
        "people": len(w.people),
        "gaming": gaming,
        "flagged": tp + fp,
        "true_positives": tp,
        "false_positives": fp,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / gaming, 4) if gaming else 1.0,
        "per_pattern": per_pattern,
        "honest_false_positives": dict(honest_fp),
        "waste_flags_by_kind": dict(waste),
    }


# What each signal measures per person (its flag's detail) and whether a higher value is more suspicious.
MEASURE = {
    "burst": ("tasks", True),
    "near_duplicate_prompts": ("cluster", True),
    "repeated_summary": ("requests", True),
    "padded_prompts": ("padded", True),
    "machine_cadence": ("robust_cv", False),
    "bot_loop": ("messages", True),
}
PERMISSIVE = Thresholds(
    burst_min_tasks=2,
    dup_min_cluster=2,
    resum_min_tasks=2,
    pad_min_tasks=1,
    pad_min_share=0.0,
    cadence_max_cv=1e9,
    loop_min_messages=1,
)


def margins(db: Database, w: Workload) -> dict[str, Any]:
    """How far from each threshold people were: the honest people's worst value and the gaming ones' mildest.

    The signals run once more with thresholds that let everything through (``PERMISSIVE``); each flag's
    measure is read per person. A wide gap between the two is what makes the results robust.
    """
    t = Thresholds()
    settings = Settings(_env_file=None, clawback_reporting_dates="none")
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for f in detect(db, since=END - timedelta(days=14), until=END, settings=settings, thresholds=PERMISSIVE):
        if f.kind in MEASURE:
            found[f.kind][f.subject] = f.details[MEASURE[f.kind][0]]
    kind_of = {p.id: p for p in w.people}
    meant = {v: k for k, v in MEANT.items()}
    out = {}
    for signal, (key, higher) in MEASURE.items():
        worst = max if higher else min
        honest = [v for who, v in found[signal].items() if who in kind_of and not kind_of[who].gaming]
        gaming = [
            found[signal].get(p.id)
            for p in w.people
            if p.gaming and p.kind == meant[signal] and found[signal].get(p.id) is not None
        ]
        threshold = {
            "burst": t.burst_min_tasks,
            "near_duplicate_prompts": t.dup_min_cluster,
            "repeated_summary": t.resum_min_tasks,
            "padded_prompts": t.pad_min_tasks,
            "machine_cadence": t.cadence_max_cv,
            "bot_loop": t.loop_min_messages,
        }[signal]
        out[signal] = {
            "measure": key,
            "threshold": threshold,
            "honest_worst": worst(honest) if honest else None,
            "gaming_mildest": (min if higher else max)(gaming) if gaming else None,
        }
    return out


def sample_evidence(w: Workload, flags: list[Flag]) -> list[dict[str, Any]]:
    """One flag per signal kind: what an auditor sees."""
    seen: set[str] = set()
    kind_of = {p.id: p.kind for p in w.people}
    out = []
    for f in flags:
        if f.kind in seen:
            continue
        seen.add(f.kind)
        out.append(
            {
                "kind": f.kind,
                "subject": f.subject,
                "subject_really": kind_of.get(f.subject),
                "explanation": f.explanation,
                "evidence": f.evidence[:5],
                "evidence_count": len(f.evidence),
                "details": f.details,
            }
        )
    return out


def _scratch_db() -> tuple[Database, Any]:
    import tempfile
    from pathlib import Path

    home = Path(tempfile.mkdtemp(prefix="clawback-p9-"))
    db = Database(f"sqlite:///{home / 'p9.db'}")
    ensure_schema(db)
    return db, home


def run_seed(seed: int) -> dict[str, Any]:
    """One seed through the ledger path: generate, insert, detect, score."""
    import shutil

    w = generate(seed)
    db, home = _scratch_db()
    try:
        t0 = time.perf_counter()
        insert_ledger(db, w)
        t1 = time.perf_counter()
        flags = flags_for(db)
        t2 = time.perf_counter()
        return {
            "seed": seed,
            "events": len(w.events),
            **score(w, flags),
            "margins": margins(db, w),
            "insert_s": round(t1 - t0, 2),
            "detect_s": round(t2 - t1, 2),
            "sample": sample_evidence(w, flags),
        }
    finally:
        db.dispose()
        shutil.rmtree(home, ignore_errors=True)


def run_pipeline_seed(seed: int, one_per_kind: bool = True) -> dict[str, Any]:
    """One seed through the real web app and worker (see the module documentation)."""
    from bench.common import make_env

    w = generate(seed)
    if one_per_kind:  # one person of each kind, all their events: what fits in a few minutes on two cores
        keep: dict[str, Person] = {}
        for p in w.people:
            keep.setdefault(p.kind, p)
        ids = {p.id for p in keep.values()}
        w = Workload(w.seed, list(keep.values()), [e for e in w.events if e.person in ids])
    env = make_env(clawback_followup_minutes=1e-6)
    try:
        info = run_pipeline(env, w)
        flags = flags_for(env.db)
        return {"seed": seed, **info, **score(w, flags), "sample": sample_evidence(w, flags)}
    finally:
        env.close()


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    prec = [r["precision"] for r in results]
    rec = [r["recall"] for r in results]
    tp = sum(r["true_positives"] for r in results)
    fp = sum(r["false_positives"] for r in results)
    gaming = sum(r["gaming"] for r in results)
    patterns: dict[str, dict[str, int]] = {}
    for r in results:
        for k, d in r["per_pattern"].items():
            acc = patterns.setdefault(k, {"people": 0, "flagged": 0, "by_meant_signal": 0})
            for x in acc:
                acc[x] += d[x]
    return {
        "seeds": [r["seed"] for r in results],
        "precision_pooled": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall_pooled": round(tp / gaming, 4) if gaming else 1.0,
        "precision_min": min(prec),
        "precision_max": max(prec),
        "precision_median": statistics.median(prec),
        "recall_min": min(rec),
        "recall_max": max(rec),
        "recall_median": statistics.median(rec),
        "per_pattern_recall": {k: round(d["flagged"] / d["people"], 4) for k, d in sorted(patterns.items())},
        "per_pattern_recall_by_meant_signal": {
            k: round(d["by_meant_signal"] / d["people"], 4) for k, d in sorted(patterns.items())
        },
        "margins": {
            signal: {
                "measure": results[0]["margins"][signal]["measure"],
                "threshold": results[0]["margins"][signal]["threshold"],
                "honest_worst_per_seed": [r["margins"][signal]["honest_worst"] for r in results],
                "gaming_mildest_per_seed": [r["margins"][signal]["gaming_mildest"] for r in results],
            }
            for signal in MEASURE
        },
        "honest_false_positives": [r["honest_false_positives"] for r in results],
        "waste_flags_by_kind": [r["waste_flags_by_kind"] for r in results],
    }


def run(
    tune: tuple[int, ...] = TUNE_SEEDS, heldout: tuple[int, ...] = HELDOUT_SEEDS, pipeline: int | None = 101
) -> dict[str, Any]:
    """Every seed through the ledger path, one held-out seed through the real pipeline; the figures."""
    tuned = [run_seed(s) for s in tune]
    held = [run_seed(s) for s in heldout]
    out: dict[str, Any] = {
        "people_per_seed": tuned[0]["people"] if tuned else held[0]["people"],
        "gaming_per_seed": tuned[0]["gaming"] if tuned else held[0]["gaming"],
        "tuning_seeds": _summary(tuned) if tuned else None,
        "heldout_seeds": _summary(held) if held else None,
        "per_seed": [{k: v for k, v in r.items() if k not in ("sample", "margins")} for r in tuned + held],
        "evidence_sample": (held or tuned)[0]["sample"],
    }
    if pipeline is not None:
        p = run_pipeline_seed(pipeline)
        out["pipeline"] = {k: v for k, v in p.items() if k != "sample"}
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: print the figures, optionally write them."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", help="comma-separated seeds (ledger path only), instead of 1–5 and 101–105")
    ap.add_argument("--pipeline", type=int, default=None, help="also run this seed through the real pipeline")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    if args.seeds:
        seeds = tuple(int(x) for x in args.seeds.split(","))
        result = run(tune=seeds, heldout=(), pipeline=args.pipeline)
    else:
        result = run(pipeline=args.pipeline if args.pipeline is not None else 101)
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
