"""Fixtures of the scenario tests: Socket Mode (the stand-in and the socket process's app, connected)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.slack.app import SocketApp, build_socket
from bot.standins.socket_mode import SocketModeStandIn
from handlers.context import HandlerContext


@pytest.fixture
def socket_standin(slack) -> Iterator[SocketModeStandIn]:
    """Slack's Socket Mode side, reachable through ``apps.connections.open`` on the Slack stand-in."""
    with SocketModeStandIn() as standin:
        slack.socket_mode = standin
        yield standin
        slack.socket_mode = None


@pytest.fixture
def socket_app(settings, deps, ingress, socket_standin, slack) -> Iterator[SocketApp]:
    """The socket process's app, connected (the same wiring as ``clawback socket``)."""
    app = build_socket(
        settings.model_copy(update={"slack_app_token": slack.app_token}),
        db=deps.db,
        queue_conn=deps.redis,
        ctx=HandlerContext(ingress),
    )
    app.connect()
    socket_standin.wait_connections(1)
    yield app
    app.close()
