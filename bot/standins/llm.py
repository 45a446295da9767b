"""An OpenAI-compatible chat-completions stand-in with deterministic answers and honest usage.

Usage is counted by this server's own tokenizer model (``count_tokens``), independent of the estimate
Clawback reserves budget with: about 4 ASCII characters per token and one token per 3 UTF-8 bytes of
anything else (a CJK character is one token, as with OpenAI's tokenizers for common characters), plus 4
tokens of framing per message and 3 per request. Tool and response-format definitions are not counted.
The same inputs always give the same counts, and the ledger records exactly what this server reports,
as it would with a real endpoint.

Tests script behaviour with ``script(...)``: each queued step is consumed by one request, e.g.
``{"status": 429, "retry_after": 1}``, ``{"status": 500}``, ``{"delay": 2.0}``, ``{"truncate": True}``,
``{"empty_choices": True}``, ``{"no_usage": True}``, ``{"content": "..."}`` (returned as is, even past
``max_tokens``: a misbehaving endpoint) or
``{"tool_calls": [{"name": "...", "arguments": {...}}]}``; ``{"before": fn}`` runs ``fn()`` first. Structured-output requests
(``response_format`` with a ``json_schema``) are answered by a responder registered for the schema's name.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from bot.standins.base import QuietHandler, RecordedRequest, StandInServer

Responder = Callable[[list[dict[str, Any]], dict[str, Any]], str]


def count_tokens(text: str) -> int:
    """Tokens of ``text`` as this endpoint bills them: ASCII at 4 characters a token, other text at 3 bytes."""
    if not text:
        return 0
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    other_bytes = len(text.encode("utf-8", "surrogatepass")) - ascii_chars
    return -(-(3 * ascii_chars + 4 * other_bytes) // 12)  # ceil(ascii/4 + other/3)


def count_prompt(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of chat messages: their text plus 4 tokens of framing each, plus 3."""
    total = 3
    for m in messages:
        content = m.get("content") or ""
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        total += count_tokens(str(content)) + 4
    return total


def _cut_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` within ``max_tokens`` (a completion stopped at the limit)."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def default_answer(messages: list[dict[str, Any]]) -> str:
    """A deterministic answer built from the question in the last user message."""
    last = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    if isinstance(last, list):  # content parts
        last = " ".join(p.get("text", "") for p in last if isinstance(p, dict))
    question = last.rsplit("Question from", 1)[-1]
    question = re.sub(r"<<[^>]*>>|[\r\n]+", " ", question)
    question = " ".join(question.split(":", 1)[-1].split())[:160]
    context_lines = last.count("\n")
    return (
        f"Here is my answer to “{question}”. I looked at {context_lines} lines of context. "
        "The short version: the thread settles it, and the next step is with the owner named there."
    )


class LLMStandIn(StandInServer):
    """OpenAI-compatible ``POST /v1/chat/completions`` (and ``GET /v1/models``)."""

    def __init__(self, *, api_key: str | None = None, latency: float = 0.0, **kw: Any) -> None:
        super().__init__(**kw)
        self.handler_class = _Handler
        self.api_key = api_key
        self.latency = latency
        self._script: deque[dict[str, Any]] = deque()
        self._script_lock = threading.Lock()
        self.responders: dict[str, Responder] = {}

    @property
    def base_url(self) -> str:
        """The value for ``OPENAI_BASE_URL``."""
        return self.url + "/v1"

    def script(self, *steps: dict[str, Any]) -> None:
        """Queue behaviours for the next requests (one step per request)."""
        with self._script_lock:
            self._script.extend(steps)

    def clear_script(self) -> None:
        """Forget queued behaviours."""
        with self._script_lock:
            self._script.clear()

    def _next_step(self) -> dict[str, Any]:
        with self._script_lock:
            return self._script.popleft() if self._script else {}

    def register_responder(self, schema_name: str, fn: Responder) -> None:
        """Answer structured-output requests for ``schema_name`` with ``fn(messages, request)``."""
        self.responders[schema_name] = fn

    def completions(self) -> list[dict[str, Any]]:
        """Bodies of the chat-completion requests served, oldest first."""
        with self.lock:
            return [r.json() for r in self.requests if r.path.endswith("/chat/completions")]

    def answer(self, request: dict[str, Any], step: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """Produce (status, body or raw bytes, headers) for one completion request."""
        if step.get("status"):
            headers = {"retry-after": str(step["retry_after"])} if step.get("retry_after") is not None else {}
            err = {
                "error": {
                    "message": step.get("message", "scripted failure"),
                    "type": "server_error",
                    "code": step.get("code"),
                }
            }
            return int(step["status"]), err, headers
        messages = request.get("messages") or []
        tool_calls = None
        if "content" in step:
            content = step["content"]
        elif step.get("tool_calls"):
            content = None
            tool_calls = [
                {
                    "id": "call_" + secrets.token_hex(4),
                    "type": "function",
                    "function": {
                        "name": c["name"],
                        "arguments": c["arguments"]
                        if isinstance(c["arguments"], str)
                        else json.dumps(c["arguments"]),
                    },
                }
                for c in step["tool_calls"]
            ]
        else:
            content = self._structured(messages, request)
            if content is None:
                content = default_answer(messages)
        max_tokens = request.get("max_tokens") or request.get("max_completion_tokens")
        finish = "tool_calls" if tool_calls else "stop"
        if (
            "content" not in step
            and content is not None
            and max_tokens
            and count_tokens(content) > int(max_tokens)
        ):
            content, finish = _cut_to_tokens(content, int(max_tokens)), "length"
        prompt_tokens = count_prompt(messages)
        completion_tokens = count_tokens(content or json.dumps(tool_calls or []))
        body: dict[str, Any] = {
            "id": "chatcmpl-" + secrets.token_hex(8),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or "standin",
            "choices": []
            if step.get("empty_choices")
            else [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "message": {
                        "role": "assistant",
                        "content": content,
                        **({"tool_calls": tool_calls} if tool_calls else {}),
                    },
                }
            ],
        }
        if not step.get("no_usage"):
            body["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0},
            }
        headers = {"x-request-id": "req_" + secrets.token_hex(8)}
        if step.get("truncate"):
            raw = json.dumps(body).encode()
            return 200, raw[: len(raw) // 2], headers
        return 200, body, headers

    def _structured(self, messages: list[dict[str, Any]], request: dict[str, Any]) -> str | None:
        fmt = request.get("response_format") or {}
        if fmt.get("type") != "json_schema":
            return None
        name = (fmt.get("json_schema") or {}).get("name", "")
        responder = self.responders.get(name)
        return responder(messages, request) if responder else None


class _Handler(QuietHandler):
    def _authorised(self, standin: LLMStandIn) -> bool:
        if standin.api_key is None:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {standin.api_key}"

    def do_GET(self) -> None:  # noqa: N802
        standin: LLMStandIn = self.server.standin  # type: ignore[attr-defined]
        if self.path.rstrip("/").endswith("/models"):
            self.send_json(200, {"object": "list", "data": [{"id": "clawback-standin", "object": "model"}]})
        else:
            self.send_json(404, {"error": {"message": "not found"}})
        standin.record(RecordedRequest("GET", self.path, dict(self.headers), b""))

    def do_POST(self) -> None:  # noqa: N802
        standin: LLMStandIn = self.server.standin  # type: ignore[attr-defined]
        body = self.read_body()
        standin.record(RecordedRequest("POST", self.path, dict(self.headers), body))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.send_json(404, {"error": {"message": "not found"}})
            return
        if not self._authorised(standin):
            self.send_json(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
            return
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError:
            self.send_json(400, {"error": {"message": "invalid JSON body"}})
            return
        step = standin._next_step()
        if callable(step.get("before")):
            step["before"]()  # fault tests: e.g. kill the caller while its request is in flight
        delay = float(step.get("delay", 0.0)) + standin.latency
        if delay:
            time.sleep(delay)
        status, payload, headers = standin.answer(request, step)
        if isinstance(payload, bytes):
            self.send_bytes(status, payload, "application/json", headers)
        else:
            self.send_json(status, payload, headers)
