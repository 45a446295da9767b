"""Fixtures for the measurement tests: the ground-truth ledger, settings for it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.db import Database
from bot.measure.outcomes import sweep_none
from bot.settings import Settings
from tests.measure.workload import END, REPORTING_DATE, Workload, build


@pytest.fixture
def measure_settings() -> Settings:
    """Settings with the workload's reporting date."""
    return Settings(_env_file=None, clawback_reporting_dates=REPORTING_DATE.isoformat())


@pytest.fixture
def ledger(db: Database) -> Workload:
    """The generated ledger (≈13k tasks, ≈19k LLM calls), inserted and swept at END."""
    w = build()
    w.insert(db)
    sweep_none(db, window=timedelta(hours=72), now=END)
    return w
