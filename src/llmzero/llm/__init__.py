"""The LLM port and its backends: OpenAI-compatible HTTP, embedded llama.cpp, and replay."""

from __future__ import annotations

from typing import Any

from llmzero.llm._base import LLM, LLMReply, LLMUsage, Message

BACKENDS = ("llama", "openai", "replay")


def get_llm(backend: str, **kw: Any) -> LLM:
    """A backend by name; imports happen here so that unused backends cost nothing."""
    if backend == "llama":
        from llmzero.llm.llama import LlamaLLM

        return LlamaLLM(**kw)
    if backend == "openai":
        from llmzero.llm.openai_compat import OpenAICompatLLM

        return OpenAICompatLLM(**kw)
    if backend == "replay":
        from llmzero.llm.replay import ReplayLLM

        return ReplayLLM(**kw)
    raise ValueError(f"llm.backend={backend!r} is not allowed: expected one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "LLM", "LLMReply", "LLMUsage", "Message", "get_llm"]
