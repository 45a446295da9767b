"""Property-based fuzzing of the policy parser: every input is accepted or refused with a PolicyError."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import PolicyError
from bot.policy import SCOPES, parse_policy

FUZZ = settings(max_examples=1500, deadline=None, derandomize=True)

keys = st.sampled_from(
    [
        "defaults",
        "roles",
        "users",
        "groups",
        "channels",
        "redaction",
        "privacy",
        "mailboxes",
        "services",
        "scopes",
        "roles",
        "members",
        "allow",
        "daily_tokens",
        "requests_per_minute",
        "patterns",
        "k_anonymity",
        "U0ALICE",
        "member",
        "C0GENERAL",
        "*",
    ]
) | st.text(min_size=1, max_size=8)
scalars = (
    st.integers(-5, 10**9)
    | st.booleans()
    | st.sampled_from(sorted(SCOPES) + ["nope", "*", "["])
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)


def to_toml(table: dict, prefix: str = "") -> str:
    """A small TOML writer for generated documents (inline tables for nesting below the top level)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{" + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + "}"

    lines = []
    for k, v in table.items():
        if isinstance(v, dict):
            lines.append(f"[{json.dumps(k)}]")
            lines.extend(f"{json.dumps(k2)} = {value(v2)}" for k2, v2 in v.items())
        else:
            lines.insert(0, f"{json.dumps(k)} = {value(v)}")
    return "\n".join(lines) + "\n"


@FUZZ
@given(doc=st.dictionaries(keys, values, max_size=6))
def test_fuzz_structured_policies(doc):
    """Generated policy documents parse or fail with PolicyError — no other exception."""
    try:
        policy = parse_policy(to_toml(doc), source="fuzz.toml")
    except PolicyError as exc:
        assert exc.reason
        return
    for user in ("U0ALICE", "U0BOB"):
        assert policy.scopes_for(user) <= {s for s in policy.scopes_for(user)}
        policy.limits_for(user)


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzz_policy_text(text):
    """Arbitrary text is accepted or refused with PolicyError."""
    try:
        parse_policy(text, source="fuzz.toml")
    except PolicyError as exc:
        assert exc.reason
