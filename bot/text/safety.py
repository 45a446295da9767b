"""Output hygiene for untrusted model text before it is posted (pure).

The model may be compromised: it must not create links that were not in its sources, ping channels,
or mention people who were not in the conversation.
"""

from __future__ import annotations

import re

_URL = re.compile(r"https?://[^\s<>|`\"')\]]+", re.IGNORECASE)
_SLACK_LINK = re.compile(r"<((?:https?|mailto|ftp)[^|>]*)(?:\|([^>]*))?>", re.IGNORECASE)
_SPECIAL = re.compile(r"<!(channel|here|everyone|subteam\^[A-Z0-9]+)[^>]*>", re.IGNORECASE)
_USER = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_BARE_SPECIAL = re.compile(r"(?<![\w`])@(channel|here|everyone)\b", re.IGNORECASE)


def urls_in(*texts: str) -> set[str]:
    """Every http(s) URL appearing in ``texts`` (normalised without trailing punctuation)."""
    found: set[str] = set()
    for t in texts:
        for m in _URL.finditer(t or ""):
            found.add(m.group(0).rstrip(".,;:!?"))
    return found


def _defang(url: str) -> str:
    return "`" + url.replace("`", "").replace("://", "[:]//", 1) + "`"


def sanitize(text: str, *, allowed_urls: set[str], allowed_users: set[str]) -> tuple[str, int]:
    """Neutralise links not in the sources, mass mentions and unknown user mentions; returns (text, changes)."""
    changes = 0

    def slack_link(m: re.Match[str]) -> str:
        nonlocal changes
        url, label = m.group(1), m.group(2)
        if url.rstrip(".,;:!?") in allowed_urls:
            return m.group(0)
        changes += 1
        return f"{label} ({_defang(url)})" if label else _defang(url)

    text = _SLACK_LINK.sub(slack_link, text)

    def bare(m: re.Match[str]) -> str:
        nonlocal changes
        url = m.group(0).rstrip(".,;:!?")
        if url in allowed_urls:
            return m.group(0)
        changes += 1
        return _defang(url) + m.group(0)[len(url) :]

    # Only URLs outside code spans and outside kept <...> links are rewritten.
    parts = re.split(r"(`[^`]*`|<[^>]*>)", text)
    text = "".join(p if p.startswith(("`", "<")) else _URL.sub(bare, p) for p in parts)

    def special(m: re.Match[str]) -> str:
        nonlocal changes
        changes += 1
        return "@\u200b" + m.group(1).split("^")[0]

    text = _SPECIAL.sub(special, text)
    text = _BARE_SPECIAL.sub(special, text)

    def user(m: re.Match[str]) -> str:
        nonlocal changes
        if m.group(1) in allowed_users:
            return m.group(0)
        changes += 1
        return "@someone"

    return _USER.sub(user, text), changes


def split_text(text: str, limit: int = 2900) -> list[str]:
    """Split text into chunks of at most ``limit`` characters, preferring paragraph and line breaks."""
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n\n", 0, limit)
        if cut < limit // 2:
            cut = rest.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = rest.rfind(" ", 0, limit)
        if cut <= 0:
            cut = limit
        chunks.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not chunks:
        chunks.append(rest)
    return chunks
