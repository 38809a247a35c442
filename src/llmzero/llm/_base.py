"""The LLM port: one narrow method, structured output, token and latency accounting.

``LLM.complete`` is called by the LLM agent once per proposal: it sends chat messages and a JSON
schema, and returns an ``LLMReply`` whose ``parsed`` is the decoded JSON object (or None when the
backend could not produce valid JSON after its retries; ``error`` then says why). A backend never
raises for a bad answer or a failed call: the agent falls back to skill proposals and records it.
Every backend counts prompt and completion tokens and wall seconds per call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

# {"role": "system" | "user" | "assistant", "content": "..."}; a user content may also be a list of
# OpenAI content parts (text and image_url) for endpoints that read images.
Message = dict[str, Any]


@dataclass
class LLMReply:
    text: str  # the raw answer text ("" when the call failed)
    parsed: dict[str, Any] | None  # the JSON object decoded from ``text``; None when invalid
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    attempts: int = 1
    backend: str = ""
    model: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.parsed is not None


@dataclass
class LLMUsage:
    """Totals over a run, for the journal and the summary."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    failures: int = 0
    per_call_seconds: list[float] = field(default_factory=list)

    def add(self, r: LLMReply) -> None:
        self.calls += 1
        self.prompt_tokens += r.prompt_tokens
        self.completion_tokens += r.completion_tokens
        self.seconds += r.seconds
        self.failures += 0 if r.ok else 1
        self.per_call_seconds.append(r.seconds)


class LLM(Protocol):
    name: str  # backend name: "openai", "llama", "replay"

    def complete(self, messages: list[Message], schema: dict[str, Any], *, temperature: float = 0.2,
                 max_tokens: int = 400, seed: int | None = None) -> LLMReply:
        """One structured answer to ``messages``, constrained to (or validated against) ``schema``."""


def agent_totals(agents: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """The LLM's cost summed over proposal records' ``agent`` parts (records without an LLM call are
    skipped): what a search's summary and a report show."""
    t: dict[str, Any] = {"llm_calls": 0, "llm_prompt_tokens": 0, "llm_completion_tokens": 0,
                         "llm_seconds": 0.0, "proposals_repaired": 0, "llm_failures": 0}
    for agent in agents:
        call = (agent or {}).get("llm")
        if not call:
            continue
        t["llm_calls"] += call.get("calls", 1)  # an order-checked answer made two calls
        t["llm_prompt_tokens"] += call.get("prompt_tokens", 0)
        t["llm_completion_tokens"] += call.get("completion_tokens", 0)
        t["llm_seconds"] = round(t["llm_seconds"] + call.get("seconds", 0.0), 3)
        t["proposals_repaired"] += agent.get("repaired", 0)
        t["llm_failures"] += agent.get("fallback") is not None
    return t
