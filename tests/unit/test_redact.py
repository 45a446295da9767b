"""One test per secret format the redactor knows, and the honest look-alikes it must leave alone."""

from __future__ import annotations

import time

import pytest

from bot.text.redact import DETECTORS, Redactor

# (detector name, text holding one secret, the secret part that must disappear, what must stay)
FORMATS = [
    (
        "private_key",
        "k: -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x\n-----END RSA PRIVATE KEY-----",
        "MIIEowIBAAKCAQEA7x",
        "k: ",
    ),
    ("slack_token", "use xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp now", "xoxb-1234567890", "use "),
    ("slack_app_token", "app xapp-1-A0123456789-abcdefabcdef", "xapp-1-A0123", "app "),
    ("slack_webhook", "hook https://hooks.slack.com/services/T000/B000/XXXXYYYY", "B000/XXXXYYYY", "hook "),
    ("aws_access_key", "id AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "id "),
    (
        "aws_secret_key",
        '{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}',
        "wJalrXUtnFEMI",
        '{"SecretAccessKey": "',
    ),
    (
        "jwt",
        "t eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
        "dozjgNryP4J3",
        "t ",
    ),
    ("github_token", "ghp_abcdefghijklmnopqrstuvwxyz0123456789 leaked", "ghp_abcdef", " leaked"),
    ("gitlab_token", "GL glpat-xYz12345AbCdEfGh6789 ok", "glpat-xYz1", " ok"),
    (
        "stripe_key",
        "live sk_live_51HqLyjWDarjtT1zdp7dc and rk_live_51HqLyjWDarjtT1zdp7dc",
        "51HqLyjW",
        "live ",
    ),
    (
        "openai_key",
        "OPENAI_API_KEY sk-proj-abcdefghijklmnopqrstuvwx1234",
        "sk-proj-abcdef",
        "OPENAI_API_KEY ",
    ),
    ("google_api_key", "maps AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY ok", "AIzaSyD-9tSrke72", " ok"),
    (
        "npm_token",
        "//registry.npmjs.org/:_authToken=npm_abcdefghijklmnopqrstuvwxyz0123456789",
        "npm_abcdef",
        "//registry.npmjs.org/",
    ),
    ("huggingface_token", "HF hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567", "hf_AbCdEf", "HF "),
    (
        "sendgrid_key",
        "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",
        "TwL2iGABf9DHo",
        "",
    ),
    (
        "azure_storage_key",
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;EndpointSuffix=core.windows.net",
        "Eby8vdM02xNO",
        "AccountName=acme;AccountKey=",
    ),
    (
        "url_password",
        "postgres://admin:hunter2hunter2@db.internal:5432/prod",
        "hunter2hunter2",
        "postgres://admin:",
    ),
    (
        "bearer_token",
        "Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.abc123",
        "eyJ0eXAiOiJKV1Q",
        "Authorization: Bearer ",
    ),
    ("password", '{"user": "ops", "password": "correct horse battery"}', "correct horse", '"password": "'),
    (
        "secret_assignment",
        "curl 'https://api.example/x?api_key=9f8e7d6c5b4a' token=Zx81-qq secret: 'S3cr3t!x'",
        "9f8e7d6c5b4a",
        "api_key=",
    ),
    (
        "aws_secret_key",
        "the key is wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, rotate it",
        "wJalrXUtnFEMI",
        "the key is ",
    ),
    ("iban", "pay to DE89 3704 0044 0532 0130 00 by Friday", "3704 0044 0532", "pay to "),
    ("us_ssn", "SSN 078-05-1120 on file", "078-05-1120", "SSN "),
    ("card_number", "card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111", "card "),
]

# honest text that looks a bit like a secret and must come through unchanged
LOOK_ALIKES = [
    "fixed in 3f786850e387550fdab836ed7e6dc881de23001b, see the PR",  # a git SHA: 40 hex
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "order 4111111111111112 (not Luhn-valid)",
    "IBAN-like DE00 3704 0044 0532 0130 00 fails mod-97",
    "SSNs 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567 and 123-45-0000 were never issued",
    "call 555-123-4567 on 2026-11-30",
    "max_tokens=800 and tokens: 1200; the token: yes",
    "Bearer authentication is configured; the password policy changed",
    "ThisIsNotASecretItIsJustALongCamelName",
    "see https://docs.example.com/guides/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd",
]


@pytest.mark.parametrize(
    ("name", "text", "secret", "kept"), FORMATS, ids=[f[0] + str(i) for i, f in enumerate(FORMATS)]
)
def test_each_format_is_redacted(name, text, secret, kept):
    """The secret part is replaced by the detector's placeholder; the label around it stays readable."""
    out, counts = Redactor().redact(text)
    assert secret not in out, out
    assert f"[REDACTED:{name}]" in out and counts[name] >= 1, (out, counts)
    assert kept in out


def test_every_detector_has_a_format_test():
    """The detector list is the one place; each entry is exercised above."""
    assert {d.name for d in DETECTORS} == {f[0] for f in FORMATS}


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_left_alone(text):
    """Git SHAs, digests, Luhn-invalid numbers, bad IBAN checksums, never-issued SSNs and prose stay."""
    out, counts = Redactor().redact(text)
    assert out == text and not counts, (out, counts)


def test_subject_from_the_review_is_redacted():
    """The review's subject line: the password is gone, the label stays."""
    out, counts = Redactor().redact("password: Hunter2-Prod!")
    assert out == "password: [REDACTED:password]" and counts == {"password": 1}


def test_site_patterns_from_the_policy_still_apply():
    """``[redaction] patterns`` from the policy are applied after the built-in detectors."""
    out, counts = Redactor(extra=[("ticket", r"TKT-\d{4}")]).redact("see TKT-1234")
    assert out == "see [REDACTED:ticket]" and counts["ticket"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "a-" * 20_000,
        "a." * 20_000,
        "1-" * 20_000,
        "A/" * 20_000,
        "token=" * 7_000,
        "DE89 " * 8_000,
        "://a:" * 8_000,
    ],
    ids=["dashes", "dots", "digit-dashes", "base64", "labels", "iban-groups", "url-userinfo"],
)
def test_hostile_input_is_redacted_in_linear_time(text):
    """40 KB built to make a detector backtrack (a 40 KB Slack message is possible) takes well under a second."""
    started = time.perf_counter()
    Redactor().redact(text)
    assert time.perf_counter() - started < 5  # about 0.05 s; a quadratic detector took minutes
