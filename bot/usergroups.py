"""Slack usergroup memberships for the policy's ``[usergroups."S…"]`` roles.

The workers' housekeeping reads ``usergroups.users.list`` for each usergroup the policy names and keeps the
members in Redis; every process's policy store reads that cache (at most every couple of seconds), so the
ack path never calls Slack. If Slack or Redis is unavailable the last known memberships stay in force.
"""

from __future__ import annotations

import json
import logging

import redis
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

TTL = 86400


def cache_key(prefix: str) -> str:
    """The Redis hash holding usergroup id → JSON list of member ids."""
    return f"{prefix}:usergroups"


def read_members(conn: redis.Redis, prefix: str) -> dict[str, frozenset[str]]:
    """Memberships from the cache."""
    raw = conn.hgetall(cache_key(prefix))
    return {k.decode(): frozenset(json.loads(v)) for k, v in raw.items()}


def sync(client: WebClient, conn: redis.Redis, prefix: str, group_ids: list[str]) -> int:
    """Refresh the cache from Slack for ``group_ids``; returns how many groups were refreshed."""
    done = 0
    for gid in group_ids:
        try:
            users = client.usergroups_users_list(usergroup=gid).get("users", [])
        except SlackApiError as exc:
            log.warning(
                "usergroup %s: not refreshed (%s); keeping the last known members",
                gid,
                exc.response.get("error"),
            )
            continue
        conn.hset(cache_key(prefix), gid, json.dumps(sorted(u for u in users if isinstance(u, str))))
        done += 1
    conn.expire(cache_key(prefix), TTL)
    return done
