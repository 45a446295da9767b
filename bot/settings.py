"""Settings: the only module that reads the environment (and ``.env``)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

# Price per million tokens (USD). Estimates only: configure CLAWBACK_PRICES for your contract.
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "*": {"input": 0.40, "output": 1.60, "cached_input": 0.10},
}


class Settings(BaseSettings):
    """Clawback configuration; every field maps to an upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = "https://slack.com/api/"

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    clawback_model: str = "gpt-4o-mini"
    clawback_llm_timeout: float = Field(default=30.0, gt=0)
    clawback_llm_max_retries: int = Field(default=2, ge=0, le=10)
    clawback_job_retries: int = Field(default=3, ge=0, le=20)
    clawback_max_answer_tokens: int = Field(default=800, gt=0)
    clawback_context_tokens: int = Field(default=3000, gt=100)
    clawback_retry_intervals: str = "5,20,60"  # seconds between job retries
    clawback_prices: str | None = (
        None  # JSON object or path to a JSON file: {"model": {"input": .., "output": ..}}
    )

    redis_url: str | None = None
    database_url: str = "sqlite:///clawback.db"
    clawback_home: Path = Path(".clawback")
    clawback_policy: Path | None = None
    clawback_audit_key: str | None = None  # checkpoint signing key; workers need not hold it
    clawback_audit_checkpoints: Path | None = None  # JSONL copy of signed checkpoints, kept apart from the DB
    # `audit verify` fails when the newest checkpoint is older than this (seconds; 0 = not checked). The
    # Procfile's auditor signs every 300 s, so 900 s tolerates two missed rounds.
    clawback_audit_checkpoint_max_age: float = Field(default=900.0, ge=0)
    clawback_queue_prefix: str = "clawback"
    # A worker's liveness lease: a Redis key with this TTL (s), renewed every third of it by a thread in the
    # worker process. A running task whose worker's lease expired is re-enqueued by the reconciler.
    clawback_lease_ttl: int = Field(default=15, ge=2, le=300)
    clawback_reconcile_interval: float = Field(default=5.0, gt=0, le=300)  # seconds between lease checks
    clawback_outcome_window_hours: float = Field(default=72.0, gt=0)

    # -- mail settings (email triage surface) --
    clawback_mail_poll_interval: float = Field(default=60.0, gt=0)  # seconds between polls of a mailbox
    clawback_mail_poll_jitter: float = Field(default=10.0, ge=0)  # up to this many seconds added at random
    clawback_mail_first_sync_days: int = Field(default=7, ge=0)  # first run: only mail this recent is triaged
    clawback_mail_batch_size: int = Field(default=100, ge=1, le=512)  # changes per sync page / enqueue batch
    clawback_mail_body_tokens: int = Field(default=600, ge=50)  # token budget for one email's text
    clawback_mail_max_backoff: float = Field(default=900.0, gt=0)  # cap on throttling/auth back-off (s)
    clawback_mail_digest_minutes: float = Field(default=60.0, ge=0)  # digest cadence in the poll loop
    clawback_mail_max_triage_tokens: int = Field(default=400, gt=0)  # completion budget per triage call
    clawback_mail_timeout: float = Field(default=30.0, gt=0)  # EWS request timeout (s)

    def env_secret(self, name: str) -> str | None:
        """A secret named by the policy (e.g. ``password_env``): the environment first, then ``.env``."""
        import os

        value = os.environ.get(name)
        if value:
            return value
        env_file = self.model_config.get("env_file")
        if isinstance(env_file, str) and Path(env_file).is_file():
            from dotenv import dotenv_values

            return dotenv_values(env_file).get(name) or None
        return None

    # -- deploy settings (deploy-assist surface) --
    clawback_github_api_url: str = "https://api.github.com"  # GitHub Enterprise: https://HOST/api/v3
    clawback_github_token: str | None = None  # needs contents:write (pinned deploy refs), actions:write on the deploy repos
    clawback_deploy_http_timeout: float = Field(default=10.0, gt=0)  # seconds per CI API request
    clawback_deploy_approval_ttl_minutes: float = Field(default=60.0, gt=0)  # requests and approvals expire
    clawback_deploy_poll_seconds: float = Field(default=15.0, ge=0)  # between run status polls
    clawback_deploy_max_polls: int = Field(default=240, ge=1)  # then the run is marked unknown
    clawback_deploy_rollback_window_hours: float = Field(default=24.0, gt=0)
    clawback_deploy_plan_tokens: int = Field(default=900, gt=0)  # max completion tokens of a plan

    def deploy_webhook_secret(self, env_name: str) -> str | None:
        """The webhook secret in variable ``env_name`` (named by the policy): the environment, then .env."""
        import re

        if not re.fullmatch(r"[A-Z][A-Z0-9_]{2,63}", env_name or "") or env_name.lower() in type(
            self
        ).model_fields:
            # Never let a policy point a webhook signature at one of Clawback's own credentials.
            raise ConfigError(f"{env_name!r} cannot hold a deploy webhook secret")
        return self.env_secret(env_name)

    # -- measurement settings (reports, outcomes, signals) --
    clawback_outcome_kinds: str | None = None  # JSON (or a path): overlay of bot.measure.outcomes.DEFAULT_KINDS
    clawback_followup_minutes: float = Field(default=10.0, gt=0)  # follow-up in thread = weak "not resolved"
    clawback_signal_thresholds: str | None = None  # JSON overlay of bot.measure.signals.Thresholds
    clawback_reporting_dates: str = "month-end"  # "month-end" or comma-separated ISO dates

    @field_validator("slack_api_url")
    @classmethod
    def _slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"

    @cached_property
    def prices(self) -> dict[str, dict[str, float]]:
        """The price table: built-in default overlaid with CLAWBACK_PRICES."""
        table = dict(DEFAULT_PRICES)
        raw = self.clawback_prices
        if raw:
            text = Path(raw).read_text() if not raw.lstrip().startswith("{") else raw
            try:
                loaded: Any = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"CLAWBACK_PRICES is not valid JSON: {exc}") from exc
            if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
                raise ConfigError('CLAWBACK_PRICES must map model names to {"input": .., "output": ..}')
            table.update(loaded)
        return table

    @property
    def retry_intervals(self) -> list[int]:
        """Seconds between RQ job retries."""
        try:
            return [int(x) for x in self.clawback_retry_intervals.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(
                "CLAWBACK_RETRY_INTERVALS must be comma-separated seconds, e.g. 5,20,60"
            ) from None

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every listed variable that is unset."""
        missing = [n.upper() for n in names if not getattr(self, n.lower())]
        if missing:
            raise ConfigError(
                f"missing required setting(s): {', '.join(missing)} (set them in the environment or .env)"
            )


def load_settings(**overrides: Any) -> Settings:
    """Read and validate settings, turning validation errors into one clear ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else "?"
            problems.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
