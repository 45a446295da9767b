"""The ``[services]`` section of the policy file: services, their environments, approvals and freezes.

::

    [services.api]
    repo = "acme/api"                 # GitHub repository (plans compare commits there)
    workflow = "deploy.yml"           # workflow run by workflow_dispatch (executor = "github")
    environments = ["staging", "prod"]
    branch = "main"                   # dispatch ref when a plan names a bare sha (default "main")
    baseline = "v1.0"                 # optional: assumed deployed where neither Clawback nor GitHub knows
    executor = "github"               # or "webhook" (+ webhook_url, webhook_secret_env)

    [services.api.prod]
    approvals = 1                     # approvers besides the requester (0..5)
    baseline = "v0.9"                 # optional: this environment's own baseline (else the service's)
    freeze = ["Fri 16:00-Mon 08:00 UTC"]

Freeze windows come in three shapes, each with an optional IANA time zone (default UTC):
weekly ``Fri 16:00-Mon 08:00 Europe/Berlin``, daily ``22:00-06:00 UTC`` and dated
``2026-12-23 00:00-2027-01-02 08:00 UTC`` (a date without a time ends at the end of that day).
Windows are evaluated on the wall clock of their zone; the start is inclusive, the end exclusive.
Everything here is pure: parsing raises ``PolicyError`` and evaluation takes the moment as an argument.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import PolicyError

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")  # service and environment names (env names end scopes)
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_WORKFLOW = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_ENV_VAR = re.compile(r"[A-Z][A-Z0-9_]{2,63}")
_BRANCH = re.compile(r"[A-Za-z0-9._/-]{1,200}")
_SERVICE_KEYS = {
    "repo",
    "workflow",
    "environments",
    "branch",
    "baseline",
    "executor",
    "webhook_url",
    "webhook_secret_env",
    "description",
}
_ENV_KEYS = {"approvals", "freeze", "baseline", "description"}
MAX_APPROVALS = 5
EXECUTORS = ("github", "webhook")

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = r"(mon|tue|wed|thu|fri|sat|sun)[a-z]*"
_TIME = r"(\d{1,2}):(\d{2})"
_TZ = r"(?:\s+([A-Za-z][A-Za-z0-9_+/-]*))?"
_WEEKLY = re.compile(rf"{_DAY}\s+{_TIME}\s*-\s*{_DAY}\s+{_TIME}{_TZ}", re.IGNORECASE)
_DAILY = re.compile(rf"{_TIME}\s*-\s*{_TIME}{_TZ}")
_DATE = r"(\d{4}-\d{2}-\d{2})(?:[ T]" + _TIME + r")?"
_DATED = re.compile(rf"{_DATE}\s*-\s*{_DATE}{_TZ}")
_WEEK, _DAY_S = 7 * 86400, 86400


@dataclass(frozen=True)
class FreezeWindow:
    """One change-freeze window; ``start``/``end`` are seconds into the week or day, or epoch seconds."""

    text: str
    kind: str  # weekly | daily | dated
    start: float
    end: float
    tz: str = "UTC"

    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def _offset(self, moment: datetime) -> float:
        """Where ``moment`` falls on this window's wall-clock cycle (seconds)."""
        local = moment.astimezone(self._zone())
        of_day = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return local.weekday() * _DAY_S + of_day if self.kind == "weekly" else of_day

    def contains(self, moment: datetime) -> bool:
        """True when ``moment`` (timezone-aware) is inside the window."""
        if self.kind == "dated":
            return self.start <= moment.timestamp() < self.end
        at = self._offset(moment)
        if self.start < self.end:
            return self.start <= at < self.end
        return at >= self.start or at < self.end  # wraps over the week's or the day's end

    def ends_at(self, moment: datetime) -> datetime:
        """When the window containing ``moment`` ends (UTC; wall-clock arithmetic in the window's zone)."""
        if self.kind == "dated":
            return datetime.fromtimestamp(self.end, UTC)
        cycle = _WEEK if self.kind == "weekly" else _DAY_S
        local = moment.astimezone(self._zone())
        wall = local.replace(tzinfo=None) + timedelta(seconds=(self.end - self._offset(moment)) % cycle)
        return wall.replace(tzinfo=self._zone()).astimezone(UTC)


@dataclass(frozen=True)
class EnvironmentConfig:
    """One environment of a service."""

    name: str
    approvals: int = 0
    freeze: tuple[FreezeWindow, ...] = ()
    baseline: str | None = None


@dataclass(frozen=True)
class ServiceConfig:
    """A deployable service as the policy describes it."""

    name: str
    repo: str
    workflow: str
    environments: dict[str, EnvironmentConfig] = field(default_factory=dict)
    branch: str = "main"
    baseline: str | None = None
    executor: str = "github"
    webhook_url: str | None = None
    webhook_secret_env: str | None = None

    def env(self, name: str) -> EnvironmentConfig | None:
        """The environment called ``name``, or None."""
        return self.environments.get(name)

    @property
    def default_env(self) -> str:
        """The first listed environment (used when a command names none)."""
        return next(iter(self.environments))


def _zone(name: str | None, text: str) -> str:
    tz = name or "UTC"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(f"freeze window {text!r}: unknown time zone {tz!r}", path=text) from None
    return tz


def _clock(hours: str, minutes: str, text: str) -> int:
    h, m = int(hours), int(minutes)
    if h > 24 or m > 59 or (h == 24 and m):
        raise PolicyError(f"freeze window {text!r}: bad time {hours}:{minutes}", path=text)
    return h * 3600 + m * 60


def parse_freeze(text: str) -> FreezeWindow:
    """Parse one freeze window (weekly, daily or dated); PolicyError naming the text when malformed."""
    if not isinstance(text, str):
        raise PolicyError('freeze windows must be strings like "Fri 16:00-Mon 08:00 UTC"', path="freeze")
    spec = " ".join(text.split())
    if m := _WEEKLY.fullmatch(spec):
        d1, h1, m1, d2, h2, m2, tz = m.groups()
        start = _DAYS.index(d1[:3].lower()) * _DAY_S + _clock(h1, m1, text)
        end = _DAYS.index(d2[:3].lower()) * _DAY_S + _clock(h2, m2, text)
        kind = "weekly"
    elif m := _DAILY.fullmatch(spec):
        h1, m1, h2, m2, tz = m.groups()
        start, end, kind = _clock(h1, m1, text), _clock(h2, m2, text), "daily"
    elif m := _DATED.fullmatch(spec):
        day1, h1, m1, day2, h2, m2, tz = m.groups()
        zone = ZoneInfo(_zone(tz, text))
        try:
            first = datetime.strptime(day1, "%Y-%m-%d").replace(tzinfo=zone)
            last = datetime.strptime(day2, "%Y-%m-%d").replace(tzinfo=zone)
        except ValueError:
            raise PolicyError(f"freeze window {text!r}: bad date", path=text) from None
        first += timedelta(seconds=_clock(h1, m1, text)) if h1 else timedelta(0)
        last += timedelta(seconds=_clock(h2, m2, text)) if h2 else timedelta(days=1)
        if last <= first:
            raise PolicyError(f"freeze window {text!r}: ends before it starts", path=text)
        return FreezeWindow(text, "dated", first.timestamp(), last.timestamp(), _zone(tz, text))
    else:
        raise PolicyError(
            f'freeze window {text!r}: expected e.g. "Fri 16:00-Mon 08:00 UTC", "22:00-06:00 UTC" '
            'or "2026-12-23-2027-01-02 UTC"',
            path=text,
        )
    if start == end:
        raise PolicyError(f"freeze window {text!r}: starts and ends at the same time", path=text)
    return FreezeWindow(text, kind, start, end, _zone(tz, text))


def active_freeze(
    windows: tuple[FreezeWindow, ...] | list[FreezeWindow], moment: datetime
) -> FreezeWindow | None:
    """The first window containing ``moment``, or None: the pure freeze check."""
    return next((w for w in windows if w.contains(moment)), None)


def _str(table: dict[str, Any], key: str, where: str, pattern: re.Pattern[str] | None = None) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise PolicyError(f"{where}: {key} = {value!r} is not valid", path=key)
    return value


def _environment(service: str, name: str, table: Any) -> EnvironmentConfig:
    where = f"services.{service}.{name}"
    if not isinstance(table, dict):
        raise PolicyError(f"{where} must be a table", path=where)
    unknown = sorted(set(table) - _ENV_KEYS)
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r} (known: approvals, freeze, baseline)", path=unknown[0])
    approvals = table.get("approvals", 0)
    if isinstance(approvals, bool) or not isinstance(approvals, int) or not 0 <= approvals <= MAX_APPROVALS:
        raise PolicyError(
            f"{where}: approvals must be an integer from 0 to {MAX_APPROVALS}", path="approvals"
        )
    freeze = table.get("freeze", [])
    if not isinstance(freeze, list):
        raise PolicyError(f"{where}: freeze must be a list of windows", path="freeze")
    baseline = _str(table, "baseline", where, _BRANCH)
    return EnvironmentConfig(name, approvals, tuple(parse_freeze(w) for w in freeze), baseline)


def _service(name: str, table: Any) -> ServiceConfig:
    where = f"services.{name}"
    if not NAME.fullmatch(name):
        raise PolicyError(f"{where}: service names are lower-case letters, digits, - and _", path=where)
    if not isinstance(table, dict):
        raise PolicyError(f"{where} must be a table", path=where)
    envs = table.get("environments")
    if not isinstance(envs, list) or not envs or not all(isinstance(e, str) for e in envs):
        raise PolicyError(f"{where}: environments must be a non-empty list of names", path="environments")
    for env in envs:
        if not NAME.fullmatch(env):
            raise PolicyError(f"{where}: environment {env!r} is not a valid name", path=f'"{env}"')
    if len(set(envs)) != len(envs):
        raise PolicyError(f"{where}: environments are listed twice", path="environments")
    subtables = {k: v for k, v in table.items() if isinstance(v, dict)}
    unknown = sorted(set(table) - _SERVICE_KEYS - set(subtables))
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}", path=unknown[0])
    for key in subtables:
        if key not in envs:
            raise PolicyError(f"{where}.{key}: {key!r} is not in environments", path=f"{where}.{key}")
    repo = _str(table, "repo", where, _REPO)
    workflow = _str(table, "workflow", where, _WORKFLOW)
    if not repo:
        raise PolicyError(f'{where}: repo = "owner/name" is required', path=where)
    executor = table.get("executor", "github")
    if executor not in EXECUTORS:
        raise PolicyError(f"{where}: executor must be one of {', '.join(EXECUTORS)}", path="executor")
    url = _str(table, "webhook_url", where)
    secret_env = _str(table, "webhook_secret_env", where, _ENV_VAR)
    if executor == "github" and not workflow:
        raise PolicyError(f"{where}: workflow is required for the github executor", path=where)
    if executor == "webhook":
        if not url or not re.match(r"https?://[^/\s]+", url):
            raise PolicyError(f"{where}: webhook_url (http or https) is required", path="webhook_url")
        if not secret_env:
            raise PolicyError(
                f"{where}: webhook_secret_env (the name of the variable holding the secret) is required",
                path=where,
            )
    environments = {e: _environment(name, e, subtables.get(e, {})) for e in envs}
    return ServiceConfig(
        name=name,
        repo=repo,
        workflow=workflow or "",
        environments=environments,
        branch=_str(table, "branch", where, _BRANCH) or "main",
        baseline=_str(table, "baseline", where, _BRANCH),
        executor=executor,
        webhook_url=url,
        webhook_secret_env=secret_env,
    )


def parse_services(table: Any) -> dict[str, ServiceConfig]:
    """Parse the raw ``[services]`` table; PolicyError(reason, path=needle) when malformed."""
    if not isinstance(table, dict):
        raise PolicyError("[services] must be a table of services", path="services")
    return {name: _service(name, spec) for name, spec in table.items()}


def validate_section(table: Any) -> None:
    """Validate ``[services]`` for ``parse_policy`` and ``clawback policy check``."""
    parse_services(table)


def services_of(policy: Any) -> dict[str, ServiceConfig]:
    """The services of a parsed ``Policy`` (already validated when it was loaded)."""
    return parse_services(policy.section("services"))
