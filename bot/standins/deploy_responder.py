"""A deterministic answer to the ``deploy_plan`` structured-output request, for the LLM stand-in.

Register it with ``llm.register_responder("deploy_plan", deploy_plan_responder)`` (tests, ``clawback
demo``). It reads the change set from the prompt and applies fixed rules, so plans are reproducible.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bot.deploy.plan import SCHEMA_NAME, detect

_MARKER = re.compile(r"<<[0-9a-f]{16}>>")


def _user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content") or ""
            return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
    return ""


def _section(text: str, title: str) -> list[str]:
    """The ``- `` lines under ``title:`` up to the next heading."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith(title):
            inside = True
            continue
        if inside and not line.startswith("- "):
            break
        if inside:
            lines.append(line[2:].strip())
    return [line for line in lines if not line.startswith("(")]


def deploy_plan_responder(messages: list[dict[str, Any]], request: dict[str, Any]) -> str:
    """Risk summary by rules: migrations → high, config or > 10 files → medium, else low."""
    text = _user_text(messages)
    base = re.search(r"^Currently deployed: (.+)$", text, re.MULTILINE)
    parts = _MARKER.split(text)
    body = parts[-2] if len(parts) >= 3 else text  # the data between the last two markers
    commits = _section(body, "Commits")
    prs = _section(body, "Pull requests")
    files = [re.sub(r"^\w+ (.+) \(\+\d+ -\d+\)$", r"\1", f) for f in _section(body, "Files")]
    found = detect(files)
    level = "high" if found["migrations"] else "medium" if found["config"] or len(files) > 10 else "low"
    notable = [re.sub(r"^#(\d+) ", r"PR #\1: ", p) for p in prs][:5] or [
        c.split(" ", 1)[-1] for c in commits
    ][:5]
    answer = {
        "risk_level": level,
        "summary": f"{len(commits)} commit(s) touching {len(files)} file(s); risk is {level} by the rules.",
        "notable_changes": notable,
        "migrations": [f"{f} changes the schema" for f in found["migrations"]],
        "config_changes": [f"{f} changed" for f in found["config"]],
        "suggested_checks": ["Watch the error rate and latency for 15 minutes", "Run the smoke tests"],
        "rollback_plan": f"Roll back to {base.group(1) if base else 'the previous version'} with rollback"
        + ("; the migration must be reverted first." if found["migrations"] else "."),
    }
    return json.dumps(answer)


def register(llm: Any) -> None:
    """Register the responder on an ``LLMStandIn``."""
    llm.register_responder(SCHEMA_NAME, deploy_plan_responder)
