"""Redaction of secrets and personal numbers before text reaches the model or the ledger (pure).

Every detector is listed once, in ``DETECTORS``, with a test per format in ``tests/unit/test_redact.py``.
A detector is a regex; where it has a group named ``secret`` (or ``secret_*``), only that part is replaced
and the label around it is kept (``password: [REDACTED:password]``) so the sentence still reads; a
``check`` rejects look-alikes (Luhn for cards, mod-97 for IBANs, the invalid ranges for SSNs, character
classes and entropy for bare AWS secret keys, so a 40-hex git SHA stays). Placeholders keep text readable
(``[REDACTED:aws_access_key]``); callers store the counts.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

PLACEHOLDER = "[REDACTED:{name}]"
_B64 = "A-Za-z0-9/+"
# a value after a label: quoted (any characters but the quote) or bare (up to whitespace or punctuation)
_VALUE = (
    r"""(?:"(?P<secret_dq>(?!\[REDACTED)[^"\n]{1,512})"|'(?P<secret_sq>(?!\[REDACTED)[^'\n]{1,512})'"""
    r"""|(?P<secret>(?!\[REDACTED)[^\s"',;<>\[\]{}]{1,512}))"""
)
_SEP = r"""["']?\s*[:=]\s*"""


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def is_card_number(text: str) -> bool:
    """13–19 digits (spaces or dashes between) passing the Luhn check."""
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and _luhn_ok(digits)


def is_iban(text: str) -> bool:
    """An IBAN of plausible length whose ISO 13616 mod-97 checksum is 1."""
    s = re.sub(r"\s", "", text).upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def is_ssn(text: str) -> bool:
    """A US SSN outside the never-issued ranges (area 000, 666, 900–999; group 00; serial 0000)."""
    area, group, serial = re.split(r"[- ]", text)
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def is_random_secret(text: str) -> bool:
    """Looks machine-generated: upper, lower and digits mixed, not hex, and high character entropy."""
    if re.fullmatch(r"[0-9a-fA-F]+", text):
        return False  # git SHAs, digests
    classes = sum(bool(re.search(p, text)) for p in ("[A-Z]", "[a-z]", "[0-9]"))
    return classes == 3 and _entropy(text) >= 4.0


def _token_like(text: str) -> bool:
    """A value after a generic ``token=``/``secret=`` label: long enough and not a plain word."""
    return len(text) >= 6 and not re.fullmatch(r"[A-Za-z]+|[0-9]{1,6}", text)


@dataclass(frozen=True)
class Detector:
    """One kind of secret: a name (the placeholder's), a regex, and an optional check on the secret part."""

    name: str
    pattern: str
    check: Callable[[str], bool] | None = None


DETECTORS: tuple[Detector, ...] = (
    # key material and vendor tokens with a recognisable shape
    Detector(
        "private_key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)",
    ),
    Detector("slack_token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}"),
    Detector("slack_app_token", r"\bxapp-\d-[A-Za-z0-9-]{10,}"),
    Detector("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+"),
    Detector("aws_access_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
    Detector(
        "aws_secret_key",
        r"(?i)(?:aws_?secret_?(?:access_?)?key|secret_?access_?key)" + _SEP + r"[\"']?"
        rf"(?P<secret>[{_B64}]{{40}})(?![{_B64}=])",
    ),
    Detector("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    Detector("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
    Detector("gitlab_token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
    Detector("stripe_key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    Detector("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    Detector("google_api_key", r"\bAIza[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])"),
    Detector("npm_token", r"\bnpm_[A-Za-z0-9]{36}\b"),
    Detector("huggingface_token", r"\bhf_[A-Za-z0-9]{30,}\b"),
    Detector("sendgrid_key", r"\bSG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}"),
    Detector(
        "azure_storage_key", rf"(?i)\b(?:AccountKey|SharedAccessKey)=(?P<secret>[{_B64}]{{20,}}={{0,2}})"
    ),
    # credentials after a label: URLs, headers, JSON and assignments
    Detector("url_password", r"(?<=://)[^\s:/@]+:(?P<secret>[^\s@/]+)(?=@)"),
    Detector(
        "bearer_token",
        r"(?i)\b(?:Bearer|Basic)\s+(?P<secret>(?!\[REDACTED)[A-Za-z0-9._~+/-]{16,}=*)",
        check=lambda value: not value.isalpha(),  # "Bearer authentication" is prose
    ),
    Detector("password", r"(?i)(?:password|passwd|passphrase|pwd)" + _SEP + _VALUE),
    Detector(
        "secret_assignment",
        # no leading \b: "db_token=" and "X-Api-Key:" count too (and a prefix scan would be quadratic)
        r"(?i)(?:api[_-]?key|apikey|access[_-]?key|auth[_-]?token|access[_-]?token|"
        r"refresh[_-]?token|client[_-]?secret|token|secret)" + _SEP + _VALUE,
        check=_token_like,
    ),
    # bare shapes checked against look-alikes
    Detector(
        "aws_secret_key",
        rf"(?<![{_B64}=\w])(?P<secret>[{_B64}]{{40}})(?![{_B64}=\w])",
        check=is_random_secret,
    ),
    Detector("iban", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b", check=is_iban),
    Detector("us_ssn", r"(?<![\d-])\d{3}([- ])\d{2}\1\d{4}(?![\d-])", check=is_ssn),
    Detector("card_number", r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)", check=is_card_number),
)


@dataclass
class Redactor:
    """Applies ``DETECTORS`` plus site-specific ``extra`` (name, regex) pairs from the policy."""

    extra: Iterable[tuple[str, str]] = ()
    _compiled: list[tuple[Detector, re.Pattern[str]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        detectors = [*DETECTORS, *(Detector(n, p) for n, p in self.extra)]
        self._compiled = [(d, re.compile(d.pattern)) for d in detectors]

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """Return the redacted text and how many of each kind were replaced."""
        counts: Counter[str] = Counter()
        if not text:
            return text, counts
        for detector, rx in self._compiled:
            text = rx.sub(lambda m, d=detector: _replace(d, m, counts), text)
        return text, counts

    def redact_text(self, text: str) -> str:
        """Just the redacted text (for values stored without their counts, e.g. a sender's display name)."""
        return self.redact(text)[0]


def _replace(detector: Detector, m: re.Match[str], counts: Counter[str]) -> str:
    group = next((g for g, v in m.groupdict().items() if g.startswith("secret") and v is not None), None)
    secret = m.group(group) if group else m.group(0)
    if detector.check is not None and not detector.check(secret):
        return m.group(0)
    counts[detector.name] += 1
    tag = PLACEHOLDER.format(name=detector.name)
    if group is None:
        return tag
    start, end = m.span(group)
    whole = m.group(0)
    return whole[: start - m.start()] + tag + whole[end - m.start() :]
