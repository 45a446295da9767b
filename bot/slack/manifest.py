"""The Slack app manifest shipped with Clawback (``bot/slack/slack_manifest.yaml``): the bot scopes it asks for.

Read with a few lines of parsing rather than a YAML library: the file is ours and its shape is fixed.
"""

from __future__ import annotations

from pathlib import Path

MANIFEST = Path(__file__).with_name("slack_manifest.yaml")


def manifest_bot_scopes(text: str | None = None) -> list[str]:
    """The ``oauth_config.scopes.bot`` list of the manifest (``text``, or the shipped file), in order."""
    lines = (MANIFEST.read_text(encoding="utf-8") if text is None else text).splitlines()
    path: list[tuple[int, str]] = []  # (indent, key) of the mapping keys above the current line
    scopes: list[str] = []
    for raw in lines:
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        item = line.strip()
        while path and path[-1][0] >= indent and not item.startswith("- "):
            path.pop()
        keys = [k for _, k in path]
        if item.startswith("- "):
            if keys[-3:] == ["oauth_config", "scopes", "bot"]:
                scopes.append(item[2:].strip())
            continue
        if item.endswith(":"):
            path.append((indent, item[:-1].strip()))
    return scopes
