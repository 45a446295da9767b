"""Imports every model module so that ``Base.metadata`` knows all tables (migrations, tests)."""

from bot.db import (  # noqa: F401
    Action,
    AuditCheckpoint,
    AuditEntry,
    AuditHead,
    Base,
    LLMCall,
    Outcome,
    Pause,
    Task,
)
