"""Fixtures for the email triage surface: an EWS stand-in, a policy naming the mailbox, injected clients."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.mail.ews import EwsMailbox
from bot.mail.graph import GraphMailbox
from bot.mail.poller import MailPoller
from bot.standins.ews import EwsStandIn
from bot.standins.graph import GraphStandIn
from bot.standins.triage_responder import register as register_triage

OWNER_ADDRESS = "emma@example.com"
OWNER = "U0EMMA"
PASSWORD = "ews-s3cret"
PASSWORD_ENV = "CLAWBACK_TEST_EWS_PASSWORD"
ALL_MAIL_SCOPES = ["mail.read", "mail.categorize", "mail.move", "mail.draft", "mail.send"]


def policy_text(ews_url: str, scopes: list[str], extra: str = "") -> str:
    """A policy with Emma owning the stand-in mailbox and holding ``scopes``."""
    quoted = ", ".join(f'"{s}"' for s in ["chat.reply", "usage.self", *scopes])
    return f"""
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "usage.self"]
daily_tokens = 1000000

[roles.mailowner]
scopes = [{quoted}]
daily_tokens = 50000000

[users.{OWNER}]
roles = ["mailowner"]

[mailboxes."{OWNER_ADDRESS}"]
owner = "{OWNER}"
backend = "ews"
ews_url = "{ews_url}"
username = "{OWNER_ADDRESS}"
password_env = "{PASSWORD_ENV}"
folders = {{ action = "Action", newsletter = "Newsletters" }}
first_sync_days = 7
{extra}
"""


@pytest.fixture
def ews() -> Iterator[EwsStandIn]:
    """A running EWS stand-in holding Emma's (empty) mailbox."""
    server = EwsStandIn(address=OWNER_ADDRESS, username=OWNER_ADDRESS, password=PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def mail_scopes(request: pytest.FixtureRequest) -> list[str]:
    """The owner's mail scopes: all of them unless a test says ``@pytest.mark.scopes(...)``."""
    marker = request.node.get_closest_marker("scopes")
    return list(marker.args) if marker else list(ALL_MAIL_SCOPES)


@pytest.fixture
def policy_file(tmp_path: Path, ews: EwsStandIn, mail_scopes: list[str]) -> Path:
    """The policy for these tests (overrides the shared fixture)."""
    path = tmp_path / "policy.toml"
    path.write_text(policy_text(ews.ews_url, mail_scopes))
    return path


@pytest.fixture
def mailboxes(ews: EwsStandIn) -> Iterator[dict[str, EwsMailbox]]:
    """Real EwsMailbox clients over HTTP to the stand-in, one per address, as ``deps.extras`` holds them."""
    made: dict[str, EwsMailbox] = {}
    yield made
    for mb in made.values():
        mb.close()


@pytest.fixture
def mail_deps(deps, ews: EwsStandIn, llm, mailboxes: dict[str, EwsMailbox]):
    """Worker deps with the stand-in-backed mailbox factory and the deterministic triage responder."""

    def factory(address: str) -> EwsMailbox:
        if address not in made:
            made[address] = EwsMailbox(address, ews.ews_url, username=address, password=PASSWORD, timeout=5)
        return made[address]

    made = mailboxes
    deps.extras["mailboxes"] = factory
    register_triage(llm)
    return deps


class Sleeps(list):
    """Records the poller's sleeps instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    """The poller's recorded sleeps."""
    return Sleeps()


@pytest.fixture
def poller(mail_deps, ingress, sleeps: Sleeps) -> MailPoller:
    """A mail poller on the real database, queue and stand-in mailbox."""
    return MailPoller(mail_deps.settings, mail_deps.db, ingress, mail_deps.extras["mailboxes"], sleep=sleeps)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``scopes`` marker."""
    config.addinivalue_line("markers", "scopes(*names): the mailbox owner's mail scopes in the test policy")


def send_draft_confirmed(sender, slack, deps, task_id: str, message_ts: str, user: str = OWNER) -> dict:
    """Click "Send draft", let the worker show the exact draft, then click its "Confirm send"; returns the
    preview message the owner confirmed."""
    from tests.conftest import drain

    sender.block_action(user, "mail_send_draft", task_id, channel="D0EMMA", message_ts=message_ts)
    drain(deps)
    previews = [
        c
        for c in slack.calls("chat.postMessage")
        if f'"{task_id}:' in json.dumps(c.get("blocks") or [])
        and "mail_confirm_send" in json.dumps(c["blocks"])
    ]
    assert previews, "no preview with a Confirm send button"
    button = next(
        e
        for b in previews[-1]["blocks"]
        for e in b.get("elements", [])
        if e.get("action_id") == "mail_confirm_send"
    )
    sender.block_action(user, "mail_confirm_send", button["value"], channel="D0EMMA", message_ts=message_ts)
    drain(deps)
    return previews[-1]


# -- Microsoft Graph (backend = "graph") ------------------------------------------------------------------

GRAPH_ADDRESS = "emma@contoso.com"
GRAPH_OTHER = "ivan@contoso.com"
GRAPH_TENANT = "contoso.onmicrosoft.com"
GRAPH_SECRET = "graph-s3cret"
GRAPH_SECRET_ENV = "CLAWBACK_TEST_GRAPH_SECRET"


def graph_policy_text(graph: GraphStandIn, scopes: list[str], extra: str = "") -> str:
    """A policy with Emma owning her Graph mailbox (and Ivan's, for out-of-scope tests) with ``scopes``."""
    quoted = ", ".join(f'"{s}"' for s in ["chat.reply", "usage.self", *scopes])
    mailbox = f"""
owner = "{OWNER}"
backend = "graph"
tenant_id = "{GRAPH_TENANT}"
client_id = "{graph.app.client_id}"
client_secret_env = "{GRAPH_SECRET_ENV}"
login_url = "{graph.login_url}"
graph_url = "{graph.graph_url}"
folders = {{ action = "Action", newsletter = "Newsletters" }}
first_sync_days = 7
"""
    return f"""
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "usage.self"]
daily_tokens = 1000000

[roles.mailowner]
scopes = [{quoted}]
daily_tokens = 50000000

[users.{OWNER}]
roles = ["mailowner"]

[mailboxes."{GRAPH_ADDRESS}"]
{mailbox}
{extra}
"""


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    """A running Graph + identity platform stand-in (HTTPS, throwaway CA) with Emma's and Ivan's mailboxes."""
    server = GraphStandIn(
        tenant_id=GRAPH_TENANT, client_secret=GRAPH_SECRET, mailboxes=(GRAPH_ADDRESS, GRAPH_OTHER)
    ).start()
    yield server
    server.stop()


@pytest.fixture
def graph_trust(graph: GraphStandIn, monkeypatch: pytest.MonkeyPatch) -> GraphStandIn:
    """The process trusts the stand-in's CA through the standard variables, as an operator behind a TLS-inspecting
    proxy would set them, and the app secret is in the environment."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph.ca_path))
    monkeypatch.setenv("SSL_CERT_FILE", str(graph.ca_path))
    monkeypatch.setenv(GRAPH_SECRET_ENV, GRAPH_SECRET)
    return graph


@pytest.fixture
def graph_mailbox(graph: GraphStandIn) -> Iterator[Callable[..., GraphMailbox]]:
    """Builds real GraphMailbox clients (real msal and httpx) trusting the stand-in's CA; closed afterwards."""
    made: list[GraphMailbox] = []

    def build(address: str = GRAPH_ADDRESS, **kw: Any) -> GraphMailbox:
        options: dict[str, Any] = {
            "tenant_id": GRAPH_TENANT,
            "client_id": graph.app.client_id,
            "login_url": graph.login_url,
            "graph_url": graph.graph_url,
            "ca_bundle": str(graph.ca_path),
            "timeout": 5,
        }
        options.update(kw)
        if "client_certificate" not in options:
            options.setdefault("client_secret", GRAPH_SECRET)
        mb = GraphMailbox(address, **options)
        made.append(mb)
        return mb

    yield build
    for mb in made:
        mb.close()
