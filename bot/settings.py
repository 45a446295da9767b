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
    clawback_queue_prefix: str = "clawback"
    clawback_outcome_window_hours: float = Field(default=72.0, gt=0)

    # -- mail settings (email triage surface) --

    # -- deploy settings (deploy-assist surface) --

    # -- measurement settings (reports, outcomes, signals) --

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
