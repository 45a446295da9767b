"""Prompt templates as files: ``prompts/<name>.md``, versioned by content hash, rendered strictly.

A template has a system part and a user part separated by a line ``=== user ===``. Placeholders are
``${name}``; rendering fails when a value is missing or unused names are passed (typos hide bugs).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bot.errors import ClawbackError

_DIR = Path(__file__).parent
_SPLIT = "\n=== user ===\n"
_PLACEHOLDER = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")


class PromptError(ClawbackError):
    """A template is missing, malformed, or rendered with the wrong values."""


@dataclass(frozen=True)
class Template:
    """A loaded template: name, version (content hash), its two parts and the names it needs."""

    name: str
    version: str
    system: str
    user: str
    fields: frozenset[str]


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered prompt ready for the chat API; name and version go into the ledger."""

    name: str
    version: str
    system: str
    user: str

    def messages(self) -> list[dict[str, str]]:
        """The chat messages for this prompt."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


@lru_cache(maxsize=64)
def load(name: str) -> Template:
    """Load ``prompts/<name>.md`` (cached: templates are immutable files shipped with the code)."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise PromptError(f"bad prompt name {name!r}")
    path = _DIR / f"{name}.md"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"no prompt named {name!r} (looked for {path})") from None
    if _SPLIT not in text:
        raise PromptError(f"prompt {name!r} lacks the '=== user ===' separator")
    system, user = text.split(_SPLIT, 1)
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    fields = frozenset(_PLACEHOLDER.findall(text))
    return Template(name, version, system.strip(), user.strip(), fields)


def render(name: str, **values: object) -> RenderedPrompt:
    """Render a template; every placeholder must be given and nothing else."""
    tpl = load(name)
    missing = sorted(tpl.fields - values.keys())
    extra = sorted(values.keys() - tpl.fields)
    if missing or extra:
        raise PromptError(f"prompt {name!r}: missing values {missing}, unexpected values {extra}")

    def fill(part: str) -> str:
        # One pass: values are never re-scanned, so data cannot inject placeholders.
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), part)

    return RenderedPrompt(tpl.name, tpl.version, fill(tpl.system), fill(tpl.user))
