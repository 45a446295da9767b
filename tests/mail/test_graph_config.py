"""``backend = "graph"`` in the policy: the keys, ``clawback policy check`` errors, and the backend factory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import ConfigError, PolicyError
from bot.mail.config import connect, mailbox_config
from bot.mail.ews import EwsMailbox
from bot.mail.graph import GraphMailbox
from bot.policy import parse_policy
from bot.standins.graph import make_client_certificate

pytestmark = pytest.mark.nopg  # no database behaviour

GOOD = """
[roles.mailowner]
scopes = ["mail.read"]

[users.U0EMMA]
roles = ["mailowner"]

[mailboxes."emma@contoso.com"]
owner = "U0EMMA"
backend = "graph"
tenant_id = "contoso.onmicrosoft.com"
client_id = "4b1e9f6a-1111-4222-8333-444455556666"
client_secret_env = "CLAWBACK_GRAPH_SECRET"
folders = { action = "Action", fyi = "FYI", newsletter = "Newsletters" }
"""


def test_graph_mailbox_parses_with_defaults():
    """The issue's keys parse; login_url and graph_url default to Microsoft's global cloud."""
    cfg = mailbox_config(parse_policy(GOOD).section("mailboxes"), "emma@contoso.com")
    assert cfg.backend == "graph" and cfg.tenant_id == "contoso.onmicrosoft.com"
    assert cfg.login_url == "https://login.microsoftonline.com"
    assert cfg.graph_url == "https://graph.microsoft.com/v1.0"
    assert cfg.folders == {"action_required": "Action", "fyi": "FYI", "newsletter": "Newsletters"}
    national = GOOD.replace(
        "folders =",
        'login_url = "https://login.microsoftonline.us"\ngraph_url = "https://graph.microsoft.us/v1.0/"\nfolders =',
    )
    cfg = mailbox_config(parse_policy(national).section("mailboxes"), "emma@contoso.com")
    assert (cfg.login_url, cfg.graph_url) == (
        "https://login.microsoftonline.us",
        "https://graph.microsoft.us/v1.0",
    )


@pytest.mark.parametrize(
    ("change", "reason", "line_text"),
    [
        (('backend = "graph"', 'backend = "imap"'), 'supported: "ews", "graph"', "backend"),
        (
            ('tenant_id = "contoso.onmicrosoft.com"\n', ""),
            "needs tenant_id",
            '[mailboxes."emma@contoso.com"]',
        ),
        (('client_id = "4b1e9f6a-1111-4222-8333-444455556666"\n', ""), "needs client_id", "[mailboxes."),
        (
            ('client_secret_env = "CLAWBACK_GRAPH_SECRET"', 'client_secret_env = "hunter2!"'),
            "name an environment variable",
            "client_secret_env",
        ),
        (
            ('client_secret_env = "CLAWBACK_GRAPH_SECRET"\n', ""),
            "set exactly one of client_secret_env, client_certificate_env or client_certificate_path",
            "[mailboxes.",
        ),
        (
            (
                'client_secret_env = "CLAWBACK_GRAPH_SECRET"',
                'client_secret_env = "S"\nclient_certificate_env = "C"',
            ),
            "found client_secret_env, client_certificate_env",
            "client_certificate_env",
        ),
        (
            (
                'client_secret_env = "CLAWBACK_GRAPH_SECRET"',
                'client_certificate_path = "/etc/clawback/app.pem"',
            ),
            "needs thumbprint",
            "client_certificate_path",
        ),
        (
            (
                'client_secret_env = "CLAWBACK_GRAPH_SECRET"',
                'client_certificate_env = "CERT"\nthumbprint = "not-hex"',
            ),
            "40 hex digits",
            "thumbprint",
        ),
        (
            ("folders =", 'thumbprint = "' + "A" * 40 + '"\nfolders ='),
            "goes with client_certificate",
            "thumbprint",
        ),
        (
            ("folders =", 'login_url = "http://login.example"\nfolders ='),
            "login_url must be an https:// URL",
            "login_url",
        ),
        (
            ("folders =", 'graph_url = "graph.microsoft.com"\nfolders ='),
            "graph_url must be an https:// URL",
            "graph_url",
        ),
        (
            ("folders =", 'ews_url = "https://mail.example/EWS/Exchange.asmx"\nfolders ='),
            'only to backend = "ews"',
            "ews_url",
        ),
        (("folders =", 'password_env = "P"\nfolders ='), 'only to backend = "ews"', "password_env"),
    ],
)
def test_policy_check_names_the_line_and_reason(change, reason, line_text):
    """Each mistake in a Graph mailbox table is a PolicyError with the reason and the offending line."""
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    assert reason in str(caught.value)
    assert caught.value.line is not None and line_text in text.splitlines()[caught.value.line - 1]


def test_graph_only_keys_are_refused_for_ews():
    """An EWS mailbox with a Graph key is told which backend the key belongs to."""
    ews = GOOD.replace(
        'backend = "graph"', 'backend = "ews"\news_url = "https://mail.example/EWS/Exchange.asmx"'
    )
    ews = ews.replace("folders =", 'login_url = "https://login.microsoftonline.com"\nfolders =')
    with pytest.raises(PolicyError, match='login_url applies only to backend = "graph"'):
        parse_policy(ews)


def test_policy_check_cli(tmp_path: Path):
    """``clawback policy check`` accepts a Graph mailbox and rejects a bad one with the line and reason."""
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace('tenant_id = "contoso.onmicrosoft.com"', 'tenant_id = "contoso onmicrosoft"'))
    ok = subprocess.run(
        [sys.executable, "-m", "bot.ops.cli", "policy", "check", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    failed = subprocess.run(
        [sys.executable, "-m", "bot.ops.cli", "policy", "check", str(bad)], capture_output=True, text=True
    )
    assert failed.returncode == 1
    out = " ".join((failed.stdout + failed.stderr).split())
    assert "needs tenant_id" in out and "bad.toml:11:" in out  # the tenant_id line


def test_factory_builds_graph_or_ews_and_reads_the_credential(tmp_path: Path):
    """``connect`` picks GraphMailbox for backend = "graph"; secrets and certificates come from where the policy
    says, with clear errors when they are missing."""
    cfg = mailbox_config(parse_policy(GOOD).section("mailboxes"), "emma@contoso.com")
    mb = connect(cfg, {"CLAWBACK_GRAPH_SECRET": "s3cret"}.get)
    assert isinstance(mb, GraphMailbox) and mb.scope == "https://graph.microsoft.com/.default"
    mb.close()
    with pytest.raises(ConfigError, match="CLAWBACK_GRAPH_SECRET is not set"):
        connect(cfg, lambda name: None)
    with pytest.raises(ConfigError, match="one of Clawback's own settings"):
        connect(cfg, lambda name: "x", reserved=frozenset({"CLAWBACK_GRAPH_SECRET"}))
    pem, _, thumbprint = make_client_certificate()
    path = tmp_path / "app.pem"
    path.write_text(pem)
    by_path = GOOD.replace(
        'client_secret_env = "CLAWBACK_GRAPH_SECRET"',
        f'client_certificate_path = "{path}"\nthumbprint = "{thumbprint}"',
    )
    cfg = mailbox_config(parse_policy(by_path).section("mailboxes"), "emma@contoso.com")
    mb = connect(cfg, lambda name: None)
    assert isinstance(mb, GraphMailbox)
    mb.close()
    path.write_text(pem.split("-----BEGIN CERTIFICATE-----")[1])
    with pytest.raises(ConfigError, match="holds no private key"):
        connect(cfg, lambda name: None)
    path.unlink()
    with pytest.raises(ConfigError, match="cannot read client_certificate_path"):
        connect(cfg, lambda name: None)
    ews = GOOD.replace(
        'backend = "graph"', 'backend = "ews"\news_url = "https://mail.example/EWS/Exchange.asmx"'
    )
    cfg = mailbox_config(parse_policy(ews).section("mailboxes"), "emma@contoso.com")
    mb = connect(cfg, lambda name: "s3cret")
    assert isinstance(mb, EwsMailbox)
    mb.close()
