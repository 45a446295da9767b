"""The deploy plan's structured risk summary: JSON schema, validation of the model's answer, and facts
detected in the diff by code (pure; the model's output is untrusted and only ever displayed)."""

from __future__ import annotations

import json
import re
from typing import Any

from bot.deploy.executors import ChangeSet

SCHEMA_NAME = "deploy_plan"
RISK_LEVELS = ("low", "medium", "high")
LIST_FIELDS = ("notable_changes", "migrations", "config_changes", "suggested_checks")
MAX_LIST_ITEMS = 8
MAX_ITEM_CHARS = 240
MAX_TEXT_CHARS = 700

_STRINGS = {"type": "array", "items": {"type": "string"}}
RISK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["risk_level", "summary", *LIST_FIELDS, "rollback_plan"],
    "properties": {
        "risk_level": {"type": "string", "enum": list(RISK_LEVELS)},
        "summary": {"type": "string"},
        "notable_changes": _STRINGS,
        "migrations": _STRINGS,
        "config_changes": _STRINGS,
        "suggested_checks": _STRINGS,
        "rollback_plan": {"type": "string"},
    },
}
RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": RISK_SCHEMA},
}

_MIGRATION = re.compile(r"(^|/)(migrations?|alembic|db/migrate|flyway|liquibase)(/|$)|\.sql$", re.IGNORECASE)
_CONFIG = re.compile(
    r"(^|/)(config|configs|conf|settings|helm|k8s|kubernetes|deploy|terraform)(/|$)"
    r"|\.(ya?ml|toml|ini|cfg|conf|env|properties|tf)$|(^|/)\.env|(^|/)Dockerfile$|settings\.py$",
    re.IGNORECASE,
)


def parse_risk(content: str) -> dict[str, Any] | None:
    """The model's answer as a clean risk summary, or None when it does not fit the schema."""
    try:
        data = json.loads(content or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("risk_level") not in RISK_LEVELS:
        return None
    out: dict[str, Any] = {"risk_level": data["risk_level"]}
    for key in ("summary", "rollback_plan"):
        value = data.get(key)
        if not isinstance(value, str):
            return None
        out[key] = " ".join(value.split())[:MAX_TEXT_CHARS]
    for key in LIST_FIELDS:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return None
        out[key] = [" ".join(v.split())[:MAX_ITEM_CHARS] for v in value if v.strip()][:MAX_LIST_ITEMS]
    return out


def detect(files: list[str]) -> dict[str, list[str]]:
    """Migration and config files in a change set, found by path (facts shown next to the model's view)."""
    return {
        "migrations": [f for f in files if _MIGRATION.search(f)],
        "config": [f for f in files if _CONFIG.search(f) and not _MIGRATION.search(f)],
    }


def describe_changes(changes: ChangeSet, max_commits: int = 200, max_files: int = 300) -> str:
    """The change set as plain text for the prompt (the caller redacts and bounds it)."""
    lines = ["Commits (oldest first):"]
    lines += [f"- {sha[:7]} {message} ({author})" for sha, message, author in changes.commits[:max_commits]]
    if len(changes.commits) > max_commits:
        lines.append(f"- ... and {len(changes.commits) - max_commits} more commits")
    if not changes.commits:
        lines.append("- (none)")
    lines.append("Pull requests:")
    lines += [f"- #{n} {title}" for n, title in changes.pull_requests] or ["- (none found)"]
    if changes.pull_requests_truncated:
        lines.append("- (only the first commits were looked up)")
    lines.append("Files:")
    lines += [
        f"- {status} {name} (+{adds} -{dels})" for name, status, adds, dels in changes.files[:max_files]
    ]
    if len(changes.files) > max_files:
        lines.append(f"- ... and {len(changes.files) - max_files} more files")
    if not changes.files:
        lines.append("- (none)")
    return "\n".join(lines)
