"""Block Kit builders for the deploy assistant (pure functions)."""

from __future__ import annotations

from typing import Any

from bot.slack.blocks import build_feedback_done_blocks

REQUEST_DEPLOY = "deploy_request"
CANCEL_PLAN = "deploy_cancel_plan"
APPROVE = "deploy_approve"
REJECT = "deploy_reject"
MAX_COMMITS_SHOWN = 15
MAX_ITEMS = 8
_SECTION_LIMIT = 2900
RISK_ICONS = {"low": ":large_green_circle:", "medium": ":large_yellow_circle:", "high": ":red_circle:"}


def escape(text: str) -> str:
    """Slack mrkdwn escaping for untrusted text (commit messages, PR titles, file names)."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    if len(text) > _SECTION_LIMIT:
        text = text[: _SECTION_LIMIT - 2] + " …"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:_SECTION_LIMIT]}]}


def _button(action_id: str, text: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "value": value,
        "text": {"type": "plain_text", "text": text},
    }
    if style:
        button["style"] = style
    return button


def _bullets(items: list[str], empty: str = "_none_") -> str:
    shown = [f"• {i}" for i in items[:MAX_ITEMS]]
    if len(items) > MAX_ITEMS:
        shown.append(f"• _…and {len(items) - MAX_ITEMS} more_")
    return "\n".join(shown) or empty


def build_plan_blocks(plan: dict[str, Any], footer: str, task_id: str) -> list[dict[str, Any]]:
    """A deploy (or rollback) plan: target, risk summary, facts, footer and the Request/Cancel buttons.

    ``plan`` text fields from the model must already be sanitised; git data is escaped here.
    """
    risk = plan.get("risk") or {}
    verb = "Rollback" if plan.get("kind") == "rollback" else "Deploy"
    base = f"`{plan['base_sha'][:12]}`" if plan.get("base_sha") else "_base unknown_"
    source = str(plan.get("base_source") or "")
    if plan.get("base_sha") and source == "github":
        base += ", per GitHub's deployments"
    elif plan.get("base_sha") and source.startswith("baseline "):
        base += f", the policy's baseline `{escape(source.removeprefix('baseline '))}`"
    head = (
        f"*{verb} plan* `{plan['service']}` → `{plan['environment']}`: `{escape(plan['ref'])}` "
        f"at `{plan['sha'][:12]}` (currently deployed: {base})"
    )
    blocks = [_section(head)]
    if plan.get("freeze_note"):
        blocks.append(_section(f":snowflake: {plan['freeze_note']}"))
    if risk:
        level = str(risk.get("risk_level", "unknown"))
        blocks.append(
            _section(f"{RISK_ICONS.get(level, ':grey_question:')} *Risk: {level}*. {risk.get('summary', '')}")
        )
        for title, key in (
            ("Notable changes", "notable_changes"),
            ("Migrations", "migrations"),
            ("Config changes", "config_changes"),
            ("Suggested checks", "suggested_checks"),
        ):
            blocks.append(_section(f"*{title}*\n{_bullets(list(risk.get(key) or []))}"))
        if risk.get("rollback_plan"):
            blocks.append(_section(f"*Rollback plan*\n{risk['rollback_plan']}"))
    detected = plan.get("detected") or {}
    flags = []
    if detected.get("migrations"):
        flags.append("migration files: " + ", ".join(f"`{escape(f)}`" for f in detected["migrations"][:5]))
    if detected.get("config"):
        flags.append("config files: " + ", ".join(f"`{escape(f)}`" for f in detected["config"][:5]))
    if flags:
        blocks.append(_section(":mag: *Detected in the diff* (not the model's opinion)\n" + "\n".join(flags)))
    commits = plan.get("commits") or []
    lines = [
        f"`{sha[:7]}` {escape(message)} ({escape(author)})"
        for sha, message, author in commits[:MAX_COMMITS_SHOWN]
    ]
    if len(commits) > MAX_COMMITS_SHOWN:
        lines.append(f"_…and {len(commits) - MAX_COMMITS_SHOWN} more commits_")
    prs = ", ".join(f"#{n} {escape(title)}" for n, title in (plan.get("pull_requests") or [])[:MAX_ITEMS])
    facts = f"*{len(commits)} commit(s), {plan.get('files_changed', 0)} file(s)*\n" + (
        "\n".join(lines) or "_no changes_"
    )
    if prs:
        facts += f"\n*PRs:* {prs}"
    blocks.append(_section(facts))
    blocks.append(_context(footer))
    label = "Request rollback" if plan.get("kind") == "rollback" else "Request deploy"
    blocks.append(
        {
            "type": "actions",
            "block_id": f"deploy_plan:{task_id}",
            "elements": [
                _button(REQUEST_DEPLOY, label, task_id, "primary"),
                _button(CANCEL_PLAN, "Cancel", task_id),
            ],
        }
    )
    return blocks


def build_approval_blocks(text: str, request_id: str) -> list[dict[str, Any]]:
    """The approval request with Approve and Reject buttons."""
    return [
        _section(text),
        {
            "type": "actions",
            "block_id": f"deploy_approval:{request_id}",
            "elements": [
                _button(APPROVE, "Approve", request_id, "primary"),
                _button(REJECT, "Reject", request_id, "danger"),
            ],
        },
    ]


def build_closed_blocks(blocks: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    """The same message with its buttons replaced by a note (who decided what)."""
    return build_feedback_done_blocks(blocks, note)


def build_status_blocks(text: str) -> list[dict[str, Any]]:
    """A status or progress message."""
    return [_section(text)]
