"""The layers hold: no import circles in bot/, handlers/, workers/; listeners never import workers; the core never
imports listeners or workers except the wiring modules named below.

Imports are read with ``ast`` (no third-party tool), wherever they are in a module: a function-local import is
still a dependency, it only runs later. Imports under ``if TYPE_CHECKING:`` are left out (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "handlers", "workers")

# bot/ modules that must import listeners or workers, and why. Nothing else in bot/ may.
WIRING = {
    "bot.slack.app": "builds the Bolt app and registers every listener (handlers.register_handlers)",
    "bot.ops.worker": "the worker process: runs worker jobs, resumes deploy followers, sweeps outcomes",
    "bot.ops.demo": "drives the real web app, workers and stand-ins end to end (clawback demo)",
    "bot.ops.cli": "the command line: starts the worker, runs jobs by hand (outcome sweep)",
}


def _modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The project modules ``module`` imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    out: set[str] = set()
    skip = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[name] = _imported(tree, name, path.name == "__init__.py", known)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_the_analysis_sees_real_imports():
    """The parser finds imports we know exist (so an empty answer below means something)."""
    graph = _graph()
    assert "bot.db" in graph["bot.ledger"]
    assert "bot.measure.report" in graph["handlers.usage"]  # from bot.measure.report import own_usage
    assert "workers.runtime" in graph["workers.measure"]  # from workers import runtime
    assert "handlers" in graph["bot.slack.app"] or any(
        m.startswith("handlers") for m in graph["bot.slack.app"]
    )


def test_the_cycle_finder_finds_cycles():
    """A circle of three and one of two are reported; a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}) == [
        ["a", "b", "c"],
        ["d", "e"],
    ]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles():
    """No two modules of bot/, handlers/, workers/ import each other, directly or around a circle."""
    assert _cycles(_graph()) == []


def test_listeners_never_import_workers():
    """handlers/ acknowledge and enqueue jobs by name; they never import a worker module."""
    bad = sorted(
        (m, dep)
        for m, deps in _graph().items()
        if _layer(m) == "handlers"
        for dep in deps
        if _layer(dep) == "workers"
    )
    assert bad == []


def test_the_core_never_imports_listeners_or_workers():
    """bot/ is the lower layer: only the wiring modules in WIRING import handlers/ or workers/."""
    graph = _graph()
    bad = sorted(
        (m, dep)
        for m, deps in graph.items()
        if _layer(m) == "bot" and m not in WIRING
        for dep in deps
        if _layer(dep) in ("handlers", "workers")
    )
    assert bad == []
    for module in WIRING:
        assert module in graph, f"{module} is named as wiring but does not exist"


def test_rq_entry_points_keep_their_dotted_names():
    """Jobs queued before workers/deploy became a package name ``workers.deploy.<fn>``: those names still resolve."""
    from rq.utils import import_attribute

    from handlers.deploy import CLICK_JOB
    from handlers.home import PUBLISH_HOME
    from workers.deploy import FOLLOW
    from workers.deploy.clicks import handle_click
    from workers.deploy.following import follow_run

    assert (FOLLOW, CLICK_JOB) == ("workers.deploy.follow_run", "workers.deploy.handle_click")
    assert import_attribute(FOLLOW) is follow_run
    assert import_attribute(CLICK_JOB) is handle_click
    assert callable(import_attribute(PUBLISH_HOME))


def test_mail_refresh_resolves_under_its_old_and_new_names():
    """A message refresh queued before the mail jobs became ``workers/mail/`` (``workers.triage.…``) still runs."""
    from rq.utils import import_attribute

    from handlers.mail import REFRESH
    from workers.mail.digest import refresh_mail_message

    assert REFRESH == "workers.mail.refresh_mail_message"
    assert import_attribute(REFRESH) is refresh_mail_message
    assert import_attribute("workers.triage.refresh_mail_message") is refresh_mail_message


# The shared core: the only modules at the top of bot/ (everything else lives in a package that says what it is).
CORE = {
    "settings",
    "errors",
    "messages",
    "db",
    "models",
    "migrate",
    "ledger",
    "audit",
    "policy",
    "autonomy",
    "controls",
    "budget",
    "queue",
    "llm",
    "ingress",
}


def test_only_the_core_sits_at_the_top_of_bot() -> None:
    top = {p.stem for p in (ROOT / "bot").glob("*.py") if p.stem != "__init__"}
    assert top - CORE == set(), f"new top-level bot/ modules belong in a package: {sorted(top - CORE)}"
    assert CORE - top == set(), (
        f"core modules missing (moved? update CORE and bot/__init__.py): {sorted(CORE - top)}"
    )
