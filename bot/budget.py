"""Budgets: tokens per UTC day and requests per minute, per user, held in Redis.

A job *reserves* its worst case (conservatively estimated prompt + max completion tokens) before the model
call and *settles* the real usage after, in one atomic Lua step each. A reservation is refused when what
was used, what others hold reserved and this call's worst case together exceed the limit, so concurrent
jobs cannot spend past the limit as long as each call's real usage stays within its reservation.
Reservations expire, so a killed worker does not leak budget. If Redis lost the day's counter, it is
rebuilt from the ledger (SQL stays the truth).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from bot import messages
from bot.errors import BudgetExceeded, RateLimited
from bot.policy import Limits

# KEYS: day hash, reservations zset, rpm key. ARGV: limit, amount, res id, now, res ttl, rpm limit, ledger used
# (-1: not read yet; the script answers {-3, 0} when the day's counter is missing and needs it)
_RESERVE = """
local day, resv, rpm = KEYS[1], KEYS[2], KEYS[3]
local limit, amount, rid, now = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local ttl, rpm_limit = tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('EXISTS', day) == 0 then
  if tonumber(ARGV[7]) < 0 then return {-3, 0} end
  redis.call('HSET', day, 'used', ARGV[7])
  redis.call('EXPIRE', day, 172800)
end
-- drop expired reservations (their jobs died) and give their tokens back
local expired = redis.call('ZRANGEBYSCORE', resv, '-inf', now)
for _, r in ipairs(expired) do
  local amt = tonumber(redis.call('HGET', day, 'r:' .. r) or '0')
  redis.call('HDEL', day, 'r:' .. r)
  redis.call('HINCRBY', day, 'reserved', -amt)
end
redis.call('ZREMRANGEBYSCORE', resv, '-inf', now)
if rpm_limit > 0 then
  local n = tonumber(redis.call('GET', rpm) or '0')
  if n >= rpm_limit then return {-2, n} end
end
local used = tonumber(redis.call('HGET', day, 'used') or '0')
local reserved = tonumber(redis.call('HGET', day, 'reserved') or '0')
if limit >= 0 and used + reserved + amount > limit then return {-1, used + reserved} end
if rpm_limit > 0 then
  redis.call('INCR', rpm)
  redis.call('EXPIRE', rpm, 120)
end
redis.call('HINCRBY', day, 'reserved', amount)
redis.call('HSET', day, 'r:' .. rid, amount)
redis.call('ZADD', resv, now + ttl, rid)
redis.call('EXPIRE', resv, 172800)
return {1, used + reserved + amount}
"""

# KEYS: day hash, reservations zset. ARGV: res id, actual tokens
_SETTLE = """
local day, resv, rid, actual = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local amt = redis.call('HGET', day, 'r:' .. rid)
if amt then
  redis.call('HDEL', day, 'r:' .. rid)
  redis.call('HINCRBY', day, 'reserved', -tonumber(amt))
  redis.call('ZREM', resv, rid)
end
redis.call('HINCRBY', day, 'used', actual)
return redis.call('HGET', day, 'used')
"""


# KEYS: rpm key, told key. ARGV: rpm limit, told ttl. Counts one request, or says whether to tell the person.
_TAKE_REQUEST = """
local rpm, told = KEYS[1], KEYS[2]
local n = tonumber(redis.call('GET', rpm) or '0')
if n < tonumber(ARGV[1]) then
  redis.call('INCR', rpm)
  redis.call('EXPIRE', rpm, 120)
  return {1, n + 1}
end
if redis.call('SET', told, '1', 'NX', 'EX', tonumber(ARGV[2])) then return {-2, 1} end
return {-2, 0}
"""


@dataclass(frozen=True)
class Reservation:
    """A hold on part of a user's daily budget."""

    user: str
    day: str
    id: str
    amount: int


def _next_midnight(now: datetime) -> datetime:
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


class Budget:
    """Token and request-rate budgets per user."""

    def __init__(
        self,
        connection: redis.Redis,
        *,
        prefix: str = "clawback",
        ledger_tokens: Callable[[str, datetime], int] | None = None,
        reservation_ttl: int = 900,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.r = connection
        self.prefix = prefix
        self.ledger_tokens = ledger_tokens
        self.ttl = reservation_ttl
        self.clock = clock
        self._reserve = connection.register_script(_RESERVE)
        self._settle = connection.register_script(_SETTLE)
        self._take_request = connection.register_script(_TAKE_REQUEST)

    def _keys(self, user: str, day: str) -> tuple[str, str]:
        return f"{self.prefix}:budget:{user}:{day}", f"{self.prefix}:budget:{user}:{day}:resv"

    def reserve(self, user: str, amount: int, limits: Limits) -> Reservation:
        """Reserve ``amount`` tokens, or raise BudgetExceeded (with when it resets) / rate limit."""
        now = self.clock()
        if limits.daily_tokens <= 0:
            raise BudgetExceeded(messages.NO_BUDGET, reason="no token budget in the policy")
        day = now.strftime("%Y%m%d")
        day_key, resv_key = self._keys(user, day)
        rpm_key = f"{self.prefix}:rpm:{user}:{int(now.timestamp() // 60)}"
        rid = secrets.token_hex(6)
        limit = limits.daily_tokens  # > 0 here: no budget was refused above
        args = [limit, amount, rid, now.timestamp(), self.ttl, limits.requests_per_minute]
        keys = [day_key, resv_key, rpm_key]
        # One round trip when the day's counter exists; when Redis lost it, the ledger's sum rebuilds it.
        status, value = self._reserve(keys=keys, args=[*args, -1 if self.ledger_tokens is not None else 0])
        if status == -3 and self.ledger_tokens is not None:
            used = self.ledger_tokens(user, now.replace(hour=0, minute=0, second=0, microsecond=0))
            status, value = self._reserve(keys=keys, args=[*args, used])
        if status == -2:
            raise BudgetExceeded(messages.rate_limited(60 - int(now.timestamp()) % 60), reason="rate limited")
        if status == -1:
            left = max(0, limit - int(value))
            if left > 0 and amount > 0:  # some budget is left, but not this call's worst case
                raise BudgetExceeded(
                    messages.budget_too_small(amount, left, _next_midnight(now)),
                    reason="daily token budget too small for this request",
                )
            raise BudgetExceeded(
                messages.over_budget(_next_midnight(now)), reason="daily token budget used up"
            )
        return Reservation(user, day, rid, amount)

    def take_request(self, user: str, limits: Limits) -> None:
        """Count one request against the per-minute rate before any Slack read, or raise RateLimited.

        The window is the calendar minute, shared with ``reserve``'s count. Only the first refusal in a window
        has ``notify`` set, so a burst of requests gets one "slow down" notice, not one per request.
        """
        if limits.requests_per_minute <= 0:
            return  # 0 = no rate limit
        now = self.clock()
        window = int(now.timestamp() // 60)
        status, first = self._take_request(
            keys=[f"{self.prefix}:rpm:{user}:{window}", f"{self.prefix}:rpm-told:{user}:{window}"],
            args=[limits.requests_per_minute, 120],
        )
        if status == -2:
            raise RateLimited(
                messages.rate_limited(60 - int(now.timestamp()) % 60),
                reason="rate limited" if first else "rate limited (already told in this minute)",
                notify=bool(first),
            )

    def settle(self, reservation: Reservation, actual_tokens: int) -> int:
        """Replace a reservation by the real usage; returns tokens used today."""
        day_key, resv_key = self._keys(reservation.user, reservation.day)
        return int(self._settle(keys=[day_key, resv_key], args=[reservation.id, int(actual_tokens)]))

    def used_today(self, user: str) -> tuple[int, int]:
        """(used, reserved) tokens for the user today."""
        day_key, _ = self._keys(user, self.clock().strftime("%Y%m%d"))
        used, reserved = self.r.hmget(day_key, "used", "reserved")
        return int(used or 0), int(reserved or 0)
