"""Deploy executors: start a deploy somewhere else and follow it.

Two executors share the :class:`Executor` protocol: :class:`WorkflowDispatchExecutor` (GitHub Actions
``workflow_dispatch`` through :class:`GitHubClient`) and :class:`WebhookExecutor` (a signed JSON POST to a
generic receiver). Both are pure clients: URLs, tokens, secrets, clocks and sleeps are passed in; nothing
reads the environment.

What runs is exactly the approved commit: nothing resolves a branch at execution. The GitHub executor creates
``refs/heads/clawback/deploy-<request id>`` at the approved sha, dispatches on that ref (GitHub runs the commit
a ref points at, workflow file included) and deletes it afterwards (:meth:`Executor.release`); the webhook
executor sends the sha and no branch.

Errors::

    ClawbackError
    └── DeployError               anything a deploy client raises on purpose
        ├── RefNotFound           the branch, tag or sha does not exist
        ├── PinnedRefConflict     our pinned ref already exists at another commit (someone planted it)
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


class PinnedRefConflict(DeployError):
    """``clawback/deploy-<request id>`` exists but points at a commit other than the approved one."""


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
    """One approved deploy request for exactly ``sha``; ``ref`` is only what the requester named (information)."""

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

    def dispatch_ref(self, request: DeployTrigger) -> str | None:
        """The ref the deploy runs from (pinned to ``request.sha``), or None when the executor sends the sha."""
        ...

    def release(self, request: DeployTrigger) -> bool:
        """Remove what ``trigger`` created for this request (its pinned ref); True when something was removed."""
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

    def check_repo(self, repo: str, workflow: str | None) -> str:
        """The repository (and workflow) as this token sees them; DeployError naming what is missing."""
        reply = self._call("GET", f"/repos/{repo}", f"repository {repo}")
        if reply.status == 404:
            raise RefNotFound(f"repository {repo} not found, or the token cannot see it")
        _raise_for_status(reply, f"repository {repo}", self._clock())
        if not workflow:
            return f"{repo} reachable"
        path = f"/repos/{repo}/actions/workflows/{_seg(workflow)}"
        reply = self._call("GET", path, f"workflow {workflow}")
        if reply.status == 404:
            raise RefNotFound(f"workflow {workflow} not found in {repo}")
        _raise_for_status(reply, f"workflow {workflow}", self._clock())
        state = (reply.json() or {}).get("state", "")
        if state and state != "active":
            raise DeployError(f"workflow {workflow} in {repo} is {state}")
        return f"{repo}, workflow {workflow} ({state or 'found'})"

    def deployed_sha(self, repo: str, environment: str, max_deployments: int = 30) -> str | None:
        """The sha of the newest deployment to ``environment`` whose latest status is ``success``, or None.

        GitHub's Deployments API (the record a stock ``environment:`` job leaves): deployments of that
        environment newest first, then each one's newest status; an ``inactive`` one was superseded, a
        ``failure`` or ``error`` one never went live, so only ``success`` counts.
        """
        query = {"environment": environment, "per_page": max(1, min(max_deployments, 100))}
        what = f"deployments to {environment}"
        deployments = self._json("GET", f"/repos/{repo}/deployments", what, query=query) or []
        deployments = [d for d in deployments if isinstance(d, dict) and d.get("environment") == environment]
        deployments.sort(key=lambda d: (d.get("created_at") or "", int(d.get("id") or 0)), reverse=True)
        for deployment in deployments[:max_deployments]:
            path = f"/repos/{repo}/deployments/{_seg(str(deployment['id']))}/statuses"
            statuses = self._json(
                "GET", path, f"statuses of deployment {deployment['id']}", query={"per_page": 100}
            )
            statuses = [st for st in statuses or [] if isinstance(st, dict)]
            latest = max(statuses, key=lambda st: (st.get("created_at") or "", int(st.get("id") or 0)), default={})
            sha = deployment.get("sha")
            if latest.get("state") == "success" and isinstance(sha, str) and len(sha) == 40:
                return sha
        return None

    def get_ref(self, repo: str, ref: str) -> str | None:
        """The sha ``heads/<branch>`` or ``tags/<tag>`` points at, None when it does not exist."""
        reply = self._call("GET", f"/repos/{repo}/git/ref/{quote(ref, safe='/')}", f"get ref {ref}")
        if reply.status in (404, 422):
            return None
        return ((reply.json() or {}).get("object") or {}).get("sha")

    def create_ref(self, repo: str, ref: str, sha: str) -> bool:
        """Create ``refs/<ref>`` at ``sha`` (201: True); False when it already exists (422), whatever it points
        at: the caller checks with :meth:`get_ref`. RefNotFound when GitHub does not know the commit."""
        what = f"create ref {ref}"
        reply = self._call("POST", f"/repos/{repo}/git/refs", what, payload={"ref": f"refs/{ref}", "sha": sha})
        if reply.status == 422 and "already exists" in _message(reply).lower():
            return False
        if reply.status == 422 and "object does not exist" in _message(reply).lower():
            raise RefNotFound(f"{repo}: commit {sha[:12]} not found ({_message(reply)})")
        _raise_for_status(reply, what, self._clock())
        created = ((reply.json() or {}).get("object") or {}).get("sha")
        if created != sha:
            raise DeployError(f"{repo}: {ref} was created at {str(created)[:12]}, not {sha[:12]}")
        return True

    def delete_ref(self, repo: str, ref: str) -> bool:
        """Delete ``refs/<ref>`` (204: True); False when it did not exist (422)."""
        what = f"delete ref {ref}"
        reply = self._call("DELETE", f"/repos/{repo}/git/refs/{quote(ref, safe='/')}", what)
        if reply.status in (404, 422):
            return False
        _raise_for_status(reply, what, self._clock())
        return True

    def dispatch_workflow(
        self, repo: str, workflow: str, ref: str, inputs: dict[str, Any], *, return_run_details: bool = True
    ) -> int | None:
        """Start ``workflow`` on branch or tag ``ref``; the new run's id, or None when the server answers 204.

        GitHub answers 200 with ``workflow_run_id`` when asked with ``return_run_details`` (since 2026-02-19);
        older GitHub Enterprise Servers ignore the parameter (204) or reject it (422), then it is sent again
        without it (nothing was started by a rejected request).
        """
        what = f"dispatch {workflow} on {ref}"
        payload: dict[str, Any] = {"ref": ref, "inputs": inputs}
        if return_run_details:
            payload["return_run_details"] = True
        path = f"/repos/{repo}/actions/workflows/{_seg(workflow)}/dispatches"
        reply = self._call("POST", path, what, payload=payload)
        if reply.status in (400, 422) and "return_run_details" in _message(reply):
            return self.dispatch_workflow(repo, workflow, ref, inputs, return_run_details=False)
        if reply.status == 422 and "ref" in _message(reply).lower():
            raise RefNotFound(f"{repo}: {_message(reply)}")
        _raise_for_status(reply, what, self._clock())
        if reply.status == 204 or not return_run_details:
            return None
        run_id = (reply.json() or {}).get("workflow_run_id")
        if not isinstance(run_id, int):
            raise DeployError(f"{what}: the answer has no workflow_run_id")
        return run_id

    def list_runs(
        self,
        repo: str,
        workflow: str,
        head_sha: str | None,
        created_after: datetime,
        branch: str | None = None,
    ) -> list[RunStatus]:
        """``workflow_dispatch`` runs of ``workflow`` created since ``created_after`` (at ``head_sha`` and on
        ``branch`` when given), oldest first; every filter is checked again on what GitHub answered."""
        query: dict[str, Any] = {"event": "workflow_dispatch", "created": ">=" + _iso(created_after)}
        if head_sha:
            query["head_sha"] = head_sha
        if branch:
            query["branch"] = branch
        query["per_page"] = 100  # one page: runs created in the last minutes of one workflow
        path = f"/repos/{repo}/actions/workflows/{_seg(workflow)}/runs"
        data = self._json("GET", path, f"runs of {workflow}", query=query)
        since = _iso(created_after)
        runs = [
            r
            for r in data.get("workflow_runs") or []
            if r.get("event") == "workflow_dispatch"
            and (r.get("created_at") or "") >= since  # same format, so text order is time order
            and (not head_sha or r.get("head_sha") == head_sha)
            and (not branch or r.get("head_branch") == branch)
        ]
        runs.sort(key=lambda r: (r.get("created_at") or "", r["id"]))
        return [_run_status(r) for r in runs]

    def find_run(
        self,
        repo: str,
        workflow: str,
        head_sha: str | None,
        created_after: datetime,
        branch: str | None = None,
    ) -> RunStatus | None:
        """The oldest matching run (see :meth:`list_runs`); run titles are never trusted."""
        runs = self.list_runs(repo, workflow, head_sha, created_after, branch)
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
PINNED_PREFIX = "clawback/deploy-"


def pinned_branch(request_id: str) -> str:
    """The branch Clawback creates at the approved sha of one request and dispatches on."""
    return PINNED_PREFIX + request_id


class WorkflowDispatchExecutor:
    """Deploys by dispatching a GitHub Actions workflow with inputs {environment, sha, request_id}.

    The workflow is dispatched on ``refs/heads/clawback/deploy-<request id>``, a branch Clawback creates at the
    approved sha just before: GitHub runs the commit (and the workflow file) that ref points at, so a push to
    the requester's branch after the approval changes nothing. The token therefore needs ``contents:write``
    (refs) besides ``actions:write`` (dispatch). The branch is deleted by :meth:`release` after the run.

    The run is the one whose id the dispatch returned (``return_run_details``). Where the server answers 204
    (older GitHub Enterprise Server) it is the oldest ``workflow_dispatch`` run on the pinned branch at exactly
    the sha, created after the dispatch (less ``clock_skew``); run titles are never trusted. A retried
    ``trigger`` (after a crash or a timeout) finds its branch already at the sha and reuses the run on it
    instead of deploying twice; a branch of that name at any other commit refuses the deploy.
    """

    def __init__(
        self,
        client: GitHubClient,
        repo: str,
        workflow: str,
        *,
        find_attempts: int = 5,
        poll_interval: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock_skew: timedelta = timedelta(seconds=30),
    ) -> None:
        self.client = client
        self.repo = repo
        self.workflow = workflow
        self.find_attempts = max(1, find_attempts)
        self.poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock
        self._skew = clock_skew  # our clock and GitHub's differ; created_at is compared across them

    def dispatch_ref(self, request: DeployTrigger) -> str:
        """``refs/heads/clawback/deploy-<request id>``: the ref dispatched, pinned to ``request.sha``."""
        return "refs/heads/" + pinned_branch(request.request_id)

    def trigger(self, request: DeployTrigger) -> str:
        """Pin a branch at ``request.sha``, dispatch on it; returns the run id (or a pending reference)."""
        branch = pinned_branch(request.request_id)
        if not self.client.create_ref(self.repo, f"heads/{branch}", request.sha):
            current = self.client.get_ref(self.repo, f"heads/{branch}")
            if current != request.sha:
                raise PinnedRefConflict(
                    f"{self.repo}: {branch} already exists at another commit "
                    f"({str(current)[:12]}, not the approved {request.sha[:12]})"
                )
            # Ours from an earlier attempt (a crash, a timeout): reuse the run it started, if any.
            earlier = self.client.find_run(
                self.repo, self.workflow, request.sha, self._clock() - timedelta(days=1), branch
            )
            if earlier is not None:
                logger.info("deploy %s: reusing run %s on %s", request.request_id, earlier.id, branch)
                return earlier.id
        since = self._clock() - self._skew
        inputs = {"environment": request.environment, "sha": request.sha, "request_id": request.request_id}
        run_id = self.client.dispatch_workflow(self.repo, self.workflow, self.dispatch_ref(request), inputs)
        logger.info(
            "deploy %s: dispatched %s on %s at %s (run %s)",
            request.request_id,
            self.workflow,
            branch,
            request.sha,
            run_id if run_id is not None else "not returned",
        )
        if run_id is not None:
            return str(run_id)
        return self._await_run(request.sha, since, request.request_id)

    def release(self, request: DeployTrigger) -> bool:
        """Delete the pinned branch if it still points at the approved sha (never anything else)."""
        ref = f"heads/{pinned_branch(request.request_id)}"
        if self.client.get_ref(self.repo, ref) != request.sha:
            return False
        return self.client.delete_ref(self.repo, ref)

    def _find(self, sha: str, since: datetime, request_id: str) -> RunStatus | None:
        """A run on this request's pinned branch at exactly ``sha``, created since ``since``."""
        return self.client.find_run(self.repo, self.workflow, sha, since, pinned_branch(request_id))

    def _await_run(self, sha: str, since: datetime, request_id: str) -> str:
        """Poll a bounded number of times for the new run; a pending ref lets ``status`` keep looking."""
        for attempt in range(self.find_attempts):
            run = self._find(sha, since, request_id)
            if run is not None:
                return run.id
            if attempt + 1 < self.find_attempts:
                self._sleep(self.poll_interval)
        logger.warning("deploy %s: run not visible yet; returning a pending reference", request_id)
        return _pending_ref(sha, since, request_id)

    def status(self, ref: str) -> RunStatus:
        """The run's status; a pending reference reports ``queued`` until the run shows up."""
        if not ref.startswith(_PENDING):
            return self.client.get_run(self.repo, ref)
        sha, since, request_id = _parse_pending(ref)
        run = self._find(sha, since, request_id)
        if run is None:
            return RunStatus(id="", status="queued", conclusion=None, html_url="", head_sha=sha)
        return self.client.get_run(self.repo, run.id)


def _pending_ref(sha: str, since: datetime, request_id: str) -> str:
    """``pending:<sha>:<epoch seconds>:<request_id>``: enough for ``status`` to keep looking for the run."""
    return f"{_PENDING}{sha}:{int(since.timestamp())}:{request_id}"


def _parse_pending(ref: str) -> tuple[str, datetime, str]:
    """(sha, created_after, request_id) from a pending reference."""
    sha, epoch, request_id = ref[len(_PENDING) :].split(":", 2)
    return sha, datetime.fromtimestamp(int(epoch), UTC), request_id


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

    def dispatch_ref(self, request: DeployTrigger) -> None:
        """The receiver is sent the exact sha and no branch to resolve."""
        return None

    def release(self, request: DeployTrigger) -> bool:
        """Nothing is created on our side of a webhook deploy."""
        return False

    def trigger(self, request: DeployTrigger) -> str:
        """POST the deploy request (the exact ``sha``, no branch); returns the receiver's status URL."""
        # The requester's branch name is left out on purpose: a receiver must deploy ``sha``, never a tip.
        payload = {k: v for k, v in asdict(request).items() if k != "ref"}
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
