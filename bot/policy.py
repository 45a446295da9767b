"""Policy: who may do what, where, and how much. Loaded from TOML (``CLAWBACK_POLICY``).

The model never decides any of this: every check here runs in code, at ingress, in the worker and in
every actuator. With no policy file, ``DEFAULT_POLICY`` applies (answers and own usage; nothing else).
"""

from __future__ import annotations

import hashlib
import importlib
import re
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import messages
from bot.errors import Denied, PolicyError
from bot.mail.config import CATEGORIES

if TYPE_CHECKING:
    import redis

    from bot.db import Database
    from bot.settings import Settings

SCOPES: dict[str, str] = {
    "chat.reply": "answer mentions and DMs in Slack (post in the thread or DM where asked)",
    "chat.read_thread": "read the thread a question was asked in, as context",
    "chat.read_channel": "read recent channel history as context",
    "mail.read": "read the owner's mailbox for triage",
    "mail.categorize": "set Exchange categories on triaged mail",
    "mail.move": "move triaged mail to configured folders",
    "mail.draft": "save reply drafts (never sent by the agent)",
    "mail.send": "send a saved draft when the owner clicks Send in Slack",
    "deploy.plan": "ask for a risk summary of a change set",
    "deploy.request": "request a deploy of a planned change",
    "deploy.approve.<env>": "approve someone else's deploy request to <env>",
    "usage.self": "see one's own usage and outcomes",
    "usage.team": "see team aggregates (k-anonymous)",
    "audit.read": "read the audit log and waste/gaming flags with evidence",
    "admin": "pause/resume the agent, manage policy",
}
_ENV_SCOPE = re.compile(r"deploy\.approve\.[a-z0-9][a-z0-9_-]*")
_TEAM_ID = re.compile(r"T[A-Z0-9]{2,}")
OTHER_TEAM_REASON = "no roles for users of team"
# Usergroup memberships last read from the cache grant roles for at most this long while the cache is
# unreachable (the cache itself drops entries Slack has not confirmed within a day: bot/slack/usergroups.py).
MEMBERS_MAX_AGE = 24 * 3600.0

DEFAULT_POLICY = """
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "chat.read_thread", "usage.self"]
daily_tokens = 200000
requests_per_minute = 20
"""


def is_known_scope(scope: str) -> bool:
    """True for catalog scopes and ``deploy.approve.<env>``."""
    return scope in SCOPES and scope != "deploy.approve.<env>" or bool(_ENV_SCOPE.fullmatch(scope))


@dataclass(frozen=True)
class Limits:
    """Budget limits for one user (the most generous of their roles)."""

    daily_tokens: int
    requests_per_minute: int


@dataclass(frozen=True)
class Role:
    """A named set of scopes with budgets."""

    name: str
    scopes: frozenset[str]
    daily_tokens: int = 0
    requests_per_minute: int = 0


@dataclass(frozen=True)
class ChannelRule:
    """What the bot may do in one channel: ``allow`` scopes (``*`` = all), or nothing when disabled."""

    allow: frozenset[str]

    def permits(self, scope: str) -> bool:
        """True if ``scope`` may be used in this channel."""
        return "*" in self.allow or scope in self.allow


# -- earned autonomy (the rules; the level in force and the bookkeeping live in bot/autonomy.py) -------------
LEVELS = ("shadow", "suggest", "auto")  # ordered: each acts on more than the one before
GOVERNED_ACTIONS = ("mail.categorize", "mail.move", "mail.draft", "chat.reply.channel")
MAIL_ACTIONS = frozenset({"mail.categorize", "mail.move", "mail.draft"})  # these may have per-category rules
RULE_KEYS = ("start", "max", "promote_after", "promote_min_acceptance", "window", "demote_after")
NEVER_AUTONOMOUS = "deploys are never autonomous: every deploy keeps its human clicks"


@dataclass(frozen=True)
class AutonomyRule:
    """How one governed action (or one mail category of it) earns and loses autonomy."""

    start: str = "suggest"  # where everyone starts
    max: str = "auto"  # the most a person can earn (an admin cap)
    promote_after: int = 20  # judged decisions at the current level before promotion is considered
    promote_min_acceptance: float = 0.9  # accepted / judged over the last promote_after
    window: int = 10  # the last N judged decisions at auto ...
    demote_after: int = 2  # ... with this many rejections demote to suggest at once


@dataclass(frozen=True)
class AutonomyPolicy:
    """The ``[autonomy]`` section: the default level and the rules per action and per (action, category).

    Absent section: ``default`` is ``auto`` and no action is governed (today's behaviour).
    """

    default: str = "auto"
    actions: dict[str, AutonomyRule] = field(default_factory=dict)
    categories: dict[tuple[str, str], AutonomyRule] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        """True when at least one action is governed."""
        return bool(self.actions)

    def rule(self, action: str, category: str | None = None) -> AutonomyRule | None:
        """The rule of ``action`` (the category's override first); None when the action is not governed."""
        if category and (action, category) in self.categories:
            return self.categories[(action, category)]
        return self.actions.get(action)


@dataclass(frozen=True)
class RedactionPattern:
    """A site-specific secret shape from the policy file."""

    name: str
    regex: str


@dataclass
class Policy:
    """A parsed, validated policy."""

    roles: dict[str, Role]
    default_roles: tuple[str, ...]
    users: dict[str, tuple[str, ...]]
    groups: dict[str, tuple[tuple[str, ...], frozenset[str]]]  # name -> (roles, members)
    channels: dict[str, ChannelRule]
    redaction: tuple[RedactionPattern, ...]
    raw: dict[str, Any]
    digest: str
    source: str = "built-in default"
    k_anonymity: int = 5
    usergroups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # Slack usergroup id -> roles
    usergroup_members: dict[str, frozenset[str]] = field(default_factory=dict)  # synced from Slack
    teams: dict[str, tuple[str, ...]] = field(default_factory=dict)  # other organisations' team id -> roles
    home_teams: frozenset[str] = frozenset()  # teams besides the bot token's own treated as ours
    autonomy: AutonomyPolicy = field(default_factory=AutonomyPolicy)
    # User id -> their team, for users of other teams only: bound by the PolicyStore from verified payloads
    # and task rows (a Slack user id belongs to one team), shared by every policy the store hands out.
    outside_users: dict[str, str] = field(default_factory=dict, repr=False)
    _cache: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    def with_usergroup_members(self, members: dict[str, frozenset[str]]) -> Policy:
        """The same policy with Slack usergroup memberships bound (a fresh scope cache)."""
        return replace(self, usergroup_members=dict(members), _cache={})

    # -- queries -------------------------------------------------------------------------------------
    def is_home(self, team: str | None, home_teams: tuple[str, ...] | frozenset[str] = ()) -> bool:
        """True if a user of ``team`` is one of ours: no team known (email, CLI), the bot token's team
        (``home_teams``, as learned from Slack) or a team the policy marks ``home = true``."""
        return team is None or team in home_teams or team in self.home_teams

    def roles_of(self, user: str) -> tuple[str, ...]:
        """Roles of a Slack user id: listed users replace the defaults; groups add to them.

        A user of another organisation (Slack Connect) holds exactly the roles the policy gives their team
        (``[teams.T…] roles``), none otherwise: defaults, user entries and groups are for our own people.
        """
        team = self.outside_users.get(user)
        if team is not None and team not in self.home_teams:
            return self.teams.get(team, ())
        roles = list(self.users.get(user, self.default_roles))
        for group_roles, members in self.groups.values():
            if user in members:
                roles.extend(r for r in group_roles if r not in roles)
        for group_id, group_roles in self.usergroups.items():
            if user in self.usergroup_members.get(group_id, ()):
                roles.extend(r for r in group_roles if r not in roles)
        return tuple(roles)

    def scopes_for(self, user: str) -> frozenset[str]:
        """Every scope the user holds."""
        cached = self._cache.get(user)
        if cached is None:
            cached = (
                frozenset().union(*(self.roles[r].scopes for r in self.roles_of(user)))
                if user
                else frozenset()
            )
            self._cache[user] = cached
        return cached

    def has_scope(self, user: str, scope: str) -> bool:
        """True if the user holds ``scope``."""
        return scope in self.scopes_for(user)

    def limits_for(self, user: str) -> Limits:
        """The most generous budget of the user's roles (0 = none)."""
        roles = [self.roles[r] for r in self.roles_of(user)]
        return Limits(
            daily_tokens=max((r.daily_tokens for r in roles), default=0),
            requests_per_minute=max((r.requests_per_minute for r in roles), default=0),
        )

    def channel_permits(self, channel: str | None, scope: str) -> bool:
        """True if ``scope`` may be used in ``channel`` (DMs and unlisted channels follow ``*``)."""
        if not channel or not self.channels:
            return True
        rule = self.channels.get(channel) or self.channels.get("*")
        return rule.permits(scope) if rule else True

    def scopes_in(self, user: str, channel: str | None) -> frozenset[str]:
        """The scopes the user may use in ``channel``: their scopes intersected with the channel's rule.

        ``channel`` None (DMs, email) applies no channel rule, as ``channel_permits`` does.
        """
        return frozenset(s for s in self.scopes_for(user) if self.channel_permits(channel, s))

    def require(self, user: str, scope: str, *, channel: str | None = None) -> None:
        """Raise Denied unless the user holds ``scope`` and the channel allows it."""
        if not self.has_scope(user, scope):
            team = self.outside_users.get(user)
            if team is not None and team not in self.home_teams and not self.teams.get(team):
                raise Denied(messages.OTHER_TEAM, reason=f"{OTHER_TEAM_REASON} {team}", scope=scope)
            raise Denied(messages.missing_scope(scope), reason=f"missing scope {scope}", scope=scope)
        if not self.channel_permits(channel, scope):
            raise Denied(
                messages.CHANNEL_NOT_ALLOWED, reason=f"{scope} not allowed in channel {channel}", scope=scope
            )

    def holders_of(self, scope: str) -> list[str]:
        """Users explicitly listed (or in groups) that hold ``scope``: for approver lists."""
        people = set(self.users)
        for _roles, members in self.groups.values():
            people |= members
        return sorted(u for u in people if self.has_scope(u, scope))

    def section(self, name: str) -> dict[str, Any]:
        """A raw top-level table (mailboxes, services, ...) for the module that owns it to validate."""
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}


# -- parsing -------------------------------------------------------------------------------------------
# Sections owned by a surface: its module's validate_section(table) raises PolicyError(reason, path=needle)
# where ``path`` is a text to search for to find the line (e.g. the mailbox address or key).
_SECTION_VALIDATORS = {"mailboxes": "bot.mail.config", "services": "bot.deploy.config"}
_KNOWN_TOP = {
    "defaults",
    "usergroups",
    "roles",
    "users",
    "groups",
    "channels",
    "redaction",
    "privacy",
    "mailboxes",
    "services",
    "teams",
    "autonomy",
}


def _line_of(text: str, *needles: str) -> int | None:
    """1-based line of the first line containing every needle, searching after the previous needle."""
    lines = text.splitlines()
    start = 0
    for i, needle in enumerate(needles):
        for n in range(start, len(lines)):
            if needle in lines[n]:
                if i == len(needles) - 1:
                    return n + 1
                start = n
                break
        else:
            return None
    return None


def parse_policy(text: str, *, source: str = "policy") -> Policy:
    """Parse and validate policy TOML, raising PolicyError with the line and the reason."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise PolicyError(
            f"not valid TOML: {exc}", path=source, line=int(m.group(1)) if m else None
        ) from None

    def fail(reason: str, *needles: str) -> PolicyError:
        return PolicyError(reason, path=source, line=_line_of(text, *needles) if needles else None)

    for key, value in raw.items():
        if key not in _KNOWN_TOP:
            raise fail(f"unknown section [{key}] (known: {', '.join(sorted(_KNOWN_TOP))})", key)
        if not isinstance(value, dict):
            raise fail(f"[{key}] must be a table", key)
    patterns_raw = raw.get("redaction", {}).get("patterns", [])
    if not isinstance(patterns_raw, list):
        raise fail("redaction.patterns must be a list of {name, regex} tables", "patterns")

    roles: dict[str, Role] = {}
    raw_roles = raw.get("roles", {})
    if not isinstance(raw_roles, dict):
        raise fail("[roles] must be a table", "roles")
    for name, spec in raw_roles.items():
        if not isinstance(spec, dict):
            raise fail(f"role {name!r} must be a table", f"roles.{name}")
        unknown_keys = set(spec) - {"scopes", "daily_tokens", "requests_per_minute", "description"}
        if unknown_keys:
            key = sorted(unknown_keys)[0]
            raise fail(f"role {name!r}: unknown key {key!r}", f"[roles.{name}]", key)
        scopes = spec.get("scopes", [])
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise fail(f"role {name!r}: scopes must be a list of strings", f"[roles.{name}]", "scopes")
        for s in scopes:
            if not is_known_scope(s):
                raise fail(f"role {name!r}: unknown scope {s!r}", f"[roles.{name}]", f'"{s}"')
        ints = {}
        for key in ("daily_tokens", "requests_per_minute"):
            value = spec.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise fail(f"role {name!r}: {key} must be a non-negative integer", f"[roles.{name}]", key)
            ints[key] = value
        roles[name] = Role(name, frozenset(scopes), **ints)

    def role_list(value: Any, where: str, *needles: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
            raise fail(f"{where}: roles must be a list of strings", *needles)
        for r in value:
            if r not in roles:
                raise fail(f"{where}: unknown role {r!r}", *needles, f'"{r}"')
        return tuple(value)

    defaults = raw.get("defaults", {})
    default_roles = role_list(defaults.get("roles", []), "[defaults]", "[defaults]") if defaults else ()

    users: dict[str, tuple[str, ...]] = {}
    for uid, spec in raw.get("users", {}).items():
        if not re.fullmatch(r"[UW][A-Z0-9]{2,}", uid):
            raise fail(f"users: {uid!r} is not a Slack user id (U… or W…)", uid)
        if not isinstance(spec, dict):
            raise fail(f"user {uid!r} must be a table", uid)
        users[uid] = role_list(spec.get("roles", []), f"user {uid}", uid)

    groups: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {}
    for gname, spec in raw.get("groups", {}).items():
        if not isinstance(spec, dict):
            raise fail(f"group {gname!r} must be a table", gname)
        members = spec.get("members", [])
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise fail(f"group {gname!r}: members must be a list of Slack user ids", gname, "members")
        groups[gname] = (role_list(spec.get("roles", []), f"group {gname}", gname), frozenset(members))

    usergroups: dict[str, tuple[str, ...]] = {}
    for gid, spec in raw.get("usergroups", {}).items():
        if not re.fullmatch(r"S[A-Z0-9]{2,}", gid):
            raise fail(f"usergroups: {gid!r} is not a Slack usergroup id (S…)", gid)
        if not isinstance(spec, dict):
            raise fail(f"usergroup {gid!r} must be a table", gid)
        usergroups[gid] = role_list(spec.get("roles", []), f"usergroup {gid}", gid)

    teams: dict[str, tuple[str, ...]] = {}
    home_teams: set[str] = set()
    for tid, spec in raw.get("teams", {}).items():
        if not _TEAM_ID.fullmatch(tid):
            raise fail(f"teams: {tid!r} is not a Slack team id (T…)", f"teams.{tid}")
        if not isinstance(spec, dict):
            raise fail(f"team {tid!r} must be a table", f"teams.{tid}")
        unknown_keys = set(spec) - {"roles", "home", "description"}
        if unknown_keys:
            key = sorted(unknown_keys)[0]
            raise fail(f"team {tid!r}: unknown key {key!r} (known: roles, home)", f"teams.{tid}", key)
        home = spec.get("home", False)
        if not isinstance(home, bool):
            raise fail(f"team {tid!r}: home must be true or false", f"teams.{tid}", "home")
        if home and "roles" in spec:
            raise fail(
                f"team {tid!r}: a home team takes no roles (its people follow defaults, users and groups)",
                f"teams.{tid}",
                "roles",
            )
        if home:
            home_teams.add(tid)
        elif "roles" in spec:
            teams[tid] = role_list(spec["roles"], f"team {tid}", f"teams.{tid}")

    channels: dict[str, ChannelRule] = {}
    for cid, spec in raw.get("channels", {}).items():
        if not isinstance(spec, dict):
            raise fail(f"channel {cid!r} must be a table", cid)
        allow = spec.get("allow", [])
        if not isinstance(allow, list) or not all(isinstance(s, str) for s in allow):
            raise fail(f"channel {cid!r}: allow must be a list of scopes", cid, "allow")
        for s in allow:
            if s != "*" and not is_known_scope(s):
                raise fail(f"channel {cid!r}: unknown scope {s!r}", cid, f'"{s}"')
        channels[cid] = ChannelRule(frozenset(allow))

    patterns: list[RedactionPattern] = []
    for item in patterns_raw:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("regex"), str)
        ):
            raise fail("redaction.patterns entries need a name and a regex", "patterns")
        try:
            re.compile(item["regex"])
        except re.error as exc:
            raise fail(f"redaction pattern {item['name']!r}: bad regex: {exc}", item["name"]) from None
        patterns.append(RedactionPattern(item["name"], item["regex"]))

    for section, module in _SECTION_VALIDATORS.items():
        if section in raw:
            validate = importlib.import_module(module).validate_section
            try:
                validate(raw[section])
            except PolicyError as exc:
                needles = [n for n in (section, exc.path) if n]
                raise fail(f"[{section}] {exc.reason}", *needles) from None

    k = raw.get("privacy", {}).get("k_anonymity", 5)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise fail("privacy.k_anonymity must be an integer >= 2", "k_anonymity")

    autonomy = _parse_autonomy(raw.get("autonomy"), fail) if "autonomy" in raw else AutonomyPolicy()

    digest = hashlib.sha256(text.encode()).hexdigest()
    return Policy(
        roles,
        default_roles,
        users,
        groups,
        channels,
        tuple(patterns),
        raw,
        digest,
        source,
        k,
        usergroups,
        teams=teams,
        home_teams=frozenset(home_teams),
        autonomy=autonomy,
    )


def _parse_autonomy(table: dict[str, Any], fail: Callable[..., PolicyError]) -> AutonomyPolicy:
    """Validate ``[autonomy]``: levels ordered shadow < suggest < auto, ``max`` >= ``start``, numbers in range,
    unknown keys and actions named with their line; any deploy action is refused."""
    unknown = set(table) - {"default", "actions"}
    if unknown:
        key = sorted(unknown)[0]
        raise fail(f"[autonomy]: unknown key {key!r} (known: default, actions)", "[autonomy]", key)
    default = table.get("default", "auto")
    if default not in LEVELS:
        raise fail(f"autonomy.default must be one of {', '.join(LEVELS)}", "[autonomy]", "default")
    actions_raw = table.get("actions", {})
    if not isinstance(actions_raw, dict):
        raise fail("autonomy.actions must be a table of actions", "[autonomy]", "actions")
    actions: dict[str, AutonomyRule] = {}
    categories: dict[tuple[str, str], AutonomyRule] = {}
    for action, spec in actions_raw.items():
        header = f'"{action}"'
        if action.startswith("deploy"):
            raise fail(f"autonomy: {action!r}: {NEVER_AUTONOMOUS}", header)
        if action not in GOVERNED_ACTIONS:
            raise fail(
                f"autonomy: unknown action {action!r} (governed: {', '.join(GOVERNED_ACTIONS)})", header
            )
        if not isinstance(spec, dict):
            raise fail(f"autonomy action {action!r} must be a table", header)
        cats = spec.get("categories", {})
        keys = {k: v for k, v in spec.items() if k != "categories"}
        rule = _autonomy_rule(AutonomyRule(), keys, f"autonomy action {action!r}", fail, header)
        actions[action] = rule
        if not isinstance(cats, dict) or "categories" in spec and action not in MAIL_ACTIONS:
            raise fail(
                f"autonomy action {action!r}: categories is a table of mail categories (mail actions only)",
                header,
                "categories",
            )
        for cat, cat_spec in cats.items():
            where = f"autonomy action {action!r} category {cat!r}"
            if cat not in CATEGORIES:
                raise fail(f"{where}: unknown category (known: {', '.join(CATEGORIES)})", header, cat)
            if not isinstance(cat_spec, dict):
                raise fail(f"{where} must be a table", header, cat)
            categories[(action, cat)] = _autonomy_rule(rule, cat_spec, where, fail, header, cat)
    return AutonomyPolicy(default, actions, categories)


def _autonomy_rule(
    base: AutonomyRule, spec: dict[str, Any], where: str, fail: Callable[..., PolicyError], *needles: str
) -> AutonomyRule:
    """``base`` with the keys of ``spec`` applied, validated."""
    unknown = set(spec) - set(RULE_KEYS)
    if unknown:
        key = sorted(unknown)[0]
        raise fail(f"{where}: unknown key {key!r} (known: {', '.join(RULE_KEYS)})", *needles, key)
    for key in ("start", "max"):
        if key in spec and spec[key] not in LEVELS:
            raise fail(f"{where}: {key} must be one of {', '.join(LEVELS)}", *needles, key)
    for key in ("promote_after", "window", "demote_after"):
        if key in spec:
            value = spec[key]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10000:
                raise fail(f"{where}: {key} must be an integer from 1 to 10000", *needles, key)
    if "promote_min_acceptance" in spec:
        value = spec["promote_min_acceptance"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise fail(
                f"{where}: promote_min_acceptance must be a number in (0, 1]",
                *needles,
                "promote_min_acceptance",
            )
    values = {k: spec[k] for k in RULE_KEYS if k in spec}
    if "promote_min_acceptance" in values:
        values["promote_min_acceptance"] = float(values["promote_min_acceptance"])
    rule = replace(base, **values)
    if LEVELS.index(rule.max) < LEVELS.index(rule.start):
        raise fail(f"{where}: max {rule.max!r} is below start {rule.start!r}", *needles, "max")
    if rule.demote_after > rule.window:
        raise fail(
            f"{where}: demote_after ({rule.demote_after}) cannot exceed window ({rule.window})",
            *needles,
            "demote_after",
        )
    return rule


def load_policy(path: Path | None) -> Policy:
    """Load the policy at ``path``, or the built-in default when ``path`` is None."""
    if path is None:
        return parse_policy(DEFAULT_POLICY, source="built-in default")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy file: {exc.strerror}", path=str(path)) from None
    return parse_policy(text, source=str(path))


class PolicyStore:
    """Holds the current policy and reloads it when the file changes (checked at most every ``interval``)."""

    def __init__(
        self,
        path: Path | None,
        *,
        interval: float = 2.0,
        on_change: Callable[[Policy, Policy], None] | None = None,
        memberships: Callable[[], dict[str, frozenset[str]]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path) if path else None
        self.clock = clock
        self.interval = interval
        self.on_change = on_change
        self.memberships = memberships  # Slack usergroup members, e.g. from the cache the workers keep
        self._members: dict[str, frozenset[str]] = {}
        self._outside: dict[str, str] = {}  # user -> other organisation's team (see note_team)
        self._origins: dict[str, tuple[str | None, tuple[str, ...]]] = {}  # user -> (team, home teams)
        self._lock = threading.Lock()
        self._policy = self._bind(load_policy(self.path))
        self._stamp = self._file_stamp()
        self._checked = clock()
        self._members_checked = float("-inf")
        self._members_read = float("-inf")  # when the memberships cache last answered (monotonic)

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload(self) -> Policy:
        """Re-read the file now; a bad file keeps the old policy and raises PolicyError."""
        with self._lock:
            new = self._bind(load_policy(self.path).with_usergroup_members(self._members))
            old, self._policy = self._policy, new
            self._stamp = self._file_stamp()
        if self.on_change is not None and new.digest != old.digest:
            self.on_change(old, new)
        return new

    def _bind(self, policy: Policy) -> Policy:
        policy.outside_users = self._outside
        return policy

    def note_team(
        self, user: str, team: str | None, home_teams: tuple[str, ...] | frozenset[str] = ()
    ) -> bool:
        """Record the verified team of ``user`` (from a signed payload or a task row); True if it is ours.

        Every scope check of this process then sees it: a user of another organisation holds only what
        ``[teams.T…]`` gives their team, wherever the check happens (ingress, worker, tools, actuators).
        """
        policy = self.current
        self._origins[user] = (team, tuple(home_teams))
        home = policy.is_home(team, home_teams)
        if home:
            changed = self._outside.pop(user, None) is not None
        else:
            assert team is not None
            changed = self._outside.get(user) != team
            self._outside[user] = team
        if changed:
            policy._cache.pop(user, None)
        return home

    def origin_of(self, user: str) -> tuple[str | None, tuple[str, ...]] | None:
        """(team, home teams) last noted for ``user`` in this process, or None."""
        return self._origins.get(user)

    @property
    def current(self) -> Policy:
        """The policy in force, reloading first if the file changed."""
        now = self.clock()
        if self.path is not None and now - self._checked >= self.interval:
            self._checked = now
            if self._file_stamp() != self._stamp:
                try:
                    self.reload()
                except PolicyError:
                    # Keep enforcing the last good policy; the bad file is reported by reload callers/logs.
                    import logging

                    logging.getLogger(__name__).exception(
                        "policy file changed but is invalid; keeping the old one"
                    )
                    self._stamp = self._file_stamp()
        if (
            self.memberships is not None
            and self._policy.usergroups
            and now - self._members_checked >= self.interval
        ):
            self._members_checked = now
            try:
                members = self.memberships()
                self._members_read = now
            except Exception:  # a cache outage keeps the last known memberships, but never past their age
                members = self._members if now - self._members_read <= MEMBERS_MAX_AGE else {}
            if members != self._members:
                self._members = members
                self._policy = self._policy.with_usergroup_members(members)
        return self._policy


def policy_store(settings: Settings, db: Database, conn: redis.Redis | None = None) -> PolicyStore:
    """The policy store; file changes are audited with the file's hash; usergroups come from the Redis cache."""
    from bot import audit
    from bot.slack import usergroups

    def audited(old: Policy, new: Policy) -> None:
        audit.record(
            db,
            actor="system",
            action="policy.changed",
            decision="info",
            target=new.source,
            details={"old_sha256": old.digest, "new_sha256": new.digest},
        )

    prefix = settings.clawback_queue_prefix
    members = (lambda: usergroups.read_members(conn, prefix)) if conn is not None else None
    return PolicyStore(settings.clawback_policy, on_change=audited, memberships=members)
