"""Deploy executors over real HTTP: the GitHub stand-in and a small signed-webhook receiver."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

import pytest

from bot.deploy.executors import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CIAuthError,
    CIUnavailable,
    DeployError,
    DeployTrigger,
    GitHubClient,
    RefNotFound,
    RunStatus,
    WebhookExecutor,
    WorkflowDispatchExecutor,
    sign_webhook,
    verify_webhook_signature,
)
from bot.errors import ClawbackError, TransientError
from bot.standins.base import QuietHandler, RecordedRequest, StandInServer
from bot.standins.ci import CIStandIn

TOKEN = "ghp-test-token"
REPO = "acme/shop"
MAX_POLLS = 20  # every polling loop in these tests is bounded by this


@pytest.fixture
def ci():
    """A running GitHub stand-in with acme/shop seeded: main has three commits from two PRs."""
    server = CIStandIn(token=TOKEN).start()
    server.add_repo(REPO)
    server.add_commits(
        REPO,
        "main",
        [
            {
                "message": "Add cart\n\nLong body.",
                "author": "alice",
                "files": ["cart.py"],
                "pr": {"number": 11, "title": "Shopping cart"},
            },
            {
                "message": "Cart tests",
                "author": "alice",
                "files": [{"filename": "test_cart.py", "status": "added", "additions": 40}],
                "pr": {"number": 11, "title": "Shopping cart"},
            },
            {
                "message": "Fix typo",
                "author": "bob",
                "files": [{"filename": "README.md", "additions": 1, "deletions": 1}],
                "pr": {"number": 12, "title": "Docs typo"},
            },
        ],
    )
    server.add_tag(REPO, "v1.0", "main")
    yield server
    server.stop()


@pytest.fixture
def client(ci):
    """A GitHub client pointed at the stand-in."""
    return GitHubClient(ci.url, TOKEN, timeout=2.0)


def _executor(client, **kwargs: Any) -> WorkflowDispatchExecutor:
    """A dispatch executor that never really sleeps."""
    kwargs.setdefault("sleep", lambda seconds: None)
    return WorkflowDispatchExecutor(client, REPO, "deploy.yml", **kwargs)


def _trigger(ci, request_id: str = "dep-1", sha: str | None = None, ref: str = "main") -> DeployTrigger:
    """A deploy request for the head of main unless told otherwise."""
    return DeployTrigger(
        request_id=request_id,
        service="shop",
        environment="staging",
        sha=sha or ci.repos[REPO].branches["main"],
        requester="U123",
        params_hash="p" * 16,
        ref=ref,
    )


def _follow(executor, ref: str) -> list[RunStatus]:
    """Poll status until completed or MAX_POLLS; returns every status seen."""
    seen = []
    for _ in range(MAX_POLLS):
        seen.append(executor.status(ref))
        if seen[-1].is_done:
            break
    return seen


# ---- refs and change sets ----------------------------------------------------------------------------------


def test_resolve_ref_accepts_branch_tag_and_short_sha(ci, client):
    """A branch, a tag and a 7-character sha prefix all resolve to the full sha."""
    head = ci.repos[REPO].branches["main"]
    assert client.resolve_ref(REPO, "main") == head
    assert client.resolve_ref(REPO, "v1.0") == head
    assert client.resolve_ref(REPO, head[:7]) == head


def test_resolve_unknown_ref_raises_ref_not_found(ci, client):
    """An unknown ref is RefNotFound, carrying GitHub's message."""
    with pytest.raises(RefNotFound, match="No commit found for SHA: nope"):
        client.resolve_ref(REPO, "nope")
    with pytest.raises(RefNotFound):
        client.resolve_ref("acme/missing", "main")


def test_branch_names_with_slashes_resolve(ci, client):
    """A branch like release/1.2 is sent as one path segment and resolves."""
    [sha] = ci.add_commits(REPO, "release/1.2", [{"message": "Release prep"}])
    assert client.resolve_ref(REPO, "release/1.2") == sha


def test_compare_lists_commits_files_and_pr_titles(ci, client):
    """compare pins both shas and returns first lines, authors, merged files and deduplicated PR titles."""
    repo = ci.repos[REPO]
    initial = next(sha for sha, c in repo.commits.items() if c.parent is None)
    changes = client.compare(REPO, initial, "main")
    assert changes.base_sha == initial and changes.head_sha == repo.branches["main"]
    assert [(m, a) for _, m, a in changes.commits] == [
        ("Add cart", "alice"),
        ("Cart tests", "alice"),
        ("Fix typo", "bob"),
    ]
    assert ("test_cart.py", "added", 40, 0) in changes.files
    assert ("README.md", "modified", 1, 1) in changes.files
    assert changes.pull_requests == [(11, "Shopping cart"), (12, "Docs typo")]
    assert not changes.pull_requests_truncated


def test_compare_bounds_pull_request_lookups(ci, client):
    """A 25-commit range asks for PRs of the first 20 commits only, and says so."""
    base = ci.repos[REPO].branches["main"]
    ci.add_commits(
        REPO, "main", [{"message": f"c{i}", "pr": {"number": 100 + i, "title": f"t{i}"}} for i in range(25)]
    )
    changes = client.compare(REPO, base, "main")
    pulls = [r for r in ci.requests if r.path.endswith("/pulls")]
    assert len(changes.commits) == 25 and len(pulls) == 20
    assert changes.pull_requests_truncated and changes.pull_requests[-1] == (119, "t19")


def test_compare_unknown_head_raises_ref_not_found(ci, client):
    """compare with an unknown head fails before any compare call."""
    with pytest.raises(RefNotFound):
        client.compare(REPO, "main", "no-such-branch")
    assert not any("/compare/" in r.path for r in ci.requests)


# ---- workflow dispatch -------------------------------------------------------------------------------------


def test_dispatch_records_one_dispatch_with_exact_sha(ci, client):
    """trigger pins clawback/deploy-<id> at the sha and dispatches once on it with inputs {environment, sha,
    request_id}, asking for the run's details; returns the run id GitHub answered."""
    request = _trigger(ci)
    run_ref = _executor(client).trigger(request)
    assert len(ci.dispatches) == 1
    dispatch = ci.dispatches[0]
    assert dispatch["ref"] == "refs/heads/clawback/deploy-dep-1" and dispatch["workflow"] == "deploy.yml"
    assert dispatch["sha"] == request.sha
    assert dispatch["inputs"] == {"environment": "staging", "sha": request.sha, "request_id": "dep-1"}
    assert run_ref == str(dispatch["run_id"])
    posts = [r for r in ci.requests if r.method == "POST"]
    assert [p.path.rsplit("/", 1)[-1] for p in posts] == ["refs", "dispatches"]
    assert posts[1].json()["return_run_details"] is True
    post = posts[0]
    headers = {k.lower(): v for k, v in post.headers.items()}
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["authorization"] == f"Bearer {TOKEN}"


def test_dispatch_of_older_sha_on_branch_runs_that_sha(ci, client):
    """An older sha of the branch runs exactly (the pinned ref), not the branch tip; the ref is released."""
    older = ci.repos[REPO].commits[ci.repos[REPO].branches["main"]].parent
    executor = _executor(client)
    request = _trigger(ci, sha=older)
    run_ref = executor.trigger(request)
    assert ci.dispatches[0]["inputs"]["sha"] == older
    assert client.get_run(REPO, run_ref).head_sha == older  # (changed: it used to run the tip)
    assert executor.release(request) is True
    assert "clawback/deploy-dep-1" not in ci.repos[REPO].branches
    assert executor.release(request) is False  # already gone: nothing to do


def test_named_branch_is_not_consulted_at_execution(ci, client):
    """Execution never resolves the requester's branch: the approved sha runs even if it left the branch."""
    [other] = ci.add_commits(REPO, "feature", [{"message": "wip"}])
    run_ref = _executor(client).trigger(_trigger(ci, sha=other, ref="main"))
    assert client.get_run(REPO, run_ref).head_sha == other
    assert not [r for r in ci.requests if "/commits/" in r.path]


def test_release_leaves_a_ref_moved_to_another_commit(ci, client):
    """release deletes the pinned ref only while it points at the approved sha."""
    executor = _executor(client)
    request = _trigger(ci)
    executor.trigger(request)
    ci.add_commits(REPO, "clawback/deploy-dep-1", [{"message": "moved"}])
    assert executor.release(request) is False
    assert "clawback/deploy-dep-1" in ci.repos[REPO].branches


def test_token_without_contents_write_is_an_auth_error(ci, client):
    """Creating the pinned ref needs contents:write: a 403 is CIAuthError and nothing is dispatched."""
    ci.missing_permissions = {"contents:write"}
    with pytest.raises(CIAuthError, match="not accessible"):
        _executor(client).trigger(_trigger(ci))
    assert ci.dispatches == []


def test_trigger_refuses_unknown_sha(ci, client):
    """A sha GitHub does not know is RefNotFound and nothing is dispatched."""
    with pytest.raises(RefNotFound):
        _executor(client).trigger(_trigger(ci, sha="f" * 40))
    assert ci.dispatches == []


@pytest.mark.parametrize("mode", ["legacy", "strict-legacy"])
def test_without_run_details_the_run_is_found_on_the_pinned_ref(ci, client, mode):
    """A server answering 204 (or rejecting return_run_details): the run on the pinned ref at the sha."""
    ci.dispatch_mode = mode
    executor = _executor(client)
    run_ref = executor.trigger(_trigger(ci))
    assert len(ci.dispatches) == 1 and run_ref == str(ci.dispatches[0]["run_id"])
    assert executor.status(run_ref).head_sha == ci.repos[REPO].branches["main"]


def test_trigger_needs_no_branch_name(ci, client):
    """The requester's ref is information only: an empty one still deploys the exact sha."""
    run_ref = _executor(client).trigger(_trigger(ci, ref=""))
    assert run_ref == str(ci.dispatches[0]["run_id"])


def test_retried_trigger_reuses_the_run(ci, client):
    """Triggering the same request again finds its run by run-name instead of dispatching twice."""
    executor = _executor(client)
    first = executor.trigger(_trigger(ci))
    assert executor.trigger(_trigger(ci)) == first
    assert len(ci.dispatches) == 1


def test_concurrent_requests_get_their_own_runs(ci, client):
    """Two requests for the same sha are told apart by request id in the run title."""
    executor = _executor(client)
    first, second = executor.trigger(_trigger(ci, "dep-a")), executor.trigger(_trigger(ci, "dep-b"))
    assert first != second
    assert [d["run_id"] for d in ci.dispatches] == [int(first), int(second)]


@pytest.mark.parametrize("outcome", ["success", "failure", "cancelled"])
def test_run_followed_to_conclusion(ci, client, outcome):
    """A scripted run goes queued → in_progress → completed with its conclusion."""
    ci.script_runs([outcome], steps=3)
    executor = _executor(client)
    seen = _follow(executor, executor.trigger(_trigger(ci)))
    assert [s.status for s in seen] == ["in_progress", "in_progress", "completed"]
    assert seen[-1].conclusion == outcome and seen[-1].html_url.endswith(f"/actions/runs/{seen[-1].id}")


def test_new_run_is_queued_until_polled(ci, client):
    """Before its first status poll a run lists as queued with no conclusion."""
    executor = _executor(client)
    executor.trigger(_trigger(ci))
    since = datetime.now(UTC) - timedelta(minutes=1)
    run = client.find_run(REPO, "deploy.yml", ci.repos[REPO].branches["main"], since)
    assert run is not None and (run.status, run.conclusion) == ("queued", None)


def test_run_that_never_finishes_stays_in_progress(ci, client):
    """A run scripted 'never' is still in_progress after MAX_POLLS polls."""
    ci.script_runs(["never"])
    executor = _executor(client)
    seen = _follow(executor, executor.trigger(_trigger(ci)))
    assert len(seen) == MAX_POLLS and {s.status for s in seen} == {"in_progress"}


def test_cancel_run_completes_it_as_cancelled(ci, client):
    """cancel_run on a running deploy makes it completed/cancelled; cancelling again is harmless."""
    ci.script_runs(["never"])
    executor = _executor(client)
    run_ref = executor.trigger(_trigger(ci))
    client.cancel_run(REPO, run_ref)
    status = executor.status(run_ref)
    assert (status.status, status.conclusion) == ("completed", "cancelled")
    client.cancel_run(REPO, run_ref)  # 409 from GitHub: already finished


def test_run_not_yet_visible_gives_pending_ref(ci, client):
    """204 server: if the run does not show up within find_attempts, trigger returns a pending ref (queued)."""
    ci.dispatch_mode = "legacy"
    sleeps: list[float] = []
    late_clock = lambda: datetime.now(UTC) + timedelta(hours=1)  # noqa: E731 - runs look older than dispatch
    executor = _executor(client, clock=late_clock, sleep=sleeps.append, find_attempts=3, poll_interval=1.5)
    run_ref = executor.trigger(_trigger(ci))
    assert run_ref.startswith("pending:") and sleeps == [1.5, 1.5]
    assert len(ci.dispatches) == 1
    status = executor.status(run_ref)
    assert (status.status, status.id) == ("queued", "")


def test_dispatch_on_unknown_branch_raises_ref_not_found(ci, client):
    """GitHub's 422 'No ref found' on dispatch is RefNotFound."""
    with pytest.raises(RefNotFound):
        client.dispatch_workflow(REPO, "deploy.yml", "gone", {"sha": "x"})


def test_unknown_workflow_is_a_deploy_error(ci, client):
    """Dispatching a workflow file that does not exist is a DeployError (404), not an outage."""
    with pytest.raises(DeployError) as info:
        client.dispatch_workflow(REPO, "nope.yml", "main", {})
    assert not isinstance(info.value, CIUnavailable)


# ---- failures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_raise_ci_unavailable(ci, client, status):
    """A 5xx from GitHub is CIUnavailable, which is also a TransientError."""
    ci.fail_next("/commits/", status)
    with pytest.raises(CIUnavailable) as info:
        client.resolve_ref(REPO, "main")
    assert isinstance(info.value, TransientError) and isinstance(info.value, ClawbackError)
    assert client.resolve_ref(REPO, "main")  # the fault was one-shot


def test_rate_limit_raises_ci_unavailable_with_retry_after(ci, client):
    """A primary rate-limit 403 is CIUnavailable with the server's retry-after, not an auth error."""
    ci.rate_limit_next("/dispatches", retry_after=60)
    with pytest.raises(CIUnavailable) as info:
        client.dispatch_workflow(REPO, "deploy.yml", "main", {})
    assert info.value.retry_after == 60
    assert ci.dispatches == []


def test_rate_limit_reset_header_gives_retry_after(ci):
    """Without retry-after, x-ratelimit-reset (epoch seconds) gives the wait."""
    client = GitHubClient(ci.url, TOKEN, clock=lambda: 1_000.0)
    ci.fail_next("/commits/", 429, {"message": "slow down"}, {"x-ratelimit-reset": "1090"})
    with pytest.raises(CIUnavailable) as info:
        client.resolve_ref(REPO, "main")
    assert info.value.retry_after == 90


def test_timeout_raises_ci_unavailable(ci):
    """A reply slower than the client's timeout is CIUnavailable."""
    client = GitHubClient(ci.url, TOKEN, timeout=0.3)
    ci.delay_next("/compare/", 1.5)
    started = time.monotonic()
    with pytest.raises(CIUnavailable):
        client.compare(REPO, "v1.0", "main")
    assert time.monotonic() - started < 1.4


def test_connection_refused_raises_ci_unavailable():
    """A CI that is not listening is CIUnavailable."""
    with CIStandIn(token=TOKEN) as gone:
        url = gone.url
    with pytest.raises(CIUnavailable):
        GitHubClient(url, TOKEN, timeout=1.0).resolve_ref(REPO, "main")


def test_bad_token_raises_ci_auth_error(ci):
    """A wrong token is CIAuthError with GitHub's 'Bad credentials'; the token never appears in repr."""
    client = GitHubClient(ci.url, "wrong-token")
    with pytest.raises(CIAuthError, match="Bad credentials"):
        client.resolve_ref(REPO, "main")
    assert "wrong-token" not in repr(client)


def test_token_scheme_is_accepted_by_stand_in(ci):
    """The stand-in accepts GitHub's older 'token <t>' scheme as well as Bearer."""
    request = Request(f"{ci.url}/repos/{REPO}/commits/main", headers={"Authorization": f"token {TOKEN}"})
    with urlopen(request, timeout=2) as response:
        assert json.loads(response.read())["sha"] == ci.repos[REPO].branches["main"]


def test_forbidden_without_rate_limit_is_auth_error(ci, client):
    """A plain 403 (token lacks actions:write) is CIAuthError, not a retryable outage."""
    ci.fail_next("/dispatches", 403, {"message": "Resource not accessible by integration"})
    with pytest.raises(CIAuthError, match="not accessible"):
        client.dispatch_workflow(REPO, "deploy.yml", "main", {})


def test_ci_outage_during_trigger_dispatches_nothing(ci, client):
    """If creating the pinned ref fails, trigger raises CIUnavailable and nothing is dispatched."""
    ci.fail_next("/git/refs", 503)
    with pytest.raises(CIUnavailable):
        _executor(client).trigger(_trigger(ci))
    assert ci.dispatches == []


# ---- signed webhook ----------------------------------------------------------------------------------------

SECRET = "whsec-test"


class _ReceiverHandler(QuietHandler):
    """Verifies Clawback's signature, rejects replays, starts fake runs and reports their status."""

    server: Any

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        """Accept a signed deploy request."""
        receiver, body = self.server.standin, self.read_body()
        if not self._verified(body, remember=True):
            return
        receiver.record(RecordedRequest("POST", self.path, dict(self.headers.items()), body))
        run_id = f"wh-{len(receiver.runs) + 1}"
        receiver.runs[run_id] = list(receiver.script)
        self.send_json(202, {"run_id": run_id, "status_url": receiver.status_url_base + f"/runs/{run_id}"})

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        """Report the next scripted status of a run (the last one repeats)."""
        receiver = self.server.standin
        if not self._verified(self.path.encode()):  # GETs are signed over their request target
            return
        steps = receiver.runs.get(self.path.rsplit("/", 1)[-1])
        if steps is None:
            self.send_json(404, {"error": "unknown run"})
            return
        status, conclusion = steps.pop(0) if len(steps) > 1 else steps[0]
        self.send_json(
            200, {"run_id": self.path.rsplit("/", 1)[-1], "status": status, "conclusion": conclusion}
        )

    def _verified(self, body: bytes, remember: bool = False) -> bool:
        """Check signature and age; with ``remember``, refuse a signature seen before (an exact replay)."""
        receiver = self.server.standin
        timestamp = self.headers.get(TIMESTAMP_HEADER, "")
        signature = self.headers.get(SIGNATURE_HEADER, "")
        ok = verify_webhook_signature(SECRET, timestamp, body, signature, now=time.time())
        if not ok or signature in receiver.seen:
            receiver.rejected += 1
            self.send_json(401, {"error": "bad signature" if not ok else "replayed"})
            return False
        if remember:
            receiver.seen.add(signature)
        return True


class _Receiver(StandInServer):
    """A tiny deploy webhook receiver for tests."""

    handler_class = _ReceiverHandler

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, list[tuple[str, str | None]]] = {}
        self.script = [("queued", None), ("in_progress", None), ("completed", "success")]
        self.seen: set[str] = set()
        self.rejected = 0
        self.status_url_base = ""

    def start(self) -> _Receiver:
        """Start and point status URLs at ourselves."""
        super().start()
        self.status_url_base = self.url
        return self


@pytest.fixture
def receiver():
    """A running webhook receiver."""
    server = _Receiver().start()
    yield server
    server.stop()


def _hook_request() -> DeployTrigger:
    """A deploy request for the webhook executor."""
    return DeployTrigger("dep-9", "shop", "prod", "a" * 40, "U999", "h" * 16)


def test_webhook_trigger_is_signed_and_followed_to_success(receiver):
    """The receiver verifies the signature over the exact body; status is followed to completed/success."""
    executor = WebhookExecutor(receiver.url + "/deploy", SECRET, timeout=2.0)
    ref = executor.trigger(_hook_request())
    [post] = receiver.requests
    assert post.json() == {
        "request_id": "dep-9",
        "service": "shop",
        "environment": "prod",
        "sha": "a" * 40,
        "requester": "U999",
        "params_hash": "h" * 16,
    }
    seen = _follow(executor, ref)
    assert [s.status for s in seen] == ["queued", "in_progress", "completed"]
    assert seen[-1].conclusion == "success" and seen[-1].id == "wh-1"
    assert SECRET not in repr(executor)


def test_webhook_old_timestamp_is_rejected(receiver):
    """A request signed ten minutes ago is refused by the receiver and surfaces as CIAuthError."""
    stale = WebhookExecutor(receiver.url + "/deploy", SECRET, timeout=2.0, clock=lambda: time.time() - 600)
    with pytest.raises(CIAuthError):
        stale.trigger(_hook_request())
    assert receiver.runs == {} and receiver.rejected == 1


def test_webhook_exact_replay_is_rejected(receiver):
    """Re-sending a captured request byte for byte (same timestamp and signature) is refused."""
    WebhookExecutor(receiver.url + "/deploy", SECRET, timeout=2.0).trigger(_hook_request())
    [post] = receiver.requests
    replay = Request(
        receiver.url + "/deploy",
        data=post.body,
        method="POST",
        headers={k: v for k, v in post.headers.items() if k.lower() != "content-length"},
    )
    with pytest.raises(HTTPError) as info:
        urlopen(replay, timeout=2)
    info.value.close()
    assert info.value.code == 401 and len(receiver.runs) == 1


def test_webhook_wrong_secret_is_rejected(receiver):
    """A request signed with another secret is refused."""
    with pytest.raises(CIAuthError):
        WebhookExecutor(receiver.url + "/deploy", "other-secret", timeout=2.0).trigger(_hook_request())
    assert receiver.runs == {}


def test_webhook_status_url_on_another_origin_is_refused(receiver):
    """A receiver may not redirect our signed status polls to another host."""
    receiver.status_url_base = "http://127.0.0.2:9"
    with pytest.raises(DeployError, match="status_url"):
        WebhookExecutor(receiver.url + "/deploy", SECRET, timeout=2.0).trigger(_hook_request())


def test_webhook_unreachable_is_ci_unavailable():
    """A receiver that is down is CIUnavailable."""
    with _Receiver() as gone:
        url = gone.url
    with pytest.raises(CIUnavailable):
        WebhookExecutor(url + "/deploy", SECRET, timeout=1.0).trigger(_hook_request())


def test_verify_webhook_signature_checks_body_secret_and_age():
    """The helper accepts our signature and rejects a changed body, secret, timestamp or an old request."""
    body, ts = b'{"a":1}', "1700000000"
    signature = sign_webhook(SECRET, ts, body)
    assert verify_webhook_signature(SECRET, ts, body, signature, now=1700000100)
    assert not verify_webhook_signature(SECRET, ts, b'{"a":2}', signature, now=1700000100)
    assert not verify_webhook_signature("x", ts, body, signature, now=1700000100)
    assert not verify_webhook_signature(SECRET, "1700000001", body, signature, now=1700000100)
    assert not verify_webhook_signature(SECRET, ts, body, signature, now=1700000301)
    assert not verify_webhook_signature(SECRET, "not-a-number", body, signature, now=1700000100)
