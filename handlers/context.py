"""What every listener module receives from the app factory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.ingress import IngressDeps
from bot.ops.metrics import IngressMetrics


@dataclass
class HandlerContext:
    """Dependencies of the Slack listeners: ingress services and metrics."""

    ingress: IngressDeps
    metrics: IngressMetrics | None = None
    settings: Any | None = None  # bot.settings.Settings, for listeners that need configuration
