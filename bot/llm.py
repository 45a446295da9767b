"""The LLM gateway: every model call goes through here and leaves an ``llm_calls`` row.

It uses the official ``openai`` client against any OpenAI-compatible endpoint. Usage is recorded as
the API reported it (never estimated); a call that failed before usage was reported records zeros
with ``usage_reported = False``. Retryable failures raise ``TransientError`` so the job is retried.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from bot import ledger
from bot.db import Database
from bot.errors import TransientError, UserFacingError
from prompts import RenderedPrompt

log = logging.getLogger(__name__)


def price_of(prices: dict[str, dict[str, float]], model: str) -> dict[str, float]:
    """Prices for ``model``: exact name, then the longest matching prefix, then ``*``."""
    if model in prices:
        return prices[model]
    prefixes = [k for k in prices if k != "*" and model.startswith(k)]
    return prices[max(prefixes, key=len)] if prefixes else prices.get("*", {})


def cost_of(
    prices: dict[str, dict[str, float]], model: str, prompt: int, completion: int, cached: int = 0
) -> float:
    """Estimated USD cost of one call from per-million-token prices."""
    p = price_of(prices, model)
    cached_price = p.get("cached_input", p.get("input", 0.0))
    return (
        (prompt - cached) * p.get("input", 0.0) + cached * cached_price + completion * p.get("output", 0.0)
    ) / 1e6


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for (untrusted: validated by the caller)."""

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any] | None:
        """Arguments as a dict, or None when they are not a JSON object."""
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError:
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class LLMResult:
    """One completion and what it cost."""

    content: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: float
    call_id: int | None
    reused: bool = False
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = field(default_factory=tuple)

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class LLMGateway:
    """Calls the model for a task step and records the call in the ledger."""

    def __init__(
        self, client: openai.OpenAI, db: Database, *, model: str, prices: dict[str, dict[str, float]]
    ):
        self.client = client
        self.db = db
        self.model = model
        self.prices = prices

    def complete(
        self,
        *,
        task_id: str,
        step: str,
        prompt: RenderedPrompt,
        max_tokens: int,
        messages: list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        response_format: dict[str, Any] | None = None,
        reuse: bool = True,
    ) -> LLMResult:
        """Run one chat completion for (task, step); reuse a recorded success when retried."""
        if reuse:
            done = ledger.find_llm_call(self.db, task_id, step)
            if done is not None and done.content is not None:
                stored = json.loads(done.content) if done.content.startswith('{"__clawback') else None
                content = stored["content"] if stored else done.content
                calls = tuple(ToolCall(**c) for c in (stored or {}).get("tool_calls", []))
                return LLMResult(
                    content,
                    done.model,
                    done.prompt_tokens,
                    done.completion_tokens,
                    done.cost,
                    done.id,
                    reused=True,
                    tool_calls=calls,
                )
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages or prompt.messages(),
            "max_tokens": max_tokens,
        }
        if tools:
            kwargs["tools"] = tools
        if response_format:
            kwargs["response_format"] = response_format
        record = {
            "task_id": task_id,
            "step": step,
            "model": self.model,
            "prompt_name": prompt.name,
            "prompt_version": prompt.version,
        }
        started = time.perf_counter()
        try:
            # The client's own POST with the body as built: ``chat.completions.create`` would walk every message
            # and tool through its typed-parameter transform first, about 1 ms a call (P2), for a body that is
            # already in wire form. Retries, timeouts, errors and the typed response are the client's as ever.
            resp = self.client.post("/chat/completions", body=kwargs, cast_to=ChatCompletion)
        except (
            openai.RateLimitError,
            openai.APITimeoutError,
            openai.APIConnectionError,
            openai.InternalServerError,
            openai.APIResponseValidationError,
        ) as exc:
            self._record_error(record, started, exc)
            raise TransientError(f"model unavailable ({_short(exc)})", retry_after=_retry_after(exc)) from exc
        except openai.APIStatusError as exc:
            self._record_error(record, started, exc)
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                raise TransientError(f"model unavailable ({_short(exc)})") from exc
            # Not worth retrying (bad key, bad request): fail now with a clear reason.
            raise UserFacingError(
                "the model endpoint refused the request (a configuration problem; admins have been told)",
                reason=f"the model endpoint refused the request ({_short(exc)})",
            ) from exc
        except json.JSONDecodeError as exc:  # a truncated body from a proxy
            self._record_error(record, started, exc)
            raise TransientError("model returned a truncated response") from exc
        latency = (time.perf_counter() - started) * 1000
        usage = resp.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        cached = (getattr(details, "cached_tokens", 0) or 0) if details else 0
        cost = cost_of(self.prices, resp.model or self.model, prompt_tokens, completion_tokens, cached)
        base = dict(
            record,
            model=resp.model or self.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached,
            total_tokens=prompt_tokens + completion_tokens,
            usage_reported=usage is not None,
            cost=cost,
            latency_ms=latency,
            request_id=getattr(resp, "_request_id", None) or resp.id,
        )
        if not resp.choices:
            ledger.record_llm_call(self.db, **base, status="error", error="empty choices")
            raise TransientError("model returned no answer")
        choice = resp.choices[0]
        content = choice.message.content or ""
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments or "")
            for c in (choice.message.tool_calls or [])
            if getattr(c, "function", None) is not None
        )
        stored = content
        if calls:
            stored = json.dumps(
                {"__clawback": 1, "content": content, "tool_calls": [c.__dict__ for c in calls]}
            )
        row = ledger.record_llm_call(self.db, **base, status="ok", content=stored)
        return LLMResult(
            content,
            base["model"],
            prompt_tokens,
            completion_tokens,
            cost,
            row.id,
            finish_reason=choice.finish_reason,
            tool_calls=calls,
        )

    def _record_error(self, record: dict[str, Any], started: float, exc: Exception) -> None:
        ledger.record_llm_call(
            self.db,
            **record,
            prompt_tokens=0,
            completion_tokens=0,
            total_tokens=0,
            usage_reported=False,
            cost=0.0,
            latency_ms=(time.perf_counter() - started) * 1000,
            status="error",
            error=_short(exc),
            request_id=getattr(getattr(exc, "response", None), "headers", {}).get("x-request-id")
            if getattr(exc, "response", None) is not None
            else None,
        )


def _short(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    return f"{name} {status}" if status else name


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    try:
        return float(response.headers.get("retry-after"))
    except (TypeError, ValueError):
        return None


def make_client(
    *, base_url: str | None, api_key: str | None, timeout: float, max_retries: int
) -> openai.OpenAI:
    """The official client; it already backs off on 429/5xx honouring Retry-After."""
    return openai.OpenAI(
        base_url=base_url, api_key=api_key or "unused", timeout=timeout, max_retries=max_retries
    )
