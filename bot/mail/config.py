"""Mailbox configuration from the policy file's ``[mailboxes."addr"]`` tables.

```toml
[mailboxes."emma@example.com"]
owner = "U0EMMA"                     # the Slack user the triage works for, under whose scopes it acts
backend = "ews"
ews_url = "https://mail.example.com/EWS/Exchange.asmx"
username = "emma@example.com"        # default: the address
password_env = "CLAWBACK_EWS_PASSWORD_EMMA"   # secrets stay in the environment
auth_type = "basic"                  # or "ntlm"
# or OAuth2 client credentials instead of username/password:
# client_id = "..."; tenant_id = "..."; client_secret_env = "CLAWBACK_EWS_SECRET_EMMA"
folders = { action = "Action", fyi = "FYI", newsletter = "Newsletters" }   # optional move targets
first_sync_days = 7                  # optional, overrides CLAWBACK_MAIL_FIRST_SYNC_DAYS

[mailboxes."emma@contoso.com"]      # Exchange Online over Microsoft Graph (app-only, client credentials)
owner = "U0EMMA"
backend = "graph"
tenant_id = "contoso.onmicrosoft.com"          # or the tenant GUID
client_id = "4b1e9f6a-..."                     # the Entra app registration
client_secret_env = "CLAWBACK_GRAPH_SECRET"    # or client_certificate_env / client_certificate_path + thumbprint
login_url = "https://login.microsoftonline.com" # default; national clouds (and the stand-in) override it
graph_url = "https://graph.microsoft.com/v1.0"  # default
folders = { action = "Action", fyi = "FYI", newsletter = "Newsletters" }
```
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import ConfigError, PolicyError

CATEGORIES = ("action_required", "reply_needed", "fyi", "newsletter", "notification", "phishing_spam")
# Short names accepted in ``folders`` for readability.
CATEGORY_ALIASES = {
    "action": "action_required",
    "reply": "reply_needed",
    "newsletters": "newsletter",
    "marketing": "newsletter",
    "notifications": "notification",
    "phishing": "phishing_spam",
    "spam": "phishing_spam",
}
# Exchange category labels set by triage (the owner sees these in Outlook).
CATEGORY_LABELS = {
    "action_required": "Action required",
    "reply_needed": "Reply needed",
    "fyi": "FYI",
    "newsletter": "Newsletter",
    "notification": "Notification",
    "phishing_spam": "Suspected phishing/spam",
}
LABEL_CATEGORIES = {v.lower(): k for k, v in CATEGORY_LABELS.items()}
# Folders triage must never move mail into: sending and deleting are not triage's business.
FORBIDDEN_FOLDERS = {
    "drafts",
    "sent",
    "sent items",
    "sentitems",
    "outbox",
    "deleted",
    "deleted items",
    "deleteditems",
}
_KEYS = {
    "owner",
    "backend",
    "ews_url",
    "username",
    "password_env",
    "auth_type",
    "client_id",
    "client_secret_env",
    "tenant_id",
    "folders",
    "first_sync_days",
    "enabled",
    # backend = "graph"
    "client_certificate_env",
    "client_certificate_path",
    "thumbprint",
    "login_url",
    "graph_url",
}
BACKENDS = ("ews", "graph")
_EWS_ONLY = ("ews_url", "username", "password_env", "auth_type")
_GRAPH_ONLY = ("client_certificate_env", "client_certificate_path", "thumbprint", "login_url", "graph_url")
DEFAULT_LOGIN_URL = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
_THUMBPRINT = re.compile(r"[0-9A-Fa-f]{40}")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,253}")
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class MailboxConfig:
    """One mailbox to triage and how to reach it (secrets are environment variable names, never values)."""

    address: str
    owner: str
    ews_url: str
    backend: str = "ews"
    username: str | None = None
    password_env: str | None = None
    auth_type: str = "basic"
    client_id: str | None = None
    client_secret_env: str | None = None
    tenant_id: str | None = None
    folders: dict[str, str] = field(default_factory=dict)  # category -> folder display name
    first_sync_days: int | None = None
    enabled: bool = True
    client_certificate_env: str | None = None  # backend = "graph": PEM (key + certificate) in this variable
    client_certificate_path: str | None = None  # ... or in this file
    thumbprint: str | None = None  # SHA-1 thumbprint of the certificate registered in Entra
    login_url: str = DEFAULT_LOGIN_URL
    graph_url: str = DEFAULT_GRAPH_URL

    @property
    def uses_oauth(self) -> bool:
        """True when OAuth2 client credentials are configured."""
        return bool(self.client_id)

    def folder_for(self, category: str) -> str | None:
        """The folder a category's mail is moved to, if one is configured."""
        return self.folders.get(category)


def canonical_category(name: str) -> str | None:
    """A category name or alias as the canonical category, or None."""
    key = name.strip().lower()
    key = CATEGORY_ALIASES.get(key, key)
    return key if key in CATEGORIES else None


def _fail(reason: str, needle: str) -> PolicyError:
    return PolicyError(reason, path=needle)


def _opt_str(spec: dict[str, Any], key: str, where: str, address: str) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"{where}: {key} must be a non-empty string", key if key in spec else address)
    return value.strip()


def _parse_common(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """The keys every backend shares: folders, first_sync_days, enabled."""
    folders_raw = spec.get("folders", {})
    if not isinstance(folders_raw, dict):
        raise _fail(f'{where}: folders must be a table of category = "Folder name"', "folders")
    folders: dict[str, str] = {}
    for key, name in folders_raw.items():
        category = canonical_category(str(key))
        if category is None:
            raise _fail(
                f"{where}: folders: unknown category {key!r} (known: {', '.join(CATEGORIES)})", str(key)
            )
        if not isinstance(name, str) or not name.strip() or "/" in name or len(name) > 200:
            raise _fail(f"{where}: folders.{key} must be a folder name (no '/')", str(key))
        if name.strip().lower() in FORBIDDEN_FOLDERS or name.strip().lower() == "inbox":
            raise _fail(f"{where}: folders.{key}: triage cannot move mail to {name!r}", str(key))
        folders[category] = name.strip()
    days = spec.get("first_sync_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 3650):
        raise _fail(f"{where}: first_sync_days must be an integer from 0 to 3650", "first_sync_days")
    enabled = spec.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail(f"{where}: enabled must be true or false", "enabled")
    return {"folders": folders, "first_sync_days": days, "enabled": enabled}


def parse_mailbox(address: str, spec: Any) -> MailboxConfig:
    """Validate one ``[mailboxes."addr"]`` table; raises PolicyError naming the key."""
    where = f"mailbox {address!r}"
    if not _ADDRESS.fullmatch(address):
        raise _fail(f"{address!r} is not an email address", address)
    if not isinstance(spec, dict):
        raise _fail(f"{where} must be a table", address)
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise _fail(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})", unknown[0])
    owner = spec.get("owner")
    if not isinstance(owner, str) or not _SLACK_USER.fullmatch(owner):
        raise _fail(
            f"{where}: owner must be a Slack user id (U… or W…)", "owner" if "owner" in spec else address
        )
    backend = spec.get("backend", "ews")
    if backend not in BACKENDS:
        raise _fail(f'{where}: backend {backend!r} is not supported (supported: "ews", "graph")', "backend")
    if backend == "graph":
        return _parse_graph(address, spec, owner, where)
    for key in _GRAPH_ONLY:
        if key in spec:
            raise _fail(f'{where}: {key} applies only to backend = "graph"', key)
    ews_url = _opt_str(spec, "ews_url", where, address)
    if not ews_url or not re.match(r"https?://", ews_url):
        raise _fail(
            f"{where}: ews_url must be an http(s) URL of the EWS endpoint",
            "ews_url" if "ews_url" in spec else address,
        )
    auth_type = spec.get("auth_type", "basic")
    if auth_type not in ("basic", "ntlm"):
        raise _fail(f'{where}: auth_type must be "basic" or "ntlm" (OAuth2: set client_id)', "auth_type")
    strings = {
        k: _opt_str(spec, k, where, address)
        for k in ("username", "password_env", "client_id", "client_secret_env", "tenant_id")
    }
    for key in ("password_env", "client_secret_env"):
        if strings[key] and not _ENV_NAME.fullmatch(strings[key] or ""):
            raise _fail(f"{where}: {key} must name an environment variable, not hold a secret", key)
    if strings["client_id"]:
        if not (strings["tenant_id"] and strings["client_secret_env"]):
            raise _fail(f"{where}: OAuth2 needs client_id, tenant_id and client_secret_env", "client_id")
    elif not strings["password_env"]:
        raise _fail(f"{where}: set password_env (or OAuth2 client_id/tenant_id/client_secret_env)", address)
    common = _parse_common(spec, where)
    return MailboxConfig(
        address=address.lower(),
        owner=owner,
        ews_url=ews_url,
        backend=backend,
        username=strings["username"],
        password_env=strings["password_env"],
        auth_type=auth_type,
        client_id=strings["client_id"],
        client_secret_env=strings["client_secret_env"],
        tenant_id=strings["tenant_id"],
        **common,
    )


def _https_url(spec: dict[str, Any], key: str, default: str, where: str, address: str) -> str:
    value = _opt_str(spec, key, where, address) or default
    if not re.fullmatch(r"https://[^\s/?#]+(/[^\s?#]*)?", value):
        raise _fail(f"{where}: {key} must be an https:// URL", key)
    return value.rstrip("/")


def _parse_graph(address: str, spec: dict[str, Any], owner: str, where: str) -> MailboxConfig:
    """The ``backend = "graph"`` keys: tenant, app, one credential, endpoints."""
    for key in _EWS_ONLY:
        if key in spec:
            raise _fail(f'{where}: {key} applies only to backend = "ews"', key)
    strings = {
        k: _opt_str(spec, k, where, address)
        for k in (
            "tenant_id",
            "client_id",
            "client_secret_env",
            "client_certificate_env",
            "client_certificate_path",
            "thumbprint",
        )
    }
    if not strings["tenant_id"] or not _TENANT.fullmatch(strings["tenant_id"] or ""):
        raise _fail(
            f'{where}: backend = "graph" needs tenant_id (the tenant GUID or its domain, e.g. '
            '"contoso.onmicrosoft.com")',
            "tenant_id" if "tenant_id" in spec else address,
        )
    if not strings["client_id"]:
        raise _fail(
            f'{where}: backend = "graph" needs client_id (the Entra app registration\'s application id)',
            "client_id" if "client_id" in spec else address,
        )
    for key in ("client_secret_env", "client_certificate_env"):
        if strings[key] and not _ENV_NAME.fullmatch(strings[key] or ""):
            raise _fail(f"{where}: {key} must name an environment variable, not hold a secret", key)
    credentials = [
        k for k in ("client_secret_env", "client_certificate_env", "client_certificate_path") if strings[k]
    ]
    if len(credentials) != 1:
        raise _fail(
            f"{where}: set exactly one of client_secret_env, client_certificate_env or client_certificate_path"
            + (f" (found {', '.join(credentials)})" if credentials else ""),
            credentials[1] if len(credentials) > 1 else address,
        )
    certificate = credentials[0] != "client_secret_env"
    if certificate and not strings["thumbprint"]:
        raise _fail(
            f"{where}: a client certificate needs thumbprint (its SHA-1 thumbprint from Entra)",
            credentials[0],
        )
    if strings["thumbprint"]:
        if not certificate:
            raise _fail(
                f"{where}: thumbprint goes with client_certificate_env or client_certificate_path",
                "thumbprint",
            )
        if not _THUMBPRINT.fullmatch((strings["thumbprint"] or "").replace(":", "")):
            raise _fail(
                f"{where}: thumbprint must be 40 hex digits (the certificate's SHA-1 thumbprint)",
                "thumbprint",
            )
    login_url = _https_url(spec, "login_url", DEFAULT_LOGIN_URL, where, address)
    graph_url = _https_url(spec, "graph_url", DEFAULT_GRAPH_URL, where, address)
    common = _parse_common(spec, where)
    return MailboxConfig(
        address=address.lower(),
        owner=owner,
        ews_url="",
        backend="graph",
        client_id=strings["client_id"],
        client_secret_env=strings["client_secret_env"],
        tenant_id=strings["tenant_id"],
        client_certificate_env=strings["client_certificate_env"],
        client_certificate_path=strings["client_certificate_path"],
        thumbprint=(strings["thumbprint"] or "").replace(":", "").upper() or None,
        login_url=login_url,
        graph_url=graph_url,
        **common,
    )


def validate_section(table: dict[str, Any]) -> None:
    """For ``parse_policy``: raises PolicyError(reason, path=a text that finds the offending line)."""
    if not isinstance(table, dict):
        raise _fail("must be a table of mailbox addresses", "mailboxes")
    seen: set[str] = set()
    for address, spec in table.items():
        cfg = parse_mailbox(address, spec)
        if cfg.address in seen:
            raise _fail(f"mailbox {address!r} is listed twice (addresses are case-insensitive)", address)
        seen.add(cfg.address)


def mailboxes_from(section: dict[str, Any]) -> list[MailboxConfig]:
    """Every configured mailbox (the policy has already been validated), enabled or not."""
    return [parse_mailbox(address, spec) for address, spec in section.items()]


def mailbox_config(section: dict[str, Any], address: str) -> MailboxConfig | None:
    """The configuration of one mailbox by address (case-insensitive), or None."""
    for cfg in mailboxes_from(section):
        if cfg.address == address.lower():
            return cfg
    return None


def connect(
    cfg: MailboxConfig,
    secret: Callable[[str], str | None],
    *,
    timeout: float = 30.0,
    reserved: frozenset[str] = frozenset(),
    first_sync_days: int | None = None,
):  # noqa: ANN201
    """An ``EwsMailbox`` for ``cfg``; ``secret(name)`` reads a named secret (``Settings.env_secret``).

    ``reserved`` names Clawback's own settings: a policy can never point a mail password at one of them.
    """
    for name in (cfg.password_env, cfg.client_secret_env, cfg.client_certificate_env):
        if name and name.upper() in reserved:
            raise ConfigError(
                f"mailbox {cfg.address}: {name} is one of Clawback's own settings, not a mail secret"
            )
    if cfg.backend == "graph":
        days = cfg.first_sync_days if cfg.first_sync_days is not None else first_sync_days
        return connect_graph(cfg, secret, timeout=timeout, first_sync_days=days)

    from bot.mail.ews import EwsMailbox

    if cfg.uses_oauth:
        value = secret(cfg.client_secret_env or "")
        if not value:
            raise ConfigError(
                f"mailbox {cfg.address}: environment variable {cfg.client_secret_env} is not set"
            )
        return EwsMailbox(
            cfg.address,
            cfg.ews_url,
            client_id=cfg.client_id,
            client_secret=value,
            tenant_id=cfg.tenant_id,
            timeout=timeout,
        )
    password = secret(cfg.password_env or "")
    if not password:
        raise ConfigError(f"mailbox {cfg.address}: environment variable {cfg.password_env} is not set")
    return EwsMailbox(
        cfg.address,
        cfg.ews_url,
        username=cfg.username or cfg.address,
        password=password,
        auth_type=cfg.auth_type,
        timeout=timeout,
    )


def connect_graph(  # noqa: ANN201
    cfg: MailboxConfig,
    secret: Callable[[str], str | None],
    *,
    timeout: float = 30.0,
    first_sync_days: int | None = None,
):
    """A ``GraphMailbox`` for ``cfg``: the client secret, or the certificate (PEM with key) and its thumbprint.

    TLS trust follows the standard variables (REQUESTS_CA_BUNDLE for msal, SSL_CERT_FILE for httpx).
    """
    from bot.mail.graph import GraphMailbox

    certificate: dict[str, str] | None = None
    client_secret: str | None = None
    if cfg.client_secret_env:
        client_secret = secret(cfg.client_secret_env)
        if not client_secret:
            raise ConfigError(
                f"mailbox {cfg.address}: environment variable {cfg.client_secret_env} is not set"
            )
    else:
        if cfg.client_certificate_env:
            pem = secret(cfg.client_certificate_env)
            if not pem:
                raise ConfigError(
                    f"mailbox {cfg.address}: environment variable {cfg.client_certificate_env} is not set"
                )
        else:
            try:
                pem = Path(cfg.client_certificate_path or "").expanduser().read_text()
            except OSError as e:
                raise ConfigError(
                    f"mailbox {cfg.address}: cannot read client_certificate_path {cfg.client_certificate_path}: "
                    f"{e.strerror or e}"
                ) from e
        if "PRIVATE KEY-----" not in pem:
            raise ConfigError(f"mailbox {cfg.address}: the client certificate PEM holds no private key")
        certificate = {"private_key": pem, "thumbprint": cfg.thumbprint or ""}
    return GraphMailbox(
        cfg.address,
        tenant_id=cfg.tenant_id or "",
        client_id=cfg.client_id or "",
        client_secret=client_secret,
        client_certificate=certificate,
        login_url=cfg.login_url,
        graph_url=cfg.graph_url,
        timeout=timeout,
        first_sync_days=first_sync_days,
    )


def mailbox_factory(settings: Any, policy: Any) -> Callable[[str], Any]:
    """A cached ``address -> Mailbox`` factory over the current policy (one client per address)."""
    cache: dict[str, Any] = {}

    def get(address: str) -> Any:
        key = address.lower()
        if key not in cache:
            cfg = mailbox_config(policy.current.section("mailboxes"), key)
            if cfg is None:
                raise ConfigError(f"mailbox {address} is not configured in the policy")
            cache[key] = connect(
                cfg,
                settings.env_secret,
                timeout=settings.clawback_mail_timeout,
                reserved=frozenset(name.upper() for name in type(settings).model_fields),
                first_sync_days=settings.clawback_mail_first_sync_days,
            )
        return cache[key]

    return get
