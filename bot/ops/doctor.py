"""``clawback doctor``: check a deployment's settings and every service it talks to, one line per check.

Each check makes the cheapest call that proves the thing works (credentials included) and has a timeout. A
check ends ``ok``, ``warn`` (works, but something deserves a look; does not fail the run), ``fail`` or ``skip``
(not configured, not needed). Checks never change anything: no migration, no message, no mail, no dispatch.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bot.errors import ClawbackError
from bot.settings import Settings
from bot.slack.manifest import manifest_bot_scopes

Status = Literal["ok", "warn", "fail", "skip"]
DEFAULT_TIMEOUT = 10.0  # seconds per check


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str


class _Outcome(Exception):
    """Raised inside a check to end it with a status other than ok."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def _fail(detail: str) -> _Outcome:
    return _Outcome("fail", detail)


def _warn(detail: str) -> _Outcome:
    return _Outcome("warn", detail)


def _skip(detail: str) -> _Outcome:
    return _Outcome("skip", detail)


Check = Callable[[], str]


def run_one(name: str, check: Check, timeout: float) -> CheckResult:
    """Run ``check`` in a daemon thread; a check still running after ``timeout`` fails (and is abandoned)."""
    box: list[CheckResult] = []

    def target() -> None:
        try:
            box.append(CheckResult(name, "ok", check()))
        except _Outcome as out:
            box.append(CheckResult(name, out.status, out.detail))
        except Exception as exc:  # noqa: BLE001 - a check must report, never crash the doctor
            box.append(CheckResult(name, "fail", f"{type(exc).__name__}: {str(exc)[:300]}"))

    thread = threading.Thread(target=target, name=f"doctor-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not box:
        return CheckResult(name, "fail", f"no answer within {timeout:g} s")
    return box[0]


# ---- the checks ----------------------------------------------------------------------------------------------


def check_settings(settings: Settings) -> str:
    """Values that parse only when used (prices, retry intervals) and the settings every process needs."""
    _ = settings.prices, settings.retry_intervals
    missing = [n.upper() for n in ("slack_bot_token", "slack_signing_secret") if not getattr(settings, n)]
    if missing:
        raise _fail(f"missing {', '.join(missing)} (set them in the environment or .env)")
    if not settings.openai_api_key and not settings.openai_base_url:
        raise _warn("OPENAI_API_KEY and OPENAI_BASE_URL unset: the LLM calls will fail")
    return "present and valid"


def check_signing_secret(settings: Settings) -> str:
    """Slack's signing secret is set (its value can only be proven by a signed request from Slack)."""
    secret = settings.slack_signing_secret or ""
    if not secret:
        raise _fail("SLACK_SIGNING_SECRET is not set: every request from Slack would be refused")
    if not re.fullmatch(r"[0-9a-f]{32}", secret):
        raise _warn("set, but not the 32 hex characters Slack issues: check that it is the signing secret")
    return "set"


def _slack_client(settings: Settings, token: str | None, timeout: float):  # noqa: ANN202 - slack_sdk WebClient
    from slack_sdk import WebClient

    return WebClient(token=token, base_url=settings.slack_api_url, timeout=max(1, int(timeout)))


def check_slack_auth(settings: Settings, timeout: float) -> str:
    """``auth.test`` with the bot token."""
    from slack_sdk.errors import SlackApiError

    if not settings.slack_bot_token:
        raise _fail("SLACK_BOT_TOKEN is not set")
    try:
        resp = _slack_client(settings, settings.slack_bot_token, timeout).auth_test()
    except SlackApiError as exc:
        raise _fail(f"auth.test refused the bot token: {exc.response.get('error')}") from None
    except Exception as exc:  # noqa: BLE001 - transport errors of any kind
        raise _fail(f"Slack unreachable at {settings.slack_api_url}: {exc}") from None
    return f"auth.test: bot @{resp.get('user')} ({resp.get('user_id')}) in {resp.get('team')} ({resp.get('team_id')})"


def check_slack_scopes(settings: Settings, timeout: float) -> str:
    """The bot token's scopes (Slack's ``x-oauth-scopes`` header) against the manifest's bot scopes."""
    from slack_sdk.errors import SlackApiError

    if not settings.slack_bot_token:
        raise _skip("no bot token")
    try:
        resp = _slack_client(settings, settings.slack_bot_token, timeout).auth_test()
    except SlackApiError:
        raise _skip("the token was refused (see slack.auth)") from None
    headers = {k.lower(): v for k, v in (resp.headers or {}).items()}
    raw = headers.get("x-oauth-scopes")
    if isinstance(raw, list):
        raw = ",".join(raw)
    if raw is None:
        raise _warn("Slack did not report the token's scopes (no x-oauth-scopes header)")
    granted = {s.strip() for s in raw.split(",") if s.strip()}
    wanted = manifest_bot_scopes()
    missing = [s for s in wanted if s not in granted]
    extra = sorted(granted - set(wanted))
    if missing:
        raise _fail(f"missing {', '.join(missing)}: add them (bot/slack/slack_manifest.yaml) and reinstall the app")
    if extra:
        raise _warn(f"all {len(wanted)} needed, plus more than Clawback needs: {', '.join(extra)}")
    return f"the {len(wanted)} scopes of the manifest, no more"


def check_app_token(settings: Settings, timeout: float, socket_mode: bool | None) -> str:
    """The app-level token (Socket Mode): its form and ``apps.connections.open``."""
    from slack_sdk.errors import SlackApiError

    token = settings.slack_app_token
    if not token:
        if socket_mode:
            raise _fail("SLACK_APP_TOKEN is not set: `clawback socket` needs it")
        raise _skip("SLACK_APP_TOKEN not set (HTTP mode)")
    if not token.startswith("xapp-"):
        raise _fail("SLACK_APP_TOKEN is not an app-level token (xapp-...)")
    try:
        _slack_client(settings, token, timeout).apps_connections_open(app_token=token)
    except SlackApiError as exc:
        raise _fail(f"apps.connections.open refused the app token: {exc.response.get('error')}") from None
    return "apps.connections.open accepted it"


def check_llm(settings: Settings, timeout: float) -> str:
    """The endpoint answers and offers the configured model: ``GET /models``, else a 1-token completion."""
    import openai

    from bot.llm import make_client

    client = make_client(
        base_url=settings.openai_base_url, api_key=settings.openai_api_key, timeout=timeout, max_retries=0
    )
    where = settings.openai_base_url or "api.openai.com"
    model = settings.clawback_model
    try:
        ids = [m.id for m in client.models.list()]
    except openai.AuthenticationError:
        raise _fail(f"{where}: the API key was refused") from None
    except openai.APIConnectionError as exc:
        raise _fail(f"{where} unreachable: {exc}") from None
    except (openai.NotFoundError, openai.PermissionDeniedError, openai.InternalServerError):
        ids = None  # no model list here (some gateways): try the model itself
    if ids is not None:
        if model not in ids:
            shown = ", ".join(sorted(ids)[:8]) + (" ..." if len(ids) > 8 else "")
            raise _fail(f"{where} does not offer model {model!r} (CLAWBACK_MODEL); it offers: {shown or 'none'}")
        return f"{where}: model {model} listed"
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "ping"}], max_tokens=1)
    except openai.NotFoundError:
        raise _fail(f"{where}: model {model!r} (CLAWBACK_MODEL) not found") from None
    except openai.APIError as exc:
        raise _fail(f"{where}: a 1-token completion failed: {str(exc)[:200]}") from None
    return f"{where}: model {model} answered a 1-token completion (no model list)"


def check_redis(settings: Settings, timeout: float) -> str:
    """PING the configured Redis (the embedded one is not started by the doctor)."""
    import redis

    if not settings.redis_url:
        raise _warn("REDIS_URL unset: the embedded Redis is used (one machine only; not for production)")
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        conn.ping()
        version = conn.info("server").get("redis_version", "?")
    except redis.RedisError as exc:
        raise _fail(f"{_safe_url(settings.redis_url)}: {exc}") from None
    finally:
        conn.close()
    return f"{_safe_url(settings.redis_url)}: PONG (Redis {version})"


def _safe_url(url: str) -> str:
    """A URL without its password."""
    return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def check_database(settings: Settings, timeout: float) -> str:
    """The database answers and its schema is the one this code needs (nothing is migrated here)."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot import migrate
    from bot.db import Database

    url = settings.database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            raise _fail(f"{path} does not exist: run `clawback db upgrade`")
    db = Database(url)
    try:
        current, head = migrate.current_revision(db), migrate.head_revision()
    except SQLAlchemyError as exc:
        raise _fail(f"{_safe_url(url)}: {str(exc).splitlines()[0][:200]}") from None
    finally:
        db.dispose()
    if current != head:
        raise _fail(f"schema at {current or 'nothing'}, this code needs {head}: run `clawback db upgrade`")
    return f"{_safe_url(url)}: schema current ({head})"


def check_policy(settings: Settings) -> str:
    """``clawback policy check`` on CLAWBACK_POLICY."""
    from bot.policy import load_policy

    if settings.clawback_policy is None:
        raise _warn("CLAWBACK_POLICY unset: the built-in default applies (answers and own usage only)")
    try:
        policy = load_policy(settings.clawback_policy)
    except ClawbackError as exc:
        raise _fail(str(exc)) from None
    return f"{settings.clawback_policy}: {len(policy.roles)} role(s), {len(policy.users)} user(s)"


def check_mailbox(settings: Settings, cfg: Any, timeout: float, connect: Callable[..., Any] | None) -> str:
    """One cheap authenticated call to a mailbox through the ``Mailbox`` protocol."""
    from bot.mail.base import MailAuthError, MailError
    from bot.mail.config import connect as connect_mailbox

    if not cfg.enabled:
        raise _skip("disabled in the policy")
    reserved = frozenset(name.upper() for name in type(settings).model_fields)
    try:
        mailbox = (connect or connect_mailbox)(cfg, settings.env_secret, timeout=timeout, reserved=reserved)
    except ClawbackError as exc:
        raise _fail(str(exc)) from None
    try:
        return mailbox.check()
    except MailAuthError as exc:
        raise _fail(f"credentials refused: {str(exc)[:300]}") from None
    except MailError as exc:
        raise _fail(f"{type(exc).__name__}: {str(exc)[:300]}") from None
    finally:
        close = getattr(mailbox, "close", None)
        if close:
            close()


def check_github(settings: Settings, service: Any, timeout: float) -> str:
    """The GitHub token sees the service's repository and (GitHub executor) its workflow."""
    from bot.deploy.executors import CIAuthError, DeployError, GitHubClient

    if not settings.clawback_github_token:
        raise _fail("CLAWBACK_GITHUB_TOKEN is not set")
    client = GitHubClient(settings.clawback_github_api_url, settings.clawback_github_token, timeout)
    workflow = service.workflow if service.executor == "github" else None
    try:
        return client.check_repo(service.repo, workflow)
    except CIAuthError as exc:
        raise _fail(f"token refused: {exc}") from None
    except DeployError as exc:
        raise _fail(str(exc)) from None


# ---- running them --------------------------------------------------------------------------------------------


def plan_checks(
    settings: Settings,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    socket_mode: bool | None = None,
    mailbox_connect: Callable[..., Any] | None = None,
) -> list[tuple[str, Check]]:
    """The checks for these settings, in the order they are shown."""
    checks: list[tuple[str, Check]] = [
        ("settings", lambda: check_settings(settings)),
        ("slack.auth", lambda: check_slack_auth(settings, timeout)),
        ("slack.scopes", lambda: check_slack_scopes(settings, timeout)),
        ("slack.signing_secret", lambda: check_signing_secret(settings)),
        ("slack.app_token", lambda: check_app_token(settings, timeout, socket_mode)),
        ("llm", lambda: check_llm(settings, timeout)),
        ("redis", lambda: check_redis(settings, timeout)),
        ("database", lambda: check_database(settings, timeout)),
        ("policy", lambda: check_policy(settings)),
    ]
    policy = _policy_or_none(settings)
    if policy is not None:
        from bot.deploy.config import services_of
        from bot.mail.config import mailboxes_from

        for cfg in mailboxes_from(policy.section("mailboxes") or {}):
            checks.append(
                (f"mailbox {cfg.address}", lambda cfg=cfg: check_mailbox(settings, cfg, timeout, mailbox_connect))
            )
        for service in services_of(policy).values():
            checks.append((f"github {service.name}", lambda s=service: check_github(settings, s, timeout)))
    return checks


def _policy_or_none(settings: Settings):  # noqa: ANN202 - a Policy
    from bot.policy import load_policy

    try:
        return load_policy(settings.clawback_policy)
    except ClawbackError:
        return None  # reported by the policy check


def run_checks(checks: Iterable[tuple[str, Check]], timeout: float = DEFAULT_TIMEOUT) -> list[CheckResult]:
    """Run the checks side by side, each bounded by ``timeout`` (plus a little for the client's own)."""
    checks = list(checks)
    results: list[CheckResult | None] = [None] * len(checks)

    def run(i: int, name: str, check: Check) -> None:
        results[i] = run_one(name, check, timeout + 2.0)

    threads = [threading.Thread(target=run, args=(i, n, c), daemon=True) for i, (n, c) in enumerate(checks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


def format_line(result: CheckResult, width: int = 22) -> str:
    """``ok    slack.auth            detail`` (one line, never wrapped by us)."""
    return f"{result.status.upper():<5} {result.name:<{width}} {result.detail}"


def exit_code(results: Iterable[CheckResult]) -> int:
    """1 when any check failed, else 0 (warnings do not fail)."""
    return 1 if any(r.status == "fail" for r in results) else 0
