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

from bot.text.tokens import estimate_tokens

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
# Private-use characters that mark, in the text made from HTML, where a client's reply/forward marker was and
# where a blockquote opened and closed; stripped from all input first, so mail cannot forge them.
_MARK = "\ue000"
_BQ_OPEN = "\ue001"
_BQ_CLOSE = "\ue002"
_NO_MARKS = {ord(_MARK): None, ord(_BQ_OPEN): None, ord(_BQ_CLOSE): None}
_ZERO_LENGTH = re.compile(r"[+-]?(?:0+\.?0*|\.0+)(?:px|pt|pc|em|rem|ex|ch|vw|vh|vmin|vmax|%|cm|mm|in|q)?")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


class _TextExtractor:
    """Collects visible text; drops scripts, styles, hidden elements and quoted replies.

    Every step is O(1) amortised: an end tag with no open element of its name is dropped without looking at
    the stack (a per-name count of open elements says so), and one that closes pops what it scans.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.skip_depth = 0  # inside an element whose content is dropped
        # (tag, opened a skip, font-size is zero for the content inside)
        self.stack: list[tuple[str, bool, bool]] = []
        self.open: dict[str, int] = {}  # tag -> how many of the stack's entries have that name
        self.href: str | None = None
        self.link_text: list[str] = []

    def _hidden_here(self) -> bool:
        return bool(self.skip_depth) or (bool(self.stack) and self.stack[-1][2])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if not self._hidden_here() and _QUOTE_IDS.search(
            a.get("id", "")[:200] + " " + a.get("class", "")[:200]
        ):
            # A client's reply/forward marker: whether what follows is history or a forwarded message is
            # decided on the text (``strip_quoted``), where the header after it can be read. A hidden one
            # marks nothing (it cannot hide the visible text after it).
            self.parts.append("\n" + _MARK + "\n")
        if tag in _VOID:
            if tag in ("br", "hr"):
                self.parts.append("\n")
            return
        hidden, size = style_effect(a.get("style", ""))
        skip = tag in _SKIP or hidden or "hidden" in a
        zero_font = self.stack[-1][2] if self.stack else False
        if size is not None:
            zero_font = not size
        self.stack.append((tag, skip, zero_font))
        self.open[tag] = self.open.get(tag, 0) + 1
        if skip:
            self.skip_depth += 1
        if tag == "blockquote":
            self.parts.append("\n" + _BQ_OPEN + "\n")
        if tag in _BLOCK:
            self.parts.append("\n")
        if tag == "a" and not self._hidden_here():
            self.href, self.link_text = a.get("href"), []

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        # Close up to the matching open tag (tolerates unclosed tags in sloppy HTML); every entry looked at
        # is popped, so the work is paid for by the start tags that pushed it.
        if self.open.get(tag):
            while True:
                name, skip, _zero = self.stack.pop()
                self.open[name] -= 1
                if skip:
                    self.skip_depth -= 1
                if name == "blockquote":
                    self.parts.append("\n" + _BQ_CLOSE + "\n")
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
        if self._hidden_here():
            return
        data = data.translate(_NO_MARKS)
        self.parts.append(data)
        if self.href is not None:
            self.link_text.append(data)

    def text(self) -> str:
        """The text, blockquote lines prefixed with ``>`` (at most three levels, so output stays linear)."""
        raw = "".join(self.parts)
        if _BQ_OPEN not in raw:
            return raw
        out, depth = [], 0
        for line in raw.split("\n"):
            if line == _BQ_OPEN:
                depth += 1
            elif line == _BQ_CLOSE:
                depth = max(0, depth - 1)
            else:
                out.append("> " * min(depth, 3) + line if depth and line.strip() else line)
        return "\n".join(out)


def _is_zero(value: str | None) -> bool:
    return value is not None and _ZERO_LENGTH.fullmatch(value) is not None


def style_effect(style: str) -> tuple[bool, bool | None]:
    """What an inline style does to an element's text, by computed effect rather than by substring.

    Returns (hidden, font size visible): hidden by ``display:none``, ``visibility:hidden``, ``opacity:0`` or
    a zero height/width clipped by ``overflow:hidden`` (preheaders); the font size is None when the style
    sets none, False when it is zero (text directly in the element is invisible, a child with its own size
    is not: email builders such as MJML put ``font-size:0px`` on every wrapper), True otherwise.
    """
    decl: dict[str, str] = {}
    for part in style[:2000].split(";"):
        key, sep, value = part.partition(":")
        if sep:
            decl[key.strip().lower()] = value.lower().replace("!important", "").strip()
    clipped = decl.get("overflow", decl.get("overflow-y", "")) in ("hidden", "clip")
    hidden = (
        decl.get("display") == "none"
        or decl.get("visibility") in ("hidden", "collapse")
        or _is_zero(decl.get("opacity"))
        or (clipped and any(_is_zero(decl.get(k)) for k in ("max-height", "height", "max-width", "width")))
    )
    size = decl.get("font-size")
    return hidden, None if size is None else not _is_zero(size)


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


def extract_marked(html: str) -> tuple[str, int]:
    """The visible text of an HTML body with the reply/forward markers ``strip_quoted`` reads, and the
    characters the tokenizer scanned (the measure of its work)."""
    parser = _TextExtractor()
    scanned = tokenize(html[:MAX_HTML_CHARS], parser)
    return normalize(parser.text()), scanned


def extract(html: str, subject: str = "") -> tuple[str, int]:
    """The visible text of an HTML body (quoted history dropped) and the characters the tokenizer scanned."""
    marked, scanned = extract_marked(html)
    return strip_quoted(marked, subject)[0], scanned


def html_to_text(html: str, subject: str = "") -> str:
    """Visible text of an HTML body (quoted replies, hidden elements, scripts and styles dropped; a forwarded
    message kept)."""
    return extract(html, subject)[0]


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize(text: str) -> str:
    """Collapse runs of spaces and blank lines; drop zero-width and control characters and trailing spaces."""
    text = _ZERO_WIDTH.sub("", text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " "))
    text = _CONTROL.sub("", text)  # NUL and friends: invisible to people, rejected by some databases
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# A reply header: what follows is quoted history.
_REPLY_HEADER = re.compile(
    r"^\s*(?:On .{3,200}wrote:|Am .{3,200}schrieb .{0,100}:|Le .{3,200}a écrit\s*:)\s*$"
)
# A forward header: what follows is the forwarded message, the content that matters.
_FORWARD_HEADER = re.compile(
    r"^[\s>]*(?:-{2,}\s*(?:Forwarded message|Weitergeleitete Nachricht|Message transféré|Mensaje reenviado)"
    r"\s*-{2,}|Begin forwarded message:|Début du message réexpédié\s?:|Anfang der weitergeleiteten Nachricht:)",
    re.I,
)
# A separator: Outlook's line or "Original Message" banner, or a client's HTML marker. A reply or a forward,
# told apart by the subject (FW:) or a forward header just after it.
_SEPARATOR = re.compile(
    r"^\s*(?:-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine)\s*-{2,}|_{10,}|"
    + _MARK
    + r")\s*$",
    re.I,
)
_HEADER_FIELD = re.compile(
    r"^[\s>]*\*?(From|Sent|Date|To|Cc|Subject|Reply-To|Von|Gesendet|Datum|An|Betreff|De|Envoyé|Date|À|Objet)"
    r"\s*:\*?\s*(.*)$",
    re.I,
)
_FROM_LINE = re.compile(r"^\s*\*?(From|Von|De)\s*:\*?\s.+")
_DATE_LINE = re.compile(r"^\s*\*?(Sent|Date|Gesendet|Datum|Envoyé)\s*:\*?\s.+")
_FORWARD_SUBJECT = re.compile(r"^\s*(?:\[[^\]]{0,40}\]\s*)?(?:fwd?|wg|tr|rv|enc|vs|doorst)\s*:", re.I)
_KEEP_FIELDS = {"from": "From", "von": "From", "de": "From", "sent": "Sent", "date": "Date",
                "gesendet": "Sent", "datum": "Date", "envoyé": "Sent", "subject": "Subject",
                "betreff": "Subject", "objet": "Subject"}  # fmt: skip
MAX_FORWARDS = 5  # nested forwards unwrapped; deeper ones are read as plain text


def _quote_depth(line: str) -> int:
    depth = 0
    for ch in line:
        if ch == ">":
            depth += 1
        elif ch not in " \t":
            break
    return depth


def _unquote(line: str, levels: int) -> str:
    for _ in range(levels):
        stripped = line.lstrip(" \t")
        if not stripped.startswith(">"):
            break
        line = stripped[1:]
        if line.startswith(" "):
            line = line[1:]
    return line


def _find_header(lines: list[str], start: int) -> tuple[int, str]:
    """The first header at or after ``start``: (index, "forward" | "reply" | "separator"), or (-1, "")."""
    for i in range(start, len(lines)):
        line = lines[i]
        if _FORWARD_HEADER.match(line):
            return i, "forward"
        if line.lstrip().startswith(">"):
            continue
        if _REPLY_HEADER.match(line):
            return i, "reply"
        if _SEPARATOR.match(line) or (
            _FROM_LINE.match(line) and i + 1 < len(lines) and _DATE_LINE.match(lines[i + 1])
        ):
            # A forward header among the next few lines makes it a forward whatever the subject says.
            seen = 0
            for j in range(i + 1, min(len(lines), i + 8)):
                if _FORWARD_HEADER.match(lines[j]):
                    return j, "forward"
                if lines[j].strip() and lines[j] != _MARK:
                    seen += 1
                    if seen >= 2:
                        break
            return i, "separator"
    return -1, ""


def _header_block(lines: list[str], start: int, levels: int) -> tuple[int, str, str]:
    """Read a forwarded message's header fields from ``start``: (index after them, one line, its subject)."""
    fields: list[str] = []
    subject = ""
    i = start
    while i < len(lines):
        line = _unquote(lines[i], levels)
        if not line.strip() or line.strip() == _MARK or _SEPARATOR.match(line):
            if fields:
                break
            i += 1
            continue
        m = _HEADER_FIELD.match(line)
        if not m:
            break
        label = _KEEP_FIELDS.get(m.group(1).lower())
        if label:
            fields.append(f"{label}: {m.group(2).strip()}")
            if label == "Subject":
                subject = m.group(2)
        i += 1
    return i, "Forwarded message: " + "; ".join(fields), subject


def _inline_answers(lines: list[str]) -> list[str]:
    """Under a reply header: answers written between the quoted lines, each after the line it answers.

    Only when the history is quoted with ``>``; history that is not (Outlook's) is all old."""
    first = next((line for line in lines if line.strip()), "")
    if not first.lstrip().startswith(">"):
        return []
    out: list[str] = []
    last_quoted: str | None = None
    answering = False
    for line in lines:
        if line.lstrip().startswith(">"):
            last_quoted, answering = line, False
            continue
        if not line.strip():
            answering = False
            continue
        if _REPLY_HEADER.match(line) or _SEPARATOR.match(line) or _FORWARD_HEADER.match(line):
            break
        if not answering and last_quoted is not None:
            out.append("")
            out.append(last_quoted.strip())
        out.append(line)
        answering, last_quoted = True, None
    return out


def strip_quoted(text: str, subject: str = "") -> tuple[str, bool]:
    """The new part of a message: quoted history cut, forwarded messages kept. Returns (text, changed).

    - a reply header ("On … wrote:") or a separator in a reply starts history: cut, except answers written
      between its ``>`` lines (inline replies);
    - a forward header (Gmail, Apple Mail, Outlook's separator or marker under a FW: subject) keeps the
      forwarded message: its header as one line, its body as content, older history inside it cut the same way;
    - other ``>`` lines are dropped.
    One pass over the lines (forwards unwrap at most ``MAX_FORWARDS`` levels).
    """
    lines = text.split("\n")
    out: list[str] = []
    forward_subject = bool(_FORWARD_SUBJECT.match(subject or ""))
    forwards = 0
    i = 0
    while True:
        h, kind = _find_header(lines, i) if forwards < MAX_FORWARDS else (-1, "")
        end = h if h >= 0 else len(lines)
        part = [line for line in lines[i:end] if not line.lstrip().startswith(">") and line != _MARK]
        if h < 0:
            out.extend(part)
            break
        if kind == "separator" and not forward_subject:
            kind = "reply"
        if kind == "reply":
            out.extend(part)
            out.extend(_inline_answers(lines[h + 1 :]))
            break
        forwards += 1
        levels = min(_quote_depth(lines[h]), 3)  # as deep as the HTML prefix goes; bounded work per line
        # the forwarder's own note, without their signature
        out.extend(strip_signature("\n".join(part))[0].split("\n"))
        start = h + 1 if kind == "forward" or _SEPARATOR.match(lines[h]) else h
        i, header, inner_subject = _header_block(lines, start, levels)
        out.extend(["", header, ""])
        if levels:
            lines[i:] = [
                _unquote(line, levels) if _quote_depth(line) >= levels else line for line in lines[i:]
            ]
        forward_subject = bool(_FORWARD_SUBJECT.match(inner_subject))
    result = re.sub(r"\n{3,}", "\n\n", "\n".join(out).translate(_NO_MARKS)).strip()
    return result, result != text.strip()


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


_PS = re.compile(r"^\s*P\.?\s?P?\.?\s?S\.?(?:\s|:|-|$)", re.I)


def strip_signature(text: str) -> tuple[str, bool]:
    """Drop a signature: after ``-- ``, a sign-off near the end, device lines and legal disclaimers; a P.S.
    after the sign-off is the sender's text and stays."""
    original = text
    lines = text.split("\n")
    postscript: list[str] = []
    for k in range(len(lines) - 1, max(-1, len(lines) - 16), -1):
        if _PS.match(lines[k]):
            end = k + 1
            while end < len(lines) and lines[end].strip():
                end += 1
            postscript, lines = lines[k:end], lines[:k] + lines[end:]
            break
    text = "\n".join(lines)
    before = text.strip()
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
    if postscript and text == before:
        return original.strip(), False  # no signature: the P.S. stays where it was
    if postscript:
        text = (text + "\n\n" + "\n".join(postscript).strip()).strip()
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


CUT_MARK = "[… middle cut …]"
_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-zé]*\.?"
# Lines worth keeping from a long email's middle: dates, amounts, questions, requests.
_SALIENT = re.compile(
    r"\?|[$€£¥₹]\s?\d|\d\s?(?:[$€£¥₹%]|(?:usd|eur|gbp|chf|jpy|k|m)\b)|\b(?:usd|eur|gbp|chf|jpy)\s?\d"
    r"|\b\d{1,2}[./-]\d{1,2}(?:[./-]\d{2,4})?\b|\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}:\d{2}\b"
    rf"|\b{_MONTHS}\s+\d{{1,2}}\b|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTHS}"
    r"|\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|tomorrow|tonight|eod|cob|"
    r"deadline|due|overdue|asap|urgent|by end of|no later than)\b"
    r"|^\W*(?:please|kindly|can you|could you|would you|will you|let me know|make sure|remember|"
    r"don't forget|do not forget|note:|action|reminder|rsvp|reply|confirm|approve|sign|submit|register|"
    r"pay|send|review|decide|bitte|merci de|veuillez)\b",
    re.I,
)


def is_salient(line: str) -> bool:
    """Whether a line holds a date, an amount, a question or a request."""
    return _SALIENT.search(line) is not None


def clip_middle(text: str, budget_tokens: int) -> tuple[str, bool]:
    """Cut a body to ``budget_tokens`` keeping its head, its tail and, from the middle, the lines with dates,
    amounts, questions or requests; each gap becomes a ``CUT_MARK`` line. Returns (text, cut).

    Linear: lines longer than a small piece of the budget are split, each piece is sized once.
    """
    if estimate_tokens(text) <= budget_tokens:
        return text, False
    width = max(20, budget_tokens // 3)
    units: list[str] = []
    for line in text.split("\n"):
        while len(line) > width:
            units.append(line[:width])
            line = line[width:]
        units.append(line)
    cost = [estimate_tokens(u) + 1 for u in units]
    mark = estimate_tokens(CUT_MARK) + 1
    room = budget_tokens - 2 * mark  # a gap after the head and one before the tail
    keep = [False] * len(units)
    used, head = 0, 0
    while head < len(units) and used + cost[head] <= room * 0.45:
        keep[head], used = True, used + cost[head]
        head += 1
    tail = len(units) - 1
    while tail > head and used + cost[tail] <= room * 0.7:
        keep[tail], used = True, used + cost[tail]
        tail -= 1
    for k in range(head, tail + 1):
        if used + cost[k] + mark <= room and units[k].strip() and is_salient(units[k]):
            keep[k], used = True, used + cost[k] + mark  # a kept middle line may open one more gap
    out: list[str] = []
    for unit, kept in zip(units, keep, strict=True):
        if kept:
            out.append(unit)
        elif not out or out[-1] != CUT_MARK:
            out.append(CUT_MARK)
    return "\n".join(out), True


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
    text = text[:MAX_TEXT_CHARS].translate(_NO_MARKS)
    if looks_like_mime(text):
        text, mime_notes = mime_to_text(text)
        notes.extend(mime_notes)
    elif body_html:
        # Our own conversion drops hidden text and quoted blocks that a server-made text body keeps.
        text = extract_marked(body_html)[0]
        if not (body_text or "").strip():
            notes.append("HTML only")
    text = normalize(text)
    text, quoted = strip_quoted(text, subject or "")
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
    clipped, cut = clip_middle(text, budget_tokens)
    if cut:
        notes.append(
            f"middle cut to {budget_tokens} tokens: head, tail and lines with dates, amounts, questions or "
            "requests kept"
        )
    subject = normalize(subject or "")[:300]
    return PreparedEmail(
        subject, clipped, raw_tokens, estimate_tokens(subject) + estimate_tokens(clipped), notes
    )


def same_reply(a: str | None, b: str | None) -> bool:
    """Whether two reply bodies say the same thing (quoted history, whitespace and case ignored)."""

    def core(t: str | None) -> str:
        return " ".join(strip_quoted(normalize(t or ""))[0].split()).lower()

    return core(a) == core(b)
