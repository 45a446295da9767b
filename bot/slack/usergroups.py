"""Slack usergroup memberships for the policy's ``[usergroups."S…"]`` roles.

The workers' housekeeping reads ``usergroups.users.list`` for each usergroup the policy names and keeps the
members in Redis; every process's policy store reads that cache (at most every couple of seconds), so the
ack path never calls Slack. Each group's entry carries the time Slack last answered for it:

- Slack answered: the members are stored with that time.
- Slack said the group does not exist (``no_such_subteam``): the group is stored empty at once, so a usergroup
  deleted in Slack stops granting its roles at the next sync.
- Slack or Redis unavailable (any other error): the last known members stay in force, but only until they are
  ``TTL`` old: a failed sync never renews an entry, and readers ignore entries older than that.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import redis
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

TTL = 86400
# Slack errors that say the group itself is gone; anything else (rate limits, auth, outages) is transient.
DEFINITIVE_ERRORS = frozenset({"no_such_subteam"})


def cache_key(prefix: str) -> str:
    """The Redis hash holding usergroup id → JSON ``{"users": [...], "synced_at": epoch seconds}``."""
    return f"{prefix}:usergroups"


def read_members(
    conn: redis.Redis, prefix: str, *, clock: Callable[[], float] = time.time
) -> dict[str, frozenset[str]]:
    """Memberships from the cache; entries not refreshed within ``TTL`` (or in an older format) grant nothing."""
    now = clock()
    members: dict[str, frozenset[str]] = {}
    for key, raw in conn.hgetall(cache_key(prefix)).items():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict) or now - float(entry.get("synced_at") or 0) > TTL:
            continue  # stale: never silently renewed
        members[key.decode()] = frozenset(u for u in entry.get("users") or [] if isinstance(u, str))
    return members


def _store(conn: redis.Redis, prefix: str, gid: str, users: list[str], now: float) -> None:
    conn.hset(cache_key(prefix), gid, json.dumps({"users": sorted(users), "synced_at": now}))


def sync(
    client: WebClient,
    conn: redis.Redis,
    prefix: str,
    group_ids: list[str],
    *,
    clock: Callable[[], float] = time.time,
) -> int:
    """Refresh the cache from Slack for ``group_ids``; returns how many groups Slack answered for."""
    done = 0
    for gid in group_ids:
        try:
            users = client.usergroups_users_list(usergroup=gid).get("users", [])
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error in DEFINITIVE_ERRORS:
                log.warning(
                    "usergroup %s: Slack says %s; it grants no roles until it exists again", gid, error
                )
                _store(conn, prefix, gid, [], clock())
                done += 1
                continue
            log.warning(
                "usergroup %s: not refreshed (%s); keeping the last known members until they are %d s old",
                gid,
                error,
                TTL,
            )
            continue
        _store(conn, prefix, gid, [u for u in users if isinstance(u, str)], clock())
        done += 1
    return done
