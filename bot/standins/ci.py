"""A local GitHub REST API stand-in for the deploy assistant.

It serves, for seeded repositories, the endpoints the deploy executors call, with GitHub's paths and the
JSON fields we read: commits (resolve a ref), compare, commit → pull requests, ``workflow_dispatch`` and
workflow runs (list, get, cancel), git refs (create, get, delete) and deployments (list with their statuses,
create, add a status: what a stock workflow job with ``environment:`` leaves behind; seed with
:meth:`CIStandIn.add_deployment`). Histories are linear per branch (each
commit has one parent), which is all a deploy plan needs.

``workflow_dispatch`` follows GitHub's protocol: with ``"return_run_details": true`` it answers 200 with
``workflow_run_id``, ``run_url`` and ``html_url``; without it 204. ``dispatch_mode = "legacy"`` behaves like an
older GitHub Enterprise Server that ignores the parameter (always 204), ``"strict-legacy"`` like one that rejects
it (422). A run is created at the commit its ref points at *when dispatched*: pushing to the branch afterwards
(``add_commits``) does not change it. ``add_foreign_run`` creates a run nobody here dispatched (another
person's, with any title), and ``missing_permissions`` makes the token lack e.g. ``contents:write``.

Runs are deterministic: nothing sleeps or ticks on its own. A run is ``queued`` until first fetched by id,
then ``in_progress``, and ``completed`` on the ``steps``-th fetch (see :meth:`CIStandIn.script_runs`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from bot.standins.base import QuietHandler, RecordedRequest, StandInServer

GITHUB_WEB = "https://github.com"
_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # fixed commit dates keep seeded data deterministic
_RUN_ID_BASE = 7_000_000_000
_WORKFLOW_ID_BASE = 161_335
_DEPLOYMENT_ID_BASE = 1_900_000_000
_DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")


def _iso(moment: datetime) -> str:
    """GitHub's timestamp format: UTC, whole seconds, ``Z`` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    """Parse a GitHub timestamp or a plain date (``YYYY-MM-DD``) as UTC."""
    if len(text) == 10:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class _Commit:
    sha: str
    parent: str | None
    message: str
    author: str
    date: datetime
    files: list[dict[str, Any]]
    pr: dict[str, Any] | None


@dataclass
class _Repo:
    full_name: str
    default_branch: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> head sha
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, _Commit] = field(default_factory=dict)
    workflows: dict[str, int] = field(default_factory=dict)  # file name -> numeric id


@dataclass
class _Run:
    id: int
    repo: str
    workflow: str
    workflow_id: int
    head_branch: str
    head_sha: str
    inputs: dict[str, Any]
    created_at: datetime
    outcome: str  # success | failure | cancelled | never
    steps: int
    run_number: int
    display_title: str
    polls: int = 0
    cancelled: bool = False
    event: str = "workflow_dispatch"


@dataclass
class _Deployment:
    id: int
    repo: str
    environment: str
    ref: str
    sha: str
    created_at: datetime
    statuses: list[dict[str, Any]] = field(default_factory=list)  # oldest first


@dataclass
class _Fault:
    path_substring: str
    status: int = 0
    body: Any = None
    headers: dict[str, str] | None = None
    delay: float = 0.0


def _normalise_file(entry: str | dict[str, Any]) -> dict[str, Any]:
    """Seed files may be bare paths; give them GitHub's file fields."""
    if isinstance(entry, str):
        entry = {"filename": entry}
    additions = int(entry.get("additions", 1))
    deletions = int(entry.get("deletions", 0))
    return {
        "filename": entry["filename"],
        "status": entry.get("status", "modified"),
        "additions": additions,
        "deletions": deletions,
        "changes": additions + deletions,
    }


class CIStandIn(StandInServer):
    """GitHub REST stand-in: seed repos with ``add_repo``/``add_commits``, script runs, inject faults."""

    def __init__(
        self,
        token: str = "ghp-standin-token",
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(host, port)
        self.token = token
        self.clock = clock or (lambda: datetime.now(UTC))
        self.repos: dict[str, _Repo] = {}
        self.dispatches: list[dict[str, Any]] = []
        self.runs: dict[int, _Run] = {}
        self._outcomes: list[str] = ["success"]
        self._steps = 2
        self._faults: list[_Fault] = []
        self._sha_counter = 0
        self.dispatch_mode = "current"  # current | legacy (always 204) | strict-legacy (422 on the parameter)
        self.missing_permissions: set[str] = set()  # e.g. {"contents:write"}: those calls answer 403
        self.deployments: dict[int, _Deployment] = {}
        # True: runs are titled like a workflow with run-name "Deploy ${{ inputs.request_id }}"; False: like a
        # stock workflow with no run-name (GitHub then titles a dispatched run with the workflow's name).
        self.run_name_convention = True

    # ---- seeding -------------------------------------------------------------------------------------------

    def add_repo(
        self, full_name: str, default_branch: str = "main", workflows: Iterable[str] = ("deploy.yml",)
    ) -> str:
        """Create a repository with one initial commit on ``default_branch``; returns that commit's sha."""
        with self.lock:
            repo = _Repo(full_name, default_branch)
            for i, name in enumerate(workflows):
                repo.workflows[name] = _WORKFLOW_ID_BASE + len(self.repos) * 100 + i
            self.repos[full_name] = repo
        return self.add_commits(
            full_name, default_branch, [{"message": "Initial commit", "files": ["README.md"]}]
        )[0]

    def add_commits(
        self, full_name: str, branch: str, commits: list[dict[str, Any]], from_ref: str | None = None
    ) -> list[str]:
        """Append commits to ``branch`` (created from ``from_ref`` or the default branch); returns their shas.

        Each commit dict takes ``message``, optional ``author`` (login), ``files`` (paths or GitHub file
        dicts) and ``pr`` (``{"number", "title"}``) for the pull request that brought it in.
        """
        with self.lock:
            repo = self.repos[full_name]
            if branch not in repo.branches and repo.branches:
                start = self._resolve(repo, from_ref or repo.default_branch)
                if start is None:
                    raise KeyError(f"unknown ref {from_ref!r} in {full_name}")
                repo.branches[branch] = start
            shas = [self._append(repo, branch, spec) for spec in commits]
        return shas

    def add_tag(self, full_name: str, tag: str, ref: str) -> str:
        """Point a lightweight tag at ``ref``; returns the sha."""
        with self.lock:
            repo = self.repos[full_name]
            sha = self._resolve(repo, ref)
            if sha is None:
                raise KeyError(ref)
            repo.tags[tag] = sha
        return sha

    def add_foreign_run(
        self,
        full_name: str,
        branch: str,
        title: str,
        workflow: str = "deploy.yml",
        event: str = "workflow_dispatch",
        outcome: str = "success",
    ) -> int:
        """A run someone else started on ``branch``'s tip (any title, e.g. one holding our request id)."""
        with self.lock:
            repo = self.repos[full_name]
            run = self._new_run(repo, workflow, branch, repo.branches[branch], {}, outcome=outcome)
            run.display_title, run.event = title, event
        return run.id

    def add_deployment(
        self, full_name: str, environment: str, ref: str, states: Iterable[str] = ("success",)
    ) -> int:
        """A deployment of ``ref`` to ``environment`` with these statuses in order (the last is the latest);
        a ``success`` marks the environment's older successful deployments ``inactive``, as GitHub does."""
        with self.lock:
            repo = self.repos[full_name]
            sha = self._resolve(repo, ref)
            if sha is None:
                raise KeyError(ref)
            deployment = self._new_deployment(repo, environment, ref, sha)
            for state in states:
                self._add_status(deployment, state)
        return deployment.id

    def _new_deployment(self, repo: _Repo, environment: str, ref: str, sha: str) -> _Deployment:
        deployment_id = _DEPLOYMENT_ID_BASE + len(self.deployments) + 1
        deployment = _Deployment(deployment_id, repo.full_name, environment, ref, sha, self.clock())
        self.deployments[deployment_id] = deployment
        return deployment

    def _add_status(self, deployment: _Deployment, state: str) -> dict[str, Any]:
        if state not in _DEPLOYMENT_STATES:
            raise ValueError(f"unknown deployment state {state!r}")
        if state == "success":
            for other in self.deployments.values():
                if (
                    other is not deployment
                    and (other.repo, other.environment) == (deployment.repo, deployment.environment)
                    and other.statuses
                    and other.statuses[-1]["state"] == "success"
                ):
                    other.statuses.append(self._status_json(other, "inactive"))
        status = self._status_json(deployment, state)
        deployment.statuses.append(status)
        return status

    def _status_json(self, deployment: _Deployment, state: str) -> dict[str, Any]:
        status_id = _DEPLOYMENT_ID_BASE * 10 + sum(len(d.statuses) for d in self.deployments.values()) + 1
        return {
            "id": status_id,
            "state": state,
            "environment": deployment.environment,
            "description": "",
            "created_at": _iso(self.clock()),
            "updated_at": _iso(self.clock()),
            "deployment_url": f"{self.url}/repos/{deployment.repo}/deployments/{deployment.id}",
        }

    def deployment_json(self, deployment: _Deployment) -> dict[str, Any]:
        """A deployment in GitHub's shape."""
        return {
            "id": deployment.id,
            "sha": deployment.sha,
            "ref": deployment.ref,
            "task": "deploy",
            "environment": deployment.environment,
            "original_environment": deployment.environment,
            "created_at": _iso(deployment.created_at),
            "updated_at": _iso(deployment.created_at),
            "statuses_url": f"{self.url}/repos/{deployment.repo}/deployments/{deployment.id}/statuses",
        }

    def _append(self, repo: _Repo, branch: str, spec: dict[str, Any]) -> str:
        """Add one commit on top of ``branch``."""
        self._sha_counter += 1
        message = spec.get("message", f"commit {self._sha_counter}")
        seed = f"{repo.full_name}\0{branch}\0{self._sha_counter}\0{message}"
        sha = hashlib.sha1(seed.encode()).hexdigest()  # noqa: S324 - a fake commit id, not security
        repo.commits[sha] = _Commit(
            sha=sha,
            parent=repo.branches.get(branch),
            message=message,
            author=spec.get("author", "octocat"),
            date=_EPOCH + timedelta(minutes=self._sha_counter),
            files=[_normalise_file(f) for f in spec.get("files", [])],
            pr=spec.get("pr"),
        )
        repo.branches[branch] = sha
        return sha

    # ---- scripting and faults ------------------------------------------------------------------------------

    def script_runs(self, outcomes: Iterable[str] = ("success",), steps: int = 2) -> None:
        """Each new run takes the next outcome (the last one repeats) and completes on its ``steps``-th fetch.

        Outcomes: ``success``, ``failure``, ``cancelled``, or ``never`` (stays ``in_progress`` forever).
        """
        outcomes = list(outcomes)
        if not outcomes or steps < 1:
            raise ValueError("need at least one outcome and steps >= 1")
        with self.lock:
            self._outcomes, self._steps = outcomes, steps

    def fail_next(
        self, path_substring: str, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """The next request whose path contains ``path_substring`` gets ``status``, ``body``, ``headers``."""
        if body is None:
            body = {"message": "Server Error"} if status >= 500 else {"message": "Forbidden"}
        with self.lock:
            self._faults.append(_Fault(path_substring, status=status, body=body, headers=headers))

    def rate_limit_next(self, path_substring: str, retry_after: int = 60) -> None:
        """The next matching request gets GitHub's primary rate-limit 403."""
        reset = int(time.time()) + retry_after
        self.fail_next(
            path_substring,
            403,
            {
                "message": "API rate limit exceeded for user ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            },
            {
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(reset),
                "retry-after": str(retry_after),
            },
        )

    def delay_next(self, path_substring: str, seconds: float) -> None:
        """The next matching request is answered only after ``seconds`` (to provoke client timeouts)."""
        with self.lock:
            self._faults.append(_Fault(path_substring, delay=seconds))

    def _take_fault(self, path: str) -> _Fault | None:
        """Pop the first fault whose substring matches ``path``."""
        with self.lock:
            for i, fault in enumerate(self._faults):
                if fault.path_substring in path:
                    return self._faults.pop(i)
        return None

    # ---- model ---------------------------------------------------------------------------------------------

    def _resolve(self, repo: _Repo, ref: str) -> str | None:
        """Branch, tag, ``heads/``/``tags/`` qualified name, full sha or unique sha prefix (>= 7) → sha."""
        for prefix, table in (
            ("refs/heads/", repo.branches),
            ("heads/", repo.branches),
            ("refs/tags/", repo.tags),
            ("tags/", repo.tags),
        ):
            if ref.startswith(prefix):
                return table.get(ref[len(prefix) :])
        if ref in repo.branches:
            return repo.branches[ref]
        if ref in repo.tags:
            return repo.tags[ref]
        if re.fullmatch(r"[0-9a-f]{7,40}", ref):
            matches = [sha for sha in repo.commits if sha.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
        return None

    def _ancestry(self, repo: _Repo, sha: str) -> list[str]:
        """``sha`` and its ancestors, newest first."""
        chain: list[str] = []
        current: str | None = sha
        while current is not None and len(chain) <= len(repo.commits):
            chain.append(current)
            current = repo.commits[current].parent
        return chain

    def _new_run(
        self,
        repo: _Repo,
        workflow: str,
        ref: str,
        sha: str,
        inputs: dict[str, Any],
        outcome: str | None = None,
    ) -> _Run:
        """Create a run for a dispatch, taking the next scripted outcome."""
        if outcome is None:
            outcome = self._outcomes.pop(0) if len(self._outcomes) > 1 else self._outcomes[0]
        run_id = _RUN_ID_BASE + len(self.runs) + 1
        # Like a workflow whose run-name is "Deploy ${{ inputs.request_id }}" (see ``run_name_convention``).
        if self.run_name_convention and inputs.get("request_id"):
            title = f"Deploy {inputs['request_id']}"
        else:
            title = workflow.rsplit(".", 1)[0]
        run = _Run(
            id=run_id,
            repo=repo.full_name,
            workflow=workflow,
            workflow_id=repo.workflows[workflow],
            head_branch=ref.removeprefix("refs/heads/").removeprefix("refs/tags/"),
            head_sha=sha,
            inputs=dict(inputs),
            created_at=self.clock(),
            outcome=outcome,
            steps=self._steps,
            run_number=sum(1 for r in self.runs.values() if r.repo == repo.full_name) + 1,
            display_title=title,
        )
        self.runs[run_id] = run
        return run

    def run_state(self, run: _Run) -> tuple[str, str | None]:
        """(status, conclusion) for a run as of now."""
        if run.cancelled:
            return "completed", "cancelled"
        if run.polls == 0:
            return "queued", None
        if run.outcome == "never" or run.polls < run.steps:
            return "in_progress", None
        return "completed", run.outcome

    def run_json(self, run: _Run) -> dict[str, Any]:
        """A workflow run in GitHub's shape (the fields clients read)."""
        status, conclusion = self.run_state(run)
        api = f"{self.url}/repos/{run.repo}/actions/runs/{run.id}"
        return {
            "id": run.id,
            "name": run.workflow.rsplit(".", 1)[0],
            "display_title": run.display_title,
            "run_number": run.run_number,
            "run_attempt": 1,
            "event": run.event,
            "status": status,
            "conclusion": conclusion,
            "workflow_id": run.workflow_id,
            "path": f".github/workflows/{run.workflow}",
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "url": api,
            "html_url": f"{GITHUB_WEB}/{run.repo}/actions/runs/{run.id}",
            "cancel_url": f"{api}/cancel",
            "created_at": _iso(run.created_at),
            "updated_at": _iso(self.clock()),
        }

    def commit_json(self, repo: _Repo, commit: _Commit, with_files: bool = True) -> dict[str, Any]:
        """A commit in GitHub's shape."""
        person = {"name": commit.author, "email": f"{commit.author}@example.com", "date": _iso(commit.date)}
        body: dict[str, Any] = {
            "sha": commit.sha,
            "url": f"{self.url}/repos/{repo.full_name}/commits/{commit.sha}",
            "html_url": f"{GITHUB_WEB}/{repo.full_name}/commit/{commit.sha}",
            "commit": {"message": commit.message, "author": person, "committer": person},
            "author": {"login": commit.author},
            "committer": {"login": commit.author},
            "parents": [{"sha": commit.parent}] if commit.parent else [],
        }
        if with_files:
            adds = sum(f["additions"] for f in commit.files)
            dels = sum(f["deletions"] for f in commit.files)
            body["stats"] = {"total": adds + dels, "additions": adds, "deletions": dels}
            body["files"] = [dict(f) for f in commit.files]
        return body


def _merge_files(commits: list[_Commit]) -> list[dict[str, Any]]:
    """Combine per-commit file changes into one entry per file, as compare does."""
    merged: dict[str, dict[str, Any]] = {}
    for commit in commits:
        for f in commit.files:
            entry = merged.setdefault(f["filename"], {**f, "additions": 0, "deletions": 0, "changes": 0})
            entry["additions"] += f["additions"]
            entry["deletions"] += f["deletions"]
            entry["changes"] += f["changes"]
            if entry["status"] != "added" or f["status"] == "removed":
                entry["status"] = f["status"]
    return list(merged.values())


_NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


class _Handler(QuietHandler):
    """Routes GitHub REST paths to the stand-in's model."""

    server: Any
    routes: list[tuple[str, re.Pattern[str], str]] = [
        ("GET", re.compile(r"^/repos/([^/]+/[^/]+)/commits/([0-9a-f]{7,40})/pulls$"), "commit_pulls"),
        ("GET", re.compile(r"^/repos/([^/]+/[^/]+)/commits/(.+)$"), "get_commit"),
        ("GET", re.compile(r"^/repos/([^/]+/[^/]+)/compare/(.+)$"), "compare"),
        (
            "POST",
            re.compile(r"^/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)/dispatches$"),
            "dispatch_workflow",
        ),
        ("GET", re.compile(r"^/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)/runs$"), "list_runs"),
        ("GET", re.compile(r"^/repos/([^/]+/[^/]+)/actions/runs/(\d+)$"), "get_run"),
        ("POST", re.compile(r"^/repos/([^/]+/[^/]+)/actions/runs/(\d+)/cancel$"), "cancel_run"),
        ("POST", re.compile(r"^/repos/([^/]+/[^/]+)/git/refs$"), "create_ref"),
        ("GET", re.compile(r"^/repos/([^/]+/[^/]+)/git/ref/(.+)$"), "get_ref"),
        ("DELETE", re.compile(r"^/repos/([^/]+/[^/]+)/git/refs/(.+)$"), "delete_ref"),
        ("GET", re.compile(r"^/repos/([^/]+/[^/]+)/deployments$"), "list_deployments"),
        ("POST", re.compile(r"^/repos/([^/]+/[^/]+)/deployments$"), "create_deployment"),
        ("GET", re.compile(r"^/repos/([^/]+/[^/]+)/deployments/(\d+)/statuses$"), "list_deployment_statuses"),
        ("POST", re.compile(r"^/repos/([^/]+/[^/]+)/deployments/(\d+)/statuses$"), "create_deployment_status"),
        ("GET", re.compile(r"^/repos/([^/]+/[^/]+)$"), "get_repo"),
        ("GET", re.compile(r"^/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)$"), "get_workflow"),
    ]
    # The fine-grained permission each route needs (for ``missing_permissions``).
    permissions: dict[str, str] = {
        "create_ref": "contents:write",
        "delete_ref": "contents:write",
        "dispatch_workflow": "actions:write",
        "cancel_run": "actions:write",
        "list_deployments": "deployments:read",
        "list_deployment_statuses": "deployments:read",
        "create_deployment": "deployments:write",
        "create_deployment_status": "deployments:write",
    }

    @property
    def standin(self) -> CIStandIn:
        return self.server.standin

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._handle_quietly("GET")

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self._handle_quietly("POST")

    def do_DELETE(self) -> None:  # noqa: N802 - stdlib name
        self._handle_quietly("DELETE")

    def _handle_quietly(self, method: str) -> None:
        """Serve one request; a client that gave up (after ``delay_next``) is not worth a traceback."""
        try:
            self._handle(method)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _handle(self, method: str) -> None:
        """Record, apply faults, authenticate, then route."""
        body = self.read_body()
        parts = urlsplit(self.path)
        self.standin.record(RecordedRequest(method, self.path, dict(self.headers.items()), body))
        fault = self.standin._take_fault(parts.path)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        elif fault is not None:
            self.send_json(fault.status, fault.body, fault.headers)
            return
        if not self._authorised():
            return
        for route_method, pattern, name in self.routes:
            match = pattern.match(parts.path)
            if match and route_method == method:
                repo = self.standin.repos.get(unquote(match.group(1)))
                if repo is None:
                    self.send_json(404, _NOT_FOUND)
                    return
                if self.permissions.get(name) in self.standin.missing_permissions:
                    self.send_json(403, {"message": "Resource not accessible by personal access token"})
                    return
                args = [unquote(g) for g in match.groups()[1:]]
                with self.standin.lock:
                    status, payload = getattr(self, "_" + name)(
                        repo, *args, query=parse_qs(parts.query), body=body
                    )
                if payload is None:
                    self.send_bytes(status, b"", "application/json; charset=utf-8")
                else:
                    self.send_json(status, payload)
                return
        self.send_json(404, _NOT_FOUND)

    def _authorised(self) -> bool:
        """Accept ``Bearer <token>`` or ``token <token>``; otherwise answer 401 like GitHub."""
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if not header:
            self.send_json(401, {"message": "Requires authentication"})
            return False
        if scheme.lower() not in ("bearer", "token") or value.strip() != self.standin.token:
            self.send_json(
                401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
            )
            return False
        return True

    # ---- endpoints: each returns (status, json payload or None) --------------------------------------------

    def _get_commit(self, repo: _Repo, ref: str, **_: Any) -> tuple[int, Any]:
        sha = self.standin._resolve(repo, ref)
        if sha is None:
            return 404, {"message": f"No commit found for SHA: {ref}"}
        return 200, self.standin.commit_json(repo, repo.commits[sha])

    def _commit_pulls(self, repo: _Repo, ref: str, **_: Any) -> tuple[int, Any]:
        sha = self.standin._resolve(repo, ref)
        if sha is None:
            return 404, {"message": f"No commit found for SHA: {ref}"}
        pr = repo.commits[sha].pr
        if not pr:
            return 200, []
        number = int(pr["number"])
        return 200, [
            {
                "number": number,
                "title": pr.get("title", ""),
                "state": "closed",
                "html_url": f"{GITHUB_WEB}/{repo.full_name}/pull/{number}",
                "url": f"{self.standin.url}/repos/{repo.full_name}/pulls/{number}",
                "merge_commit_sha": sha,
                "user": {"login": repo.commits[sha].author},
            }
        ]

    def _compare(self, repo: _Repo, basehead: str, **_: Any) -> tuple[int, Any]:
        base_ref, sep, head_ref = basehead.partition("...")
        base, head = self.standin._resolve(repo, base_ref), self.standin._resolve(repo, head_ref)
        if not sep or base is None or head is None:
            return 404, _NOT_FOUND
        head_chain, base_chain = self.standin._ancestry(repo, head), self.standin._ancestry(repo, base)
        base_set, head_set = set(base_chain), set(head_chain)
        ahead = [repo.commits[s] for s in reversed(head_chain) if s not in base_set]
        behind = [s for s in base_chain if s not in head_set]
        merge_base = next((s for s in head_chain if s in base_set), None)
        status = {(0, 0): "identical", (1, 0): "ahead", (0, 1): "behind"}.get(
            (min(len(ahead), 1), min(len(behind), 1)), "diverged"
        )
        sc = self.standin
        return 200, {
            "url": f"{sc.url}/repos/{repo.full_name}/compare/{basehead}",
            "html_url": f"{GITHUB_WEB}/{repo.full_name}/compare/{basehead}",
            "status": status,
            "ahead_by": len(ahead),
            "behind_by": len(behind),
            "total_commits": len(ahead),
            "base_commit": sc.commit_json(repo, repo.commits[base], with_files=False),
            "merge_base_commit": sc.commit_json(repo, repo.commits[merge_base], False)
            if merge_base
            else None,
            "commits": [sc.commit_json(repo, c, with_files=False) for c in ahead[:250]],
            "files": _merge_files(ahead)[:300],
        }

    def _dispatch_workflow(self, repo: _Repo, workflow: str, body: bytes, **_: Any) -> tuple[int, Any]:
        name = self._workflow_name(repo, workflow)
        if name is None:
            return 404, _NOT_FOUND
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return 400, {"message": "Problems parsing JSON"}
        mode = self.standin.dispatch_mode
        if mode == "strict-legacy" and "return_run_details" in payload:
            return 422, {"message": "Invalid request.\n\n\"return_run_details\" is not a permitted key."}
        ref, inputs = payload.get("ref"), payload.get("inputs") or {}
        if not isinstance(ref, str) or not ref:
            return 422, {"message": 'Invalid request.\n\n"ref" wasn\'t supplied.'}
        sha = self._branch_or_tag(repo, ref)
        if sha is None:
            return 422, {"message": f"No ref found for: {ref}"}
        if not isinstance(inputs, dict) or len(inputs) > 25:
            return 422, {"message": "Invalid inputs"}
        run = self.standin._new_run(repo, name, ref, sha, inputs)
        self.standin.dispatches.append(
            {
                "repo": repo.full_name,
                "workflow": name,
                "ref": ref,
                "sha": sha,
                "inputs": dict(inputs),
                "run_id": run.id,
            }
        )
        if mode == "current" and payload.get("return_run_details") is True:
            run_json = self.standin.run_json(run)
            return 200, {
                "workflow_run_id": run.id,
                "run_url": run_json["url"],
                "html_url": run_json["html_url"],
            }
        return 204, None

    def _list_runs(
        self, repo: _Repo, workflow: str, query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        name = self._workflow_name(repo, workflow)
        if name is None:
            return 404, _NOT_FOUND
        runs = [r for r in self.standin.runs.values() if r.repo == repo.full_name and r.workflow == name]
        first = {k: v[0] for k, v in query.items() if v}
        if "event" in first:
            runs = [r for r in runs if r.event == first["event"]]
        if "branch" in first:
            runs = [r for r in runs if r.head_branch == first["branch"]]
        if "head_sha" in first:
            runs = [r for r in runs if r.head_sha == first["head_sha"]]
        if "created" in first:
            runs = [r for r in runs if _created_matches(r.created_at, first["created"])]
        if "status" in first:
            runs = [r for r in runs if first["status"] in self.standin.run_state(r)]
        runs.sort(key=lambda r: r.id, reverse=True)  # newest first, like GitHub
        per_page = max(1, min(int(first.get("per_page", 30)), 100))
        page = max(1, int(first.get("page", 1)))
        shown = runs[(page - 1) * per_page : page * per_page]
        return 200, {"total_count": len(runs), "workflow_runs": [self.standin.run_json(r) for r in shown]}

    def _get_run(self, repo: _Repo, run_id: str, **_: Any) -> tuple[int, Any]:
        run = self.standin.runs.get(int(run_id))
        if run is None or run.repo != repo.full_name:
            return 404, _NOT_FOUND
        run.polls += 1  # a fetch by id is a status poll: it advances the scripted run
        return 200, self.standin.run_json(run)

    def _cancel_run(self, repo: _Repo, run_id: str, **_: Any) -> tuple[int, Any]:
        run = self.standin.runs.get(int(run_id))
        if run is None or run.repo != repo.full_name:
            return 404, _NOT_FOUND
        if self.standin.run_state(run)[0] == "completed":
            return 409, {"message": "Cannot cancel a workflow run that is completed."}
        run.cancelled = True
        return 202, {}

    def _list_deployments(self, repo: _Repo, query: dict[str, list[str]], **_: Any) -> tuple[int, Any]:
        first = {k: v[0] for k, v in query.items() if v}
        found = [d for d in self.standin.deployments.values() if d.repo == repo.full_name]
        for key in ("environment", "sha", "ref", "task"):
            if key in first:
                found = [d for d in found if self.standin.deployment_json(d)[key] == first[key]]
        found.sort(key=lambda d: d.id, reverse=True)  # newest first, like GitHub
        per_page = max(1, min(int(first.get("per_page", 30)), 100))
        page = max(1, int(first.get("page", 1)))
        return 200, [self.standin.deployment_json(d) for d in found[(page - 1) * per_page : page * per_page]]

    def _create_deployment(self, repo: _Repo, *, body: bytes, **_: Any) -> tuple[int, Any]:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return 400, {"message": "Problems parsing JSON"}
        ref = payload.get("ref")
        sha = self.standin._resolve(repo, ref) if isinstance(ref, str) else None
        if sha is None:
            return 422, {"message": f"No ref found for: {ref}"}
        environment = payload.get("environment") or "production"
        deployment = self.standin._new_deployment(repo, str(environment), ref, sha)
        return 201, self.standin.deployment_json(deployment)

    def _deployment(self, repo: _Repo, deployment_id: str) -> _Deployment | None:
        deployment = self.standin.deployments.get(int(deployment_id))
        return deployment if deployment is not None and deployment.repo == repo.full_name else None

    def _list_deployment_statuses(
        self, repo: _Repo, deployment_id: str, query: dict[str, list[str]], **_: Any
    ) -> tuple[int, Any]:
        deployment = self._deployment(repo, deployment_id)
        if deployment is None:
            return 404, _NOT_FOUND
        first = {k: v[0] for k, v in query.items() if v}
        per_page = max(1, min(int(first.get("per_page", 30)), 100))
        page = max(1, int(first.get("page", 1)))
        newest_first = list(reversed(deployment.statuses))
        return 200, newest_first[(page - 1) * per_page : page * per_page]

    def _create_deployment_status(self, repo: _Repo, deployment_id: str, *, body: bytes, **_: Any) -> tuple[int, Any]:
        deployment = self._deployment(repo, deployment_id)
        if deployment is None:
            return 404, _NOT_FOUND
        try:
            state = json.loads(body or b"{}").get("state")
        except (ValueError, AttributeError):
            return 400, {"message": "Problems parsing JSON"}
        if state not in _DEPLOYMENT_STATES:
            return 422, {"message": f"state is not included in the list: {state}"}
        return 201, self.standin._add_status(deployment, state)

    def _get_repo(self, repo: _Repo, **_: Any) -> tuple[int, Any]:
        return 200, {
            "id": int(hashlib.sha1(repo.full_name.encode()).hexdigest()[:8], 16),  # noqa: S324 - an id
            "full_name": repo.full_name,
            "name": repo.full_name.split("/", 1)[1],
            "default_branch": repo.default_branch,
            "private": True,
            "url": f"{self.standin.url}/repos/{repo.full_name}",
        }

    def _get_workflow(self, repo: _Repo, workflow: str, **_: Any) -> tuple[int, Any]:
        name = self._workflow_name(repo, workflow)
        if name is None:
            return 404, _NOT_FOUND
        return 200, {
            "id": repo.workflows[name],
            "name": name,
            "path": f".github/workflows/{name}",
            "state": "active",
            "url": f"{self.standin.url}/repos/{repo.full_name}/actions/workflows/{repo.workflows[name]}",
        }

    def _ref_json(self, repo: _Repo, full_ref: str, sha: str) -> dict[str, Any]:
        """A git reference in GitHub's shape."""
        return {
            "ref": full_ref,
            "node_id": "REF_" + hashlib.sha1(full_ref.encode()).hexdigest()[:12],  # noqa: S324 - an id
            "url": f"{self.standin.url}/repos/{repo.full_name}/git/{full_ref}",
            "object": {
                "type": "commit",
                "sha": sha,
                "url": f"{self.standin.url}/repos/{repo.full_name}/git/commits/{sha}",
            },
        }

    @staticmethod
    def _ref_table(repo: _Repo, ref: str) -> tuple[dict[str, str], str] | None:
        """(branches or tags, name) for ``heads/<name>`` or ``tags/<name>`` (``refs/`` optional)."""
        ref = ref.removeprefix("refs/")
        for prefix, table in (("heads/", repo.branches), ("tags/", repo.tags)):
            if ref.startswith(prefix) and len(ref) > len(prefix):
                return table, ref[len(prefix) :]
        return None

    def _create_ref(self, repo: _Repo, *, body: bytes, **_: Any) -> tuple[int, Any]:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return 400, {"message": "Problems parsing JSON"}
        ref, sha = payload.get("ref"), payload.get("sha")
        if not isinstance(ref, str) or not ref.startswith("refs/") or ref.count("/") < 2:
            return 422, {"message": f"{ref} is not a valid ref name."}
        found = self._ref_table(repo, ref)
        if found is None:
            return 422, {"message": f"{ref} is not a valid ref name."}
        table, name = found
        if not isinstance(sha, str) or sha not in repo.commits:
            return 422, {"message": "Object does not exist"}
        if name in table:
            return 422, {"message": "Reference already exists"}
        table[name] = sha
        return 201, self._ref_json(repo, ref, sha)

    def _get_ref(self, repo: _Repo, ref: str, **_: Any) -> tuple[int, Any]:
        found = self._ref_table(repo, ref)
        if found is None or found[1] not in found[0]:
            return 404, _NOT_FOUND
        table, name = found
        return 200, self._ref_json(repo, "refs/" + ref.removeprefix("refs/"), table[name])

    def _delete_ref(self, repo: _Repo, ref: str, **_: Any) -> tuple[int, Any]:
        found = self._ref_table(repo, ref)
        if found is None or found[1] not in found[0]:
            return 422, {"message": "Reference does not exist"}
        table, name = found
        del table[name]
        return 204, None

    # ---- helpers -------------------------------------------------------------------------------------------

    @staticmethod
    def _workflow_name(repo: _Repo, workflow: str) -> str | None:
        """A workflow is addressed by file name or numeric id."""
        if workflow in repo.workflows:
            return workflow
        return next((n for n, i in repo.workflows.items() if str(i) == workflow), None)

    @staticmethod
    def _branch_or_tag(repo: _Repo, ref: str) -> str | None:
        """workflow_dispatch accepts only a branch or tag, never a bare sha."""
        for prefix, table in (("refs/heads/", repo.branches), ("refs/tags/", repo.tags)):
            if ref.startswith(prefix):
                return table.get(ref[len(prefix) :])
        return repo.branches.get(ref) or repo.tags.get(ref)


def _created_matches(created: datetime, expr: str) -> bool:
    """GitHub's ``created`` filter: ``>=T``, ``>T``, ``<=T``, ``<T``, ``A..B`` or a date."""
    for op, test in (
        (">=", lambda a, b: a >= b),
        ("<=", lambda a, b: a <= b),
        (">", lambda a, b: a > b),
        ("<", lambda a, b: a < b),
    ):
        if expr.startswith(op):
            return test(created, _parse_iso(expr[len(op) :]))
    if ".." in expr:
        low, high = expr.split("..", 1)
        return (low == "*" or created >= _parse_iso(low)) and (high == "*" or created <= _parse_iso(high))
    return created.date() == _parse_iso(expr).date()


CIStandIn.handler_class = _Handler
