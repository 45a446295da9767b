"""Imports every model module so that ``Base.metadata`` knows all tables (migrations, tests)."""

from bot.db import (  # noqa: F401
    Action,
    AuditCheckpoint,
    AuditEntry,
    AuditHead,
    AutonomyChange,
    AutonomyDecision,
    AutonomyLevel,
    AutonomyOffer,
    Base,
    LLMCall,
    Outcome,
    Pause,
    Task,
)
from bot.deploy.models import DeployApproval, DeployHistory, DeployLock, DeployRequest  # noqa: F401,E402
from bot.mail.models import MailItem, MailSyncState  # noqa: F401,E402
from bot.measure.facts import MeasureState, TaskFact  # noqa: F401,E402  (measurement)
