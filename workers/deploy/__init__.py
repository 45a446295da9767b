"""Deploy-assist jobs: plan, request, execute, follow, rollback, status, cancel, and button clicks.

Flow: ``/deploy plan`` (task ``deploy_plan``) posts a plan with *Request deploy*; the click is a task
``deploy_request`` that creates the request (bound to a params hash) and asks approvers; the last
approval (``handle_click``) or, with none needed, the request itself submits one ``deploy_execute`` task
(idempotency key ``deploy-exec:<request id>``) which re-checks everything, takes the lock, and triggers the
CI exactly once (an action row, and run-name matching for retries). ``follow_run`` polls the run, bounded,
and records the result as the outcome of the deploy task and of its plan.

The model only writes the plan's risk summary: it gets no tools and nothing it says is acted on.

One file per job: ``plan``, ``rollback``, ``request``, ``execute``, ``following`` (``follow_run``), ``clicks``
(``handle_click``), ``cancel``, ``status``; ``shared`` (CI clients and CI-side helpers) and ``slack`` (thread
posts) are what they share. The RQ entry points keep their dotted names (``workers.deploy.follow_run``,
``workers.deploy.handle_click``): jobs queued before this package existed still run.
"""

from __future__ import annotations

from workers.deploy.cancel import cancel_core
from workers.deploy.clicks import click, handle_click
from workers.deploy.execute import execute_core
from workers.deploy.following import follow, follow_run, resume_lost_followers
from workers.deploy.plan import plan_core
from workers.deploy.request import request_core
from workers.deploy.rollback import rollback_core
from workers.deploy.shared import CLICK, FOLLOW, DeployClients, build_clients, clients
from workers.deploy.status import status_core

__all__ = [
    "CLICK",
    "FOLLOW",
    "INTENTS",
    "DeployClients",
    "build_clients",
    "cancel_core",
    "click",
    "clients",
    "execute_core",
    "follow",
    "follow_run",
    "handle_click",
    "plan_core",
    "request_core",
    "resume_lost_followers",
    "rollback_core",
    "status_core",
]

INTENTS = {
    "deploy_plan": ("deploy.plan", plan_core),
    "deploy_rollback": ("deploy.request", rollback_core),
    "deploy_request": ("deploy.request", request_core),
    "deploy_execute": ("deploy.request", execute_core),
    "deploy_status": ("deploy.plan", status_core),
    "deploy_cancel": ("deploy.plan", cancel_core),
}
