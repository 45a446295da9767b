"""Deploy executors: start a deploy somewhere else and follow it.

Two executors share the :class:`Executor` protocol: :class:`WorkflowDispatchExecutor` (GitHub Actions
``workflow_dispatch`` through :class:`GitHubClient`) and :class:`WebhookExecutor` (a signed JSON POST to a
generic receiver). Both are pure clients: URLs, tokens, secrets, clocks and sleeps are passed in; nothing
reads the environment.

Errors::

    ClawbackError
    └── DeployError               anything a deploy client raises on purpose
        ├── RefNotFound           the branch, tag or sha does not exist
        ├── CIAuthError           401, or a 403 that is not a rate limit (token lacks a permission)
        └── CIUnavailable         5xx, timeouts, connection errors, rate limits (also a TransientError,
                                  with ``retry_after`` in seconds when the server said so)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import Request, urlopen

from bot.errors import ClawbackError, TransientError

logger = logging.getLogger(__name__)

GITHUB_API_VERSION = "2022-11-28"
MAX_PR_LOOKUPS = 20  # one request per commit: bound the fan-out on big compares
SIGNATURE_HEADER = "X-Clawback-Signature"
TIMESTAMP_HEADER = "X-Clawback-Timestamp"
_MAX_BODY = 8 * 1024 * 1024  # a compare of a huge range is still well under this


class DeployError(ClawbackError):
    """Base for errors raised by the deploy clients."""


class RefNotFound(DeployError):
    """A branch, tag or sha could not be resolved."""


class CIAuthError(DeployError):
    """The CI rejected our credentials or they lack a permission."""


class CIUnavailable(DeployError, TransientError):
    """The CI is down, slow, unreachable or rate limiting us; ``retry_after`` in seconds when known."""


@dataclass(frozen=True)
class ChangeSet:
    """What deploying ``head_sha`` over ``base_sha`` would ship."""

    base_sha: str
    head_sha: str
    commits: list[tuple[str, str, str]]  # (sha, first line of message, author)
    files: list[tuple[str, str, int, int]]  # (filename, status, additions, deletions)
    pull_requests: list[tuple[int, str]]  # (number, title), first seen first
    pull_requests_truncated: bool = False  # True when only the first MAX_PR_LOOKUPS commits were asked


@dataclass(frozen=True)
class RunStatus:
    """A deploy run as the CI reports it; ``status`` is queued, in_progress or completed."""

    id: str
    status: str
    conclusion: str | None
    html_url: str
    head_sha: str
    display_title: str = ""

    @property
    def is_done(self) -> bool:
        """True once the run has finished, whatever the conclusion."""
        return self.status == "completed"


@dataclass(frozen=True)
class DeployTrigger:
    """One approved deploy request; ``ref`` is the branch or tag the requester named for ``sha``."""

    request_id: str
    service: str
    environment: str
    sha: str
    requester: str
    params_hash: str
    ref: str = ""


class Executor(Protocol):
    """Starts a deploy and reports on it."""

    def trigger(self, request: DeployTrigger) -> str:
        """Start the deploy; returns an opaque reference to pass to :meth:`status`."""
        ...

    def status(self, ref: str) -> RunStatus:
        """The current state of the deploy started as ``ref``."""
        ...


# ---- HTTP --------------------------------------------------------------------------------------------------


@dataclass
class _Reply:
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> Any:
        """The body decoded as JSON (``None`` when empty)."""
        try:
            return json.loads(self.body) if self.body else None
        except ValueError as exc:
            raise DeployError(f"invalid JSON from CI (HTTP {self.status})") from exc


def _send(method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float) -> _Reply:
    """One HTTP exchange; transport failures become CIUnavailable, HTTP errors are returned, not raised."""
    request = Request(url, data=body, headers=headers, method=method)
    try:
        with urlopen(request, timeout=timeout) as response:  # noqa: S310 - URLs come from configuration
            return _Reply(response.status, _lower(response.headers.items()), response.read(_MAX_BODY))
    except HTTPError as exc:
        with exc:
            return _Reply(exc.code, _lower(exc.headers.items()), exc.read(_MAX_BODY))
    except (TimeoutError, URLError, ConnectionError, OSError) as exc:
        # URLError wraps refused connections and connect timeouts; a bare TimeoutError is a read timeout.
        raise CIUnavailable(f"{method} {_redact(url)}: {exc}") from exc


def _lower(items: Any) -> dict[str, str]:
    """Headers with lower-case names, for lookups."""
    return {k.lower(): v for k, v in items}


def _redact(url: str) -> str:
    """Scheme, host and path only: query strings can carry tokens in someone's webhook URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _retry_after(headers: dict[str, str], now: float) -> float | None:
    """Seconds to wait, from ``retry-after`` or GitHub's ``x-ratelimit-reset`` epoch."""
    if headers.get("retry-after", "").strip().isdigit():
        return float(headers["retry-after"])
    if headers.get("x-ratelimit-reset", "").strip().isdigit():
        return max(0.0, float(headers["x-ratelimit-reset"]) - now)
    return None


def _is_rate_limited(reply: _Reply) -> bool:
    """GitHub signals rate limits as 429, or 403 with no remaining quota or a secondary-limit message."""
    if reply.status == 429:
        return True
    if reply.status != 403:
        return False
    return reply.headers.get("x-ratelimit-remaining") == "0" or b"rate limit" in reply.body.lower()


def _message(reply: _Reply) -> str:
    """The ``message`` (GitHub) or ``error`` of an error body, else a placeholder."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        body = None
    for key in ("message", "error"):
        if isinstance(body, dict) and isinstance(body.get(key), str):
            return body[key][:200]  # bounded: it ends up in logs and maybe in Slack
    return "no details"


def _raise_for_status(reply: _Reply, what: str, now: float) -> None:
    """Map an error reply onto the DeployError tree; 2xx returns quietly."""
    if 200 <= reply.status < 300:
        return
    if _is_rate_limited(reply):
        raise CIUnavailable(
            f"{what}: rate limited ({_message(reply)})", retry_after=_retry_after(reply.headers, now)
        )
    if reply.status in (401, 403):
        raise CIAuthError(f"{what}: {_message(reply)} (HTTP {reply.status})")
    if reply.status >= 500:
        raise CIUnavailable(f"{what}: HTTP {reply.status}", retry_after=_retry_after(reply.headers, now))
    raise DeployError(f"{what}: {_message(reply)} (HTTP {reply.status})")


# ---- GitHub ------------------------------------------------------------------------------------------------


def _seg(value: str) -> str:
    """One URL path segment (branch names may contain ``/``)."""
    return quote(str(value), safe="")


def _iso(moment: datetime) -> str:
    """GitHub's timestamp format, whole seconds in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run_status(run: dict[str, Any]) -> RunStatus:
    """RunStatus from a GitHub workflow run object."""
    return RunStatus(
        id=str(run["id"]),
        status=run.get("status") or "queued",
        conclusion=run.get("conclusion"),
        html_url=run.get("html_url") or "",
        head_sha=run.get("head_sha") or "",
        display_title=run.get("display_title") or "",
    )


class GitHubClient:
    """The few GitHub REST calls a deploy needs, over stdlib HTTP."""

    def __init__(
        self, api_url: str, token: str, timeout: float = 10.0, *, clock: Callable[[], float] = time.time
    ):
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._clock = clock

    def __repr__(self) -> str:
        return f"GitHubClient({self.api_url!r})"  # never the token

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        payload: Any = None,
        query: dict | None = None,
        allow: tuple[int, ...] = (404, 422),
    ) -> _Reply:
        """Send an authenticated request; raise on errors except ``allow`` (the caller decides those)."""
        url = self.api_url + path + ("?" + urlencode(query) if query else "")
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
            "Authorization": f"Bearer {self._token}",
            "User-Agent": "clawback-deploy",
        }
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        reply = _send(method, url, headers, body, self.timeout)
        if reply.status not in allow:
            _raise_for_status(reply, what, self._clock())
        return reply

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """Like ``_call`` but 404/422 raise DeployError and the JSON body is returned."""
        reply = self._call(method, path, what, **kwargs)
        _raise_for_status(reply, what, self._clock())
        return reply.json()

    def resolve_ref(self, repo: str, ref: str) -> str:
        """The commit sha a branch, tag or (short) sha points at; RefNotFound if none."""
        reply = self._call("GET", f"/repos/{repo}/commits/{_seg(ref)}", f"resolve {ref}")
        if reply.status in (404, 422):  # GitHub answers 422 for an unknown sha, 404 for an unknown repo
            raise RefNotFound(f"{repo}: {ref!r} not found ({_message(reply)})")
        sha = (reply.json() or {}).get("sha")
        if not isinstance(sha, str) or len(sha) != 40:
            raise DeployError(f"{repo}: no sha for {ref!r}")
        return sha

    def compare(self, repo: str, base: str, head: str) -> ChangeSet:
        """Commits, files and pull requests between two refs, pinned to the shas they resolve to now."""
        base_sha, head_sha = self.resolve_ref(repo, base), self.resolve_ref(repo, head)
        data = self._json("GET", f"/repos/{repo}/compare/{base_sha}...{head_sha}", f"compare {base}...{head}")
        commits = [_commit_row(c) for c in data.get("commits") or []]
        files = [
            (f["filename"], f.get("status", ""), int(f.get("additions", 0)), int(f.get("deletions", 0)))
            for f in data.get("files") or []
        ]
        prs = self._pull_requests(repo, [sha for sha, _, _ in commits[:MAX_PR_LOOKUPS]])
        return ChangeSet(base_sha, head_sha, commits, files, prs, len(commits) > MAX_PR_LOOKUPS)

    def _pull_requests(self, repo: str, shas: list[str]) -> list[tuple[int, str]]:
        """(number, title) of the PRs that brought in ``shas``, deduplicated, in first-seen order."""
        seen: dict[int, str] = {}
        for sha in shas:
            for pr in self._json("GET", f"/repos/{repo}/commits/{sha}/pulls", f"pulls for {sha[:12]}") or []:
                seen.setdefault(int(pr["number"]), str(pr.get("title", "")))
        return list(seen.items())

    def is_ancestor(self, repo: str, sha: str, of_sha: str) -> bool:
        """True when ``sha`` is ``of_sha`` or reachable from it; RefNotFound for an unknown sha."""
        what = f"compare {sha[:12]}...{of_sha[:12]}"
        reply = self._call("GET", f"/repos/{repo}/compare/{_seg(sha)}...{_seg(of_sha)}", what)
        if reply.status in (404, 422):
            raise RefNotFound(f"{repo}: {sha!r} not found ({_message(reply)})")
        return (reply.json() or {}).get("status") in ("identical", "ahead")

    def dispatch_workflow(self, repo: str, workflow: str, ref: str, inputs: dict[str, Any]) -> None:
        """Start ``workflow`` on branch or tag ``ref`` with ``inputs`` (GitHub answers 204 with no run id)."""
        what = f"dispatch {workflow} on {ref}"
        reply = self._call(
            "POST",
            f"/repos/{repo}/actions/workflows/{_seg(workflow)}/dispatches",
            what,
            payload={"ref": ref, "inputs": inputs},
        )
        if reply.status == 422 and "ref" in _message(reply).lower():
            raise RefNotFound(f"{repo}: {_message(reply)}")
        _raise_for_status(reply, what, self._clock())

    def list_runs(
        self, repo: str, workflow: str, head_sha: str | None, created_after: datetime
    ) -> list[RunStatus]:
        """Dispatch runs of ``workflow`` (at ``head_sha`` if given) since ``created_after``, oldest first."""
        query: dict[str, Any] = {"event": "workflow_dispatch", "created": ">=" + _iso(created_after)}
        if head_sha:
            query["head_sha"] = head_sha
        query["per_page"] = 100  # one page: runs created in the last minutes of one workflow
        path = f"/repos/{repo}/actions/workflows/{_seg(workflow)}/runs"
        data = self._json("GET", path, f"runs of {workflow}", query=query)
        runs = [r for r in data.get("workflow_runs") or [] if not head_sha or r.get("head_sha") == head_sha]
        runs.sort(key=lambda r: (r.get("created_at") or "", r["id"]))
        return [_run_status(r) for r in runs]

    def find_run(
        self,
        repo: str,
        workflow: str,
        head_sha: str | None,
        created_after: datetime,
        title_contains: str | None = None,
    ) -> RunStatus | None:
        """The oldest matching run; with ``title_contains``, only runs whose title (run-name) contains it."""
        runs = self.list_runs(repo, workflow, head_sha, created_after)
        if title_contains:
            runs = [r for r in runs if title_contains in r.display_title]
        return runs[0] if runs else None

    def get_run(self, repo: str, run_id: str | int) -> RunStatus:
        """One workflow run by id."""
        return _run_status(
            self._json("GET", f"/repos/{repo}/actions/runs/{_seg(str(run_id))}", f"run {run_id}")
        )

    def cancel_run(self, repo: str, run_id: str | int) -> None:
        """Ask GitHub to cancel a run (202); a 409 means it had already finished."""
        what = f"cancel run {run_id}"
        reply = self._call(
            "POST", f"/repos/{repo}/actions/runs/{_seg(str(run_id))}/cancel", what, allow=(409,)
        )
        if reply.status != 409:
            _raise_for_status(reply, what, self._clock())


def _commit_row(commit: dict[str, Any]) -> tuple[str, str, str]:
    """(sha, first message line, author name) from a GitHub commit object."""
    inner = commit.get("commit") or {}
    message = (inner.get("message") or "").splitlines()
    author = (inner.get("author") or {}).get("name") or (commit.get("author") or {}).get("login") or ""
    return commit["sha"], message[0] if message else "", author


# ---- executors ---------------------------------------------------------------------------------------------

_PENDING = "pending:"


class WorkflowDispatchExecutor:
    """Deploys by dispatching a GitHub Actions workflow with inputs {environment, sha, request_id}.

    GitHub's dispatch call returns no run id, so the run is found afterwards. With ``match_run_name`` (the
    default) the workflow must set ``run-name: Deploy ${{ inputs.request_id }}`` (any title containing the
    request id): the run is matched by that title, which is exact, survives the branch moving, and lets a
    retried ``trigger`` reuse the run instead of deploying twice. Without it the run is guessed as the oldest
    run at the ref's tip created since we dispatched, which two concurrent deploys of one sha can confuse.
    """

    def __init__(
        self,
        client: GitHubClient,
        repo: str,
        workflow: str,
        *,
        match_run_name: bool = True,
        find_attempts: int = 5,
        poll_interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock_skew: timedelta = timedelta(seconds=30),
    ) -> None:
        self.client = client
        self.repo = repo
        self.workflow = workflow
        self.match_run_name = match_run_name
        self.find_attempts = max(1, find_attempts)
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock
        self._skew = clock_skew  # our clock and GitHub's differ; created_at is compared across them

    def trigger(self, request: DeployTrigger) -> str:
        """Dispatch the workflow for ``request.sha`` on ``request.ref``; returns a run id or a pending ref."""
        if not request.ref:
            raise DeployError("workflow_dispatch needs a branch or tag in DeployTrigger.ref")
        tip = self.client.resolve_ref(self.repo, request.ref)
        if tip != request.sha and not self.client.is_ancestor(self.repo, request.sha, tip):
            # The workflow runs from the ref's tip; refuse a sha that the named branch does not contain.
            raise RefNotFound(f"{self.repo}: {request.sha[:12]} is not on {request.ref}")
        if self.match_run_name:
            earlier = self._find(tip, self._clock() - timedelta(days=1), request.request_id)
            if earlier is not None:
                logger.info("deploy %s: reusing run %s", request.request_id, earlier.id)
                return earlier.id
        since = self._clock() - self._skew
        inputs = {"environment": request.environment, "sha": request.sha, "request_id": request.request_id}
        self.client.dispatch_workflow(self.repo, self.workflow, request.ref, inputs)
        logger.info(
            "deploy %s: dispatched %s on %s at %s", request.request_id, self.workflow, request.ref, tip
        )
        return self._await_run(tip, since, request.request_id)

    def _find(self, tip: str, since: datetime, request_id: str) -> RunStatus | None:
        """This request's run: by run-name, or by the ref's tip when run-names are not used."""
        if self.match_run_name:
            return self.client.find_run(self.repo, self.workflow, None, since, title_contains=request_id)
        return self.client.find_run(self.repo, self.workflow, tip, since)

    def _await_run(self, tip: str, since: datetime, request_id: str) -> str:
        """Poll a bounded number of times for the new run; a pending ref lets ``status`` keep looking."""
        for attempt in range(self.find_attempts):
            run = self._find(tip, since, request_id)
            if run is not None:
                return run.id
            if attempt + 1 < self.find_attempts:
                self._sleep(self.poll_interval)
        logger.warning("deploy %s: run not visible yet; returning a pending reference", request_id)
        return _pending_ref(tip, since, request_id)

    def status(self, ref: str) -> RunStatus:
        """The run's status; a pending reference reports ``queued`` until the run shows up."""
        if not ref.startswith(_PENDING):
            return self.client.get_run(self.repo, ref)
        tip, since, request_id = _parse_pending(ref)
        run = self._find(tip, since, request_id)
        if run is None:
            return RunStatus(id="", status="queued", conclusion=None, html_url="", head_sha=tip)
        return self.client.get_run(self.repo, run.id)


def _pending_ref(tip: str, since: datetime, request_id: str) -> str:
    """``pending:<sha>:<epoch seconds>:<request_id>``: enough for ``status`` to keep looking for the run."""
    return f"{_PENDING}{tip}:{int(since.timestamp())}:{request_id}"


def _parse_pending(ref: str) -> tuple[str, datetime, str]:
    """(tip sha, created_after, request_id) from a pending reference."""
    tip, epoch, request_id = ref[len(_PENDING) :].split(":", 2)
    return tip, datetime.fromtimestamp(int(epoch), UTC), request_id


# ---- generic webhook ---------------------------------------------------------------------------------------


def _as_bytes(value: str | bytes) -> bytes:
    """Secrets and bodies may arrive as text or bytes."""
    return value.encode() if isinstance(value, str) else value


def sign_webhook(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "v1:<timestamp>:<body>">``; the timestamp is signed too."""
    digest = hmac.new(_as_bytes(secret), b"v1:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_webhook_signature(
    secret: str | bytes, timestamp: str, body: bytes, signature: str, now: float, tolerance: float = 300
) -> bool:
    """True when ``signature`` is ours for this body and timestamp, and the timestamp is within ``tolerance``.

    Receivers should also remember ``request_id`` (or the signature) for ``tolerance`` seconds: a copy
    replayed inside the window carries a valid signature.
    """
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign_webhook(secret, timestamp, body), signature or "")


class WebhookExecutor:
    """Deploys by POSTing a signed JSON request to a receiver that answers {"run_id", "status_url"}."""

    def __init__(
        self, url: str, secret: str | bytes, timeout: float = 10.0, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.url = url
        self._secret = secret
        self.timeout = timeout
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookExecutor({_redact(self.url)!r})"  # never the secret

    def _signed(self, method: str, url: str, body: bytes, what: str) -> Any:
        """Send a signed request and return its JSON.

        A GET has no body, so it is signed over its request target (path and query): a captured status-poll
        signature then cannot be reused to read another run.
        """
        timestamp = str(int(self._clock()))
        if method == "GET":
            body = _target(url).encode()
        headers = {
            "Accept": "application/json",
            "User-Agent": "clawback-deploy",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign_webhook(self._secret, timestamp, body),
        }
        if method == "POST":
            headers["Content-Type"] = "application/json"
        reply = _send(method, url, headers, body if method == "POST" else None, self.timeout)
        _raise_for_status(reply, what, self._clock())
        return reply.json()

    def trigger(self, request: DeployTrigger) -> str:
        """POST the deploy request; returns the receiver's status URL as the reference."""
        payload = {k: v for k, v in asdict(request).items() if k != "ref" or v}
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        reply = self._signed("POST", self.url, body, f"webhook deploy {request.request_id}")
        if not isinstance(reply, dict) or not isinstance(reply.get("status_url"), str):
            raise DeployError("webhook reply lacks status_url")
        status_url = reply["status_url"]
        if _origin(status_url) != _origin(self.url):
            # We sign requests to this URL; never let a receiver point us (and our signature) elsewhere.
            raise DeployError(f"webhook status_url is not on {_origin(self.url)}")
        logger.info("deploy %s: webhook accepted as run %s", request.request_id, reply.get("run_id"))
        return status_url

    def status(self, ref: str) -> RunStatus:
        """GET the status URL; expects {status, conclusion} and optionally run_id, html_url, head_sha."""
        reply = self._signed("GET", ref, b"", "webhook status")  # signed over the path, see _signed
        if not isinstance(reply, dict) or reply.get("status") not in ("queued", "in_progress", "completed"):
            raise DeployError("webhook status reply lacks a valid status")
        return RunStatus(
            id=str(reply.get("run_id") or ref),
            status=reply["status"],
            conclusion=reply.get("conclusion"),
            html_url=str(reply.get("html_url") or ""),
            head_sha=str(reply.get("head_sha") or ""),
        )


def _target(url: str) -> str:
    """The request target of a URL: path plus ``?query`` when there is one."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _origin(url: str) -> tuple[str, str]:
    """(scheme, host:port) of a URL."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
