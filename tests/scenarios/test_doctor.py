"""``clawback doctor`` against the stand-ins: a healthy setup passes, and each broken part gives its own line
and exit code 1 (Slack token, scopes, LLM down, unknown model, Redis down, old schema, bad policy, mailbox auth,
GitHub 404), while warnings alone exit 0."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.db import Database
from bot.ops import doctor
from bot.standins.base import QuietHandler, RecordedRequest, StandInServer
from bot.standins.ci import CIStandIn
from bot.standins.ews import EwsStandIn

EWS_ADDRESS = "emma@example.com"
EWS_PASSWORD = "ews-s3cret"
EWS_PASSWORD_ENV = "CLAWBACK_TEST_DOCTOR_EWS_PASSWORD"
GH_TOKEN = "ghp-doctor-token"
GOOD_SECRET = "0123456789abcdef0123456789abcdef"


def _policy(ews_url: str, repo: str = "acme/shop", workflow: str = "deploy.yml") -> str:
    return f"""
[defaults]
roles = ["member"]

[roles.member]
scopes = ["chat.reply", "usage.self"]

[users.U0EMMA]
roles = ["member"]

[mailboxes."{EWS_ADDRESS}"]
owner = "U0EMMA"
backend = "ews"
ews_url = "{ews_url}"
username = "{EWS_ADDRESS}"
password_env = "{EWS_PASSWORD_ENV}"

[services.shop]
repo = "{repo}"
workflow = "{workflow}"
environments = ["prod"]
"""


@pytest.fixture
def ews():
    server = EwsStandIn(address=EWS_ADDRESS, username=EWS_ADDRESS, password=EWS_PASSWORD).start()
    yield server
    server.stop()


@pytest.fixture
def ci():
    server = CIStandIn(token=GH_TOKEN).start()
    server.add_repo("acme/shop")
    yield server
    server.stop()


@pytest.fixture
def policy_file(tmp_path: Path, ews: EwsStandIn) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(_policy(ews.ews_url))
    return path


@pytest.fixture
def healthy(settings, ci, monkeypatch):
    """The shared test settings plus GitHub, a proper signing secret and the mailbox password."""
    monkeypatch.setenv(EWS_PASSWORD_ENV, EWS_PASSWORD)
    return settings.model_copy(
        update={
            "clawback_github_api_url": ci.url,
            "clawback_github_token": GH_TOKEN,
            "slack_signing_secret": GOOD_SECRET,
        }
    )


def run(settings, **kw) -> dict[str, doctor.CheckResult]:
    results = doctor.run_checks(doctor.plan_checks(settings, timeout=3.0, **kw), timeout=3.0)
    return {r.name: r for r in results}


def failed(results: dict[str, doctor.CheckResult]) -> dict[str, str]:
    return {n: r.detail for n, r in results.items() if r.status == "fail"}


def test_healthy_setup_passes(healthy, slack, llm, ews, ci):
    """Every check answers ok (or skip for Socket Mode in HTTP mode); exit code 0; one line each."""
    results = run(healthy)
    assert failed(results) == {} and doctor.exit_code(results.values()) == 0
    assert [n for n, r in results.items() if r.status == "warn"] == []
    assert results["slack.app_token"].status == "skip"
    assert "auth.test" in results["slack.auth"].detail and "T0CLAWBACK" in results["slack.auth"].detail
    assert "no more" in results["slack.scopes"].detail
    assert "clawback-standin" in results["llm"].detail
    assert "schema current" in results["database"].detail
    assert results[f"mailbox {EWS_ADDRESS}"].detail.startswith("EWS: Inbox reachable")
    assert "deploy.yml" in results["github shop"].detail
    assert all("\n" not in doctor.format_line(r) for r in results.values())
    assert [m for m in (c.extra.get("method") for c in slack.requests) if m] == ["auth.test", "auth.test"]
    assert llm.completions() == []  # the model list sufficed: no tokens spent


def test_wrong_slack_token(healthy, slack, llm, ews, ci):
    results = run(healthy.model_copy(update={"slack_bot_token": "xoxb-wrong"}))
    assert failed(results)["slack.auth"] == "auth.test refused the bot token: invalid_auth"
    assert results["slack.scopes"].status == "skip" and doctor.exit_code(results.values()) == 1


def test_missing_scope_fails_and_extra_scope_warns(healthy, slack, llm, ews, ci):
    """Scopes come from Slack's x-oauth-scopes header and are compared with bot/slack/slack_manifest.yaml."""
    slack.granted_scopes = ["app_mentions:read", "chat:write", "commands"]
    detail = failed(run(healthy))["slack.scopes"]
    assert detail.startswith("missing channels:history, groups:history") and "reinstall" in detail
    slack.granted_scopes = [*doctor.manifest_bot_scopes(), "channels:read", "files:write"]
    results = run(healthy)
    assert results["slack.scopes"].status == "warn" and "channels:read, files:write" in results["slack.scopes"].detail
    assert doctor.exit_code(results.values()) == 0  # a warning alone does not fail


def test_llm_down(healthy, slack, llm, ews, ci):
    results = run(healthy.model_copy(update={"openai_base_url": "http://127.0.0.1:9/v1"}))
    assert "unreachable" in failed(results)["llm"]


def test_unknown_model(healthy, slack, llm, ews, ci):
    detail = failed(run(healthy.model_copy(update={"clawback_model": "gpt-9-imaginary"})))["llm"]
    assert "does not offer model 'gpt-9-imaginary'" in detail and "clawback-standin" in detail


def test_redis_down(healthy, slack, llm, ews, ci):
    detail = failed(run(healthy.model_copy(update={"redis_url": "redis://127.0.0.1:9/0"})))["redis"]
    assert detail.startswith("redis://127.0.0.1:9/0: ") and "refused" in detail.lower()


def test_embedded_redis_is_a_warning(healthy, slack, llm, ews, ci):
    results = run(healthy.model_copy(update={"redis_url": None}))
    assert results["redis"].status == "warn" and "embedded" in results["redis"].detail


def test_old_schema(healthy, slack, llm, ews, ci, tmp_path):
    """A database one migration behind: the line names both revisions and the command; nothing is migrated."""
    from bot import migrate

    old = Database(f"sqlite:///{tmp_path / 'old.db'}")
    migrate.upgrade(old, "0003")
    before = migrate.current_revision(old)
    old.dispose()
    detail = failed(run(healthy.model_copy(update={"database_url": old.url})))["database"]
    assert f"schema at {before}" in detail and "run `clawback db upgrade`" in detail
    again = Database(old.url)
    assert migrate.current_revision(again) == before  # the doctor changed nothing
    again.dispose()


def test_missing_sqlite_file(healthy, slack, llm, ews, ci, tmp_path):
    missing = tmp_path / "nope.db"
    detail = failed(run(healthy.model_copy(update={"database_url": f"sqlite:///{missing}"})))["database"]
    assert "does not exist" in detail and not missing.exists()


def test_bad_policy(healthy, slack, llm, ews, ci, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles.member]\nscopes = ["chat.reply", "no.such.scope"]\n')
    detail = failed(run(healthy.model_copy(update={"clawback_policy": bad})))["policy"]
    assert "no.such.scope" in detail and "bad.toml" in detail


def test_mailbox_auth_failure(healthy, slack, llm, ews, ci, monkeypatch):
    monkeypatch.setenv(EWS_PASSWORD_ENV, "wrong-password")
    detail = failed(run(healthy))[f"mailbox {EWS_ADDRESS}"]
    assert detail.startswith("credentials refused")


def test_mailbox_secret_unset(healthy, slack, llm, ews, ci, monkeypatch):
    monkeypatch.delenv(EWS_PASSWORD_ENV)
    detail = failed(run(healthy))[f"mailbox {EWS_ADDRESS}"]
    assert EWS_PASSWORD_ENV in detail and "not set" in detail


def test_github_repository_and_workflow_404(healthy, slack, llm, ews, ci, tmp_path):
    policy = tmp_path / "gh.toml"
    policy.write_text(_policy("http://127.0.0.1:9/EWS/Exchange.asmx", repo="acme/missing"))
    assert "repository acme/missing not found" in failed(run(healthy.model_copy(update={"clawback_policy": policy})))[
        "github shop"
    ]
    policy.write_text(_policy("http://127.0.0.1:9/EWS/Exchange.asmx", workflow="release.yml"))
    detail = failed(run(healthy.model_copy(update={"clawback_policy": policy})))["github shop"]
    assert detail == "workflow release.yml not found in acme/shop"


def test_github_token_refused(healthy, slack, llm, ews, ci):
    detail = failed(run(healthy.model_copy(update={"clawback_github_token": "ghp-wrong"})))["github shop"]
    assert detail.startswith("token refused") and "Bad credentials" in detail


def test_socket_mode_needs_an_app_token(healthy, slack, llm, ews, ci):
    assert "needs it" in failed(run(healthy, socket_mode=True))["slack.app_token"]
    bad = healthy.model_copy(update={"slack_app_token": "xoxb-not-an-app-token"})
    assert "xapp-" in failed(run(bad))["slack.app_token"]


def test_a_hanging_check_fails_on_its_timeout():
    """A check that does not answer in time is reported as failed; the others are not held up."""
    started = time.monotonic()
    result = doctor.run_one("slow", lambda: time.sleep(5) or "late", timeout=0.3)
    assert (result.status, result.detail) == ("fail", "no answer within 0.3 s")
    assert time.monotonic() - started < 2


def test_a_github_that_does_not_answer_fails_within_the_timeout(healthy, slack, llm, ews, ci):
    ci.delay_next("/repos/acme/shop", 4.5)
    started = time.monotonic()
    results = run(healthy)
    elapsed = time.monotonic() - started
    assert results["github shop"].status == "fail" and "timed out" in results["github shop"].detail
    assert elapsed < 4.5
    time.sleep(4.6 - elapsed)  # let the stand-in finish the delayed answer before it stops


def test_cli_prints_one_line_per_check_and_exits_1(healthy, slack, llm, ews, ci, monkeypatch):
    """``clawback doctor`` from the environment: one line per check, a summary, exit 1 on a failure."""
    from bot.ops.cli import app

    env = {
        "SLACK_BOT_TOKEN": "xoxb-wrong",
        "SLACK_SIGNING_SECRET": GOOD_SECRET,
        "SLACK_API_URL": healthy.slack_api_url,
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_BASE_URL": healthy.openai_base_url,
        "CLAWBACK_MODEL": healthy.clawback_model,
        "REDIS_URL": healthy.redis_url,
        "DATABASE_URL": healthy.database_url,
        "CLAWBACK_POLICY": str(healthy.clawback_policy),
        "CLAWBACK_GITHUB_API_URL": ci.url,
        "CLAWBACK_GITHUB_TOKEN": GH_TOKEN,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["doctor", "--timeout", "3"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1
    assert lines[0].startswith("OK    settings") and any(
        line.startswith("FAIL  slack.auth") and "invalid_auth" in line for line in lines
    )
    assert lines[-1] == "11 checks: 1 failed, 0 warning(s)"


def test_cli_invalid_settings_is_one_failed_line(monkeypatch):
    from bot.ops.cli import app

    monkeypatch.setenv("CLAWBACK_LLM_TIMEOUT", "-1")
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert result.output.startswith("FAIL  settings") and "CLAWBACK_LLM_TIMEOUT" in result.output


def test_graph_mailbox_check_and_wrong_secret():
    """A Graph mailbox is checked the same way: a token and one GET of the Inbox; a wrong secret fails the line."""
    from bot.mail.config import parse_mailbox
    from bot.mail.graph import GraphMailbox
    from bot.settings import Settings
    from bot.standins.graph import GraphStandIn

    graph = GraphStandIn(client_secret="graph-s3cret", mailboxes=("emma@contoso.com",)).start()
    try:
        cfg = parse_mailbox(
            "emma@contoso.com",
            {
                "owner": "U0EMMA",
                "backend": "graph",
                "tenant_id": "contoso.onmicrosoft.com",
                "client_id": graph.app.client_id,
                "client_secret_env": "CLAWBACK_TEST_DOCTOR_GRAPH_SECRET",
                "login_url": graph.login_url,
                "graph_url": graph.graph_url,
            },
        )

        def connect(secret: str):
            def build(cfg, _secret, *, timeout, reserved):
                return GraphMailbox(
                    cfg.address,
                    tenant_id=cfg.tenant_id,
                    client_id=cfg.client_id,
                    client_secret=secret,
                    login_url=cfg.login_url,
                    graph_url=cfg.graph_url,
                    ca_bundle=str(graph.ca_path),
                    timeout=timeout,
                )

            return build

        settings = Settings(_env_file=None)
        ok = doctor.run_one("mb", lambda: doctor.check_mailbox(settings, cfg, 3.0, connect("graph-s3cret")), 5)
        assert (ok.status, ok.detail) == ("ok", "Graph: Inbox reachable (0 item(s))")
        bad = doctor.run_one("mb", lambda: doctor.check_mailbox(settings, cfg, 3.0, connect("wrong")), 5)
        assert bad.status == "fail" and bad.detail.startswith("credentials refused") and "AADSTS" in bad.detail
    finally:
        graph.stop()


class _NoModelList(QuietHandler):
    """An OpenAI-compatible gateway without ``GET /models`` (some proxies): only chat completions, one model."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        request = json.loads(self.read_body() or b"{}")
        self.server.standin.record(RecordedRequest("POST", self.path, dict(self.headers), b""))
        if request.get("model") != "gateway-model":
            error = {"message": f"The model `{request.get('model')}` does not exist", "code": "model_not_found"}
            self.send_json(404, {"error": error})
            return
        self.send_json(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "gateway-model",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "p"}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )


@pytest.fixture
def gateway():
    server = StandInServer()
    server.handler_class = _NoModelList
    server.start()
    yield server
    server.stop()


def test_llm_without_a_model_list_gets_a_one_token_completion(healthy, slack, llm, ews, ci, gateway):
    """No ``GET /models``: one completion of at most 1 token proves the model; an unknown one fails the line."""
    settings = healthy.model_copy(update={"openai_base_url": gateway.url + "/v1", "clawback_model": "gateway-model"})
    results = run(settings)
    assert results["llm"].status == "ok" and "1-token completion" in results["llm"].detail
    (call,) = [r for r in gateway.requests if r.method == "POST"]
    assert call.path.endswith("/chat/completions")
    detail = failed(run(settings.model_copy(update={"clawback_model": "nope"})))["llm"]
    assert "model 'nope' (CLAWBACK_MODEL) not found" in detail
