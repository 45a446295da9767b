"""Email text for the model, token-thrifty and pure: HTML to plain text, quoted history and signatures
stripped, raw MIME and unknown charsets decoded without failing, long bodies cut to a token budget.

Nothing here raises on bad input: the worst case is an empty text with a note saying why.
"""

from __future__ import annotations

import codecs
import email
import email.policy
import re
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urlparse

from bot.tokens import clip_to_tokens, estimate_tokens

# Bounds applied before any parsing, so a 10 MB body costs milliseconds, not seconds.
MAX_HTML_CHARS = 400_000
MAX_TEXT_CHARS = 200_000

_BLOCK = {
    "p", "div", "br", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
    "section", "article", "header", "footer", "hr", "blockquote", "pre", "center",
}  # fmt: skip
_SKIP = {"script", "style", "head", "title", "noscript", "template", "svg", "object", "iframe"}
_VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source", "embed"}
_QUOTE_IDS = re.compile(r"divRplyFwdMsg|appendonsend|gmail_quote|yahoo_quoted|moz-cite-prefix", re.I)
_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0|max-height\s*:\s*0", re.I)
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


class _TextExtractor:
    """Collects visible text; drops scripts, styles, hidden elements and quoted replies.

    Every step is O(1) amortised: an end tag with no open element of its name is dropped without looking at
    the stack (a per-name count of open elements says so), and one that closes pops what it scans.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.skip_depth = 0  # inside an element whose content is dropped
        self.stack: list[tuple[str, bool]] = []  # (tag, opened a skip)
        self.open: dict[str, int] = {}  # tag -> how many of the stack's entries have that name
        self.quoted = False  # everything after a reply marker is quoted history
        self.href: str | None = None
        self.link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if _QUOTE_IDS.search(a.get("id", "")[:200] + " " + a.get("class", "")[:200]):
            self.quoted = True
        if tag in _VOID:
            if tag in ("br", "hr"):
                self.parts.append("\n")
            return
        skip = tag in _SKIP or tag == "blockquote" or bool(_HIDDEN.search(a.get("style", "")[:2000]))
        skip = skip or "hidden" in a
        self.stack.append((tag, skip))
        self.open[tag] = self.open.get(tag, 0) + 1
        if skip:
            self.skip_depth += 1
        if tag in _BLOCK:
            self.parts.append("\n")
        if tag == "a" and not self.skip_depth:
            self.href, self.link_text = a.get("href"), []

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        # Close up to the matching open tag (tolerates unclosed tags in sloppy HTML); every entry looked at
        # is popped, so the work is paid for by the start tags that pushed it.
        if self.open.get(tag):
            while True:
                name, skip = self.stack.pop()
                self.open[name] -= 1
                if skip:
                    self.skip_depth -= 1
                if name == tag:
                    break
        if tag == "a" and self.href is not None:
            self._close_link()
        if tag in _BLOCK:
            self.parts.append("\n")

    def _close_link(self) -> None:
        text = "".join(self.link_text).strip()
        host = urlparse(self.href or "").hostname or ""
        if host and host.lower() not in text.lower():
            # The link target matters for phishing decisions; the host is enough and cheap.
            self.parts.append(f" [{host}]")
        self.href, self.link_text = None, []

    def handle_data(self, data: str) -> None:
        if self.skip_depth or self.quoted:
            return
        self.parts.append(data)
        if self.href is not None:
            self.link_text.append(data)

    def text(self) -> str:
        return "".join(self.parts)


_RAW_TEXT = ("script", "style")  # their content is text up to the matching end tag, never markup
_TAG_NAME = re.compile(r"(/?)([A-Za-z][^\t\n\f\r />]*)")
_ATTR = re.compile(
    r"""([^\t\n\f\r />=][^\t\n\f\r />=]*)(?:[\t\n\f\r ]*=[\t\n\f\r ]*("[^"]*"|'[^']*'|[^\t\n\f\r >]*))?"""
)
MAX_TAG_CHARS = 4_000  # attributes past this many characters of one tag are ignored


def tokenize(html: str, sink: _TextExtractor) -> int:
    """Feed ``html``'s start tags, end tags and text to ``sink`` in one pass; returns the characters scanned.

    Linear by construction: every search starts where the previous one ended, or reuses its answer, so no
    character is scanned more than a fixed number of times whatever the input (unclosed ``<``, ``</``,
    ``<!``, comments and quotes included). A tag ends at its first ``>``.
    """
    n = len(html)
    lower: str | None = None
    scanned = 0
    pos = 0
    next_gt = -1  # the first ">" at or after the current "<" (valid while it is >= that "<")
    while pos < n:
        lt = html.find("<", pos)
        scanned += (lt if lt >= 0 else n) - pos
        if lt < 0:
            sink.handle_data(unescape(html[pos:]))
            break
        if lt > pos:
            sink.handle_data(unescape(html[pos:lt]))
        if html.startswith("<!--", lt):
            end = html.find("-->", lt + 4)
            scanned += (end if end >= 0 else n) - lt
            if end < 0:
                break  # an unterminated comment hides the rest, as browsers do
            pos = end + 3
            continue
        if next_gt < lt:
            next_gt = html.find(">", lt + 1)
            scanned += (next_gt if next_gt >= 0 else n) - lt
            if next_gt < 0:
                next_gt = n  # no ">" anywhere after: no more tags
        if next_gt >= n:
            sink.handle_data(unescape(html[lt:]))
            break
        gt = next_gt
        head = html[lt + 1 : min(gt, lt + 1 + MAX_TAG_CHARS)]
        scanned += len(head)
        m = _TAG_NAME.match(head)
        if m is None:
            if head[:1] in ("!", "?", "/"):
                pos = gt + 1  # a declaration, processing instruction or bogus comment: dropped
            else:
                sink.handle_data("<")  # a lone "<" is text
                pos = lt + 1
            continue
        pos = gt + 1
        tag = m.group(2).lower()
        if m.group(1):
            sink.handle_endtag(tag)
            continue
        attrs: list[tuple[str, str | None]] = []
        for am in _ATTR.finditer(head, m.end()):
            value = am.group(2)
            if value is not None:
                if value[:1] in ("'", '"'):
                    value = value[1:-1]
                value = unescape(value)
            attrs.append((am.group(1).lower(), value))
        sink.handle_starttag(tag, attrs)
        if tag in _RAW_TEXT:
            if lower is None:
                lower = html.lower()
            end = lower.find("</" + tag, pos)
            scanned += (end if end >= 0 else n) - pos
            if end < 0:
                break  # an unclosed script or style swallows the rest
            pos = end  # its end tag comes next; the content is never shown
    return scanned


def extract(html: str) -> tuple[str, int]:
    """The visible text of an HTML body and the characters the tokenizer scanned (the measure of its work)."""
    parser = _TextExtractor()
    scanned = tokenize(html[:MAX_HTML_CHARS], parser)
    return normalize(parser.text()), scanned


def html_to_text(html: str) -> str:
    """Visible text of an HTML body (quoted replies, hidden elements, scripts and styles dropped)."""
    return extract(html)[0]


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize(text: str) -> str:
    """Collapse runs of spaces and blank lines; drop zero-width and control characters and trailing spaces."""
    text = _ZERO_WIDTH.sub("", text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " "))
    text = _CONTROL.sub("", text)  # NUL and friends: invisible to people, rejected by some databases
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_QUOTE_HEADERS = [
    re.compile(r"^\s*On .{3,200}wrote:\s*$", re.M),
    re.compile(r"^\s*Am .{3,200}schrieb .{0,100}:\s*$", re.M),
    re.compile(r"^\s*Le .{3,200}a écrit\s*:\s*$", re.M),
    re.compile(
        r"^\s*-{2,}\s*(Original Message|Forwarded message|Ursprüngliche Nachricht)\s*-{2,}", re.M | re.I
    ),
    re.compile(r"^\s*_{10,}\s*$", re.M),
    re.compile(r"^\s*From:\s.+\n\s*(Sent|Date):\s.+", re.M),
]
_SIGNATURE_DELIMITER = re.compile(r"^-- ?$", re.M)
_SIGN_OFF = re.compile(
    r"^\s*(best( regards)?|kind regards|regards|many thanks|thanks( again)?|thank you|cheers|sincerely|"
    r"br|mit freundlichen grüßen|viele grüße|cordialement)\s*[,.!]?\s*$",
    re.I,
)
_DEVICE = re.compile(r"^\s*(Sent from my .{2,40}|Get Outlook for .{2,20})\s*$", re.M | re.I)
_DISCLAIMER = re.compile(
    r"^\s*(CONFIDENTIALITY NOTICE|DISCLAIMER|This (e-?mail|message) (and any attachments )?(is|are|may be) "
    r"(confidential|intended))",
    re.M | re.I,
)


def collapse_repeats(text: str, keep: int = 2) -> tuple[str, int]:
    """Fold runs of lines that differ only in digits (logs, tables) to ``keep`` lines and a count."""
    out: list[str] = []
    run_shape, run_len, folded = None, 0, 0

    def flush() -> None:
        nonlocal folded
        if run_len > keep:
            out.append(f"(… {run_len - keep} more similar lines)")
            folded += run_len - keep

    for line in text.split("\n"):
        shape = re.sub(r"\d+", "#", line.strip())
        if shape and shape == run_shape:
            run_len += 1
            if run_len <= keep:
                out.append(line)
            continue
        flush()
        run_shape, run_len = shape, 1
        out.append(line)
    flush()
    return "\n".join(out), folded


def strip_quoted(text: str) -> tuple[str, bool]:
    """The newest part of a reply: cut at the first reply header; drop ``>`` lines. Returns (text, cut)."""
    cut = len(text)
    for rx in _QUOTE_HEADERS:
        m = rx.search(text)
        if m and m.start() < cut:
            cut = m.start()
    kept = text[:cut]
    lines = kept.split("\n")
    unquoted = [line for line in lines if not line.lstrip().startswith(">")]
    changed = cut < len(text) or len(unquoted) != len(lines)
    return "\n".join(unquoted).strip(), changed


def strip_signature(text: str) -> tuple[str, bool]:
    """Drop a signature: after ``-- ``, a sign-off near the end, device lines and legal disclaimers."""
    original = text
    m = _SIGNATURE_DELIMITER.search(text)
    if m:
        text = text[: m.start()]
    m = _DISCLAIMER.search(text)
    if m:
        text = text[: m.start()]
    text = _DEVICE.sub("", text)
    lines = text.rstrip().split("\n")
    # A sign-off in the last lines starts the signature (name, title, phone...).
    for i in range(len(lines) - 1, max(-1, len(lines) - 9), -1):
        if _SIGN_OFF.match(lines[i]) and i > 0:
            lines = lines[:i]
            break
    text = "\n".join(lines).strip()
    return text, text != original.strip()


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode with the declared charset; unknown or wrong charsets fall back without failing.

    Returns (text, note) where note says what fallback was used.
    """
    name = (charset or "").strip().strip('"').lower() or "utf-8"
    try:
        codecs.lookup(name)
    except (LookupError, ValueError):  # ValueError: a charset name with a NUL in it
        return _guess(data), f"unknown charset {charset!r}"
    try:
        return data.decode(name), None
    except (UnicodeDecodeError, ValueError):
        return _guess(data), f"bytes did not match charset {charset!r}"


def _guess(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        best = from_bytes(data[:200_000]).best()
        if best is not None:
            return str(best)
    except Exception:  # charset detection is best effort
        pass
    return data.decode("latin-1")


_MIME_HEAD = re.compile(r"\A(?:[A-Za-z-]+:[^\n]*\n(?:[ \t][^\n]*\n)*){1,40}\n", re.M)


def looks_like_mime(text: str) -> bool:
    """True when a body is a raw MIME message (headers, blank line, then a MIME structure)."""
    head = text[:4000].replace("\r\n", "\n")
    return bool(_MIME_HEAD.match(head)) and bool(re.search(r"(?im)^content-type:\s*\S+/", head))


def mime_to_text(raw: str) -> tuple[str, list[str]]:
    """The readable text of a raw MIME message, tolerating broken structure and charsets."""
    notes: list[str] = []
    try:
        msg = email.message_from_string(raw[: MAX_TEXT_CHARS * 2], policy=email.policy.compat32)
    except Exception:
        return raw, ["unparseable MIME kept as text"]
    if msg.defects:
        notes.append("malformed MIME: " + ", ".join(sorted({type(d).__name__ for d in msg.defects}))[:200])
    plain: list[str] = []
    html: list[str] = []
    for part in msg.walk() if msg.is_multipart() else [msg]:
        if part.is_multipart():
            continue
        ctype = (part.get_content_type() or "text/plain").lower()
        if part.get_filename() or not ctype.startswith("text/"):
            continue
        try:
            payload = part.get_payload(decode=True)
        except Exception:
            payload = None
        if payload is None:
            payload = str(part.get_payload() or "").encode("utf-8", "replace")
        text, note = decode_bytes(payload, part.get_content_charset())
        if note:
            notes.append(note)
        (html if ctype == "text/html" else plain).append(text)
    if plain:
        return "\n\n".join(plain), notes
    if html:
        return html_to_text("\n".join(html)), notes
    return "", notes + ["no text part"]


@dataclass
class PreparedEmail:
    """What the model sees of one email, with the measurements that make token thrift visible."""

    subject: str
    text: str
    raw_tokens: int  # estimate of the raw content (HTML or text, everything)
    body_tokens: int  # estimate of ``text``
    notes: list[str] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        """Nothing to triage on: no subject and no text."""
        return not self.subject.strip() and not self.text.strip()


def prepare(
    subject: str,
    body_text: str | None,
    body_html: str | None,
    *,
    budget_tokens: int,
    attachments: bool = False,
) -> PreparedEmail:
    """Turn an email's raw bodies into the short plain text the model needs."""
    notes: list[str] = []
    raw = body_html if body_html else (body_text or "")
    raw_tokens = estimate_tokens(subject or "") + estimate_tokens(raw or "")
    text = body_text or ""
    if len(text) > MAX_TEXT_CHARS or len(raw) > MAX_HTML_CHARS:
        notes.append(f"body of {max(len(text), len(raw)):,} characters read only in part")
    text = text[:MAX_TEXT_CHARS]
    if looks_like_mime(text):
        text, mime_notes = mime_to_text(text)
        notes.extend(mime_notes)
    elif body_html:
        # Our own conversion drops hidden text and quoted blocks that a server-made text body keeps.
        text = html_to_text(body_html)
        if not (body_text or "").strip():
            notes.append("HTML only")
    text = normalize(text)
    text, quoted = strip_quoted(text)
    if quoted:
        notes.append("quoted history removed")
    text, signed = strip_signature(text)
    if signed:
        notes.append("signature removed")
    text, folded = collapse_repeats(text)
    if folded:
        notes.append(f"{folded} repetitive lines folded")
    if attachments and not text:
        notes.append("attachments only")
    clipped = clip_to_tokens(text, budget_tokens)
    if clipped != text:
        notes.append(f"cut to {budget_tokens} tokens")
    subject = normalize(subject or "")[:300]
    return PreparedEmail(
        subject, clipped, raw_tokens, estimate_tokens(subject) + estimate_tokens(clipped), notes
    )


def same_reply(a: str | None, b: str | None) -> bool:
    """Whether two reply bodies say the same thing (quoted history, whitespace and case ignored)."""

    def core(t: str | None) -> str:
        return " ".join(strip_quoted(normalize(t or ""))[0].split()).lower()

    return core(a) == core(b)
