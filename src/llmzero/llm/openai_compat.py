"""The production backend: any server that speaks OpenAI's chat-completions protocol.

One client covers OpenAI itself, vLLM, Ollama, LM Studio, llama.cpp's ``llama-server`` and
llama-cpp-python's server; they differ only in how they accept a JSON schema, which is the
``response_format`` knob. The SDK's own retries are switched off so that one loop here owns
retries, backoff and the accounting of attempts, and so that an answer that is valid HTTP but not
schema-valid JSON is retried like a transport error.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Literal, get_args

import openai

from llmzero.llm._base import LLMReply, Message
from llmzero.llm.parse import parse_reply

log = logging.getLogger(__name__)

ResponseFormat = Literal["json_schema", "json_object", "none"]


class OpenAICompatLLM:
    """Structured answers from an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    ``response_format`` picks the dialect the server understands:

    - ``"json_schema"``: ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``,
      the OpenAI form, also read by vLLM, Ollama and ``llama-server``;
    - ``"json_object"``: ``{"type": "json_object", "schema": ...}``, llama-cpp-python's server
      form (that server answers HTTP 500 to the ``json_schema`` form);
    - ``"none"``: the server gets no constraint; the schema is put into the system prompt and the
      answer is only validated.

    Whatever the dialect, every answer is validated against the schema here: servers differ in
    how strictly they enforce it.
    """

    name = "openai"

    def __init__(self, base_url: str | None, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 response_format: ResponseFormat = "json_schema", timeout: float = 60,
                 retries: int = 2, backoff: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``base_url`` None means the SDK's default (``OPENAI_BASE_URL`` or api.openai.com).
        The key is read from the environment variable ``api_key_env`` once, here; local servers
        need none, so an unset variable gives the placeholder ``"none"``. ``retries`` is the number
        of extra attempts after the first; attempt ``i`` (from 0) that fails is followed by a sleep
        of ``backoff * 2**i`` seconds through ``sleep``, injectable so that tests do not wait."""
        if response_format not in get_args(ResponseFormat):
            raise ValueError(f"response_format={response_format!r}: expected one of "
                             f"{', '.join(get_args(ResponseFormat))}")
        if timeout <= 0:
            raise ValueError(f"timeout={timeout!r}: expected a positive number of seconds")
        if retries < 0:
            raise ValueError(f"retries={retries!r}: expected 0 or more")
        if backoff < 0:
            raise ValueError(f"backoff={backoff!r}: expected 0 or more seconds")
        self.base_url = base_url
        self.model = model
        self.api_key_env = api_key_env
        self.response_format: ResponseFormat = response_format
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "none",
                                     timeout=self.timeout, max_retries=0)

    def close(self) -> None:
        """Release the HTTP connection pool (optional; the pool is also freed with the object)."""
        self._client.close()

    def complete(self, messages: list[Message], schema: dict[str, Any], *, temperature: float = 0.2,
                 max_tokens: int = 400, seed: int | None = None) -> LLMReply:
        """One schema-valid answer, or ``parsed=None`` with the last failure's reason.

        Token counts add up every attempt that got an answer (failed attempts cost tokens too);
        ``seconds`` is the wall time of the whole call, backoff sleeps included.
        """
        start = time.perf_counter()
        request = self._request(messages, schema, temperature=temperature, max_tokens=max_tokens,
                                seed=seed)
        prompt_tokens = completion_tokens = 0
        text = ""
        error: str | None = None
        attempts = 0
        for attempt in range(self.retries + 1):
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1)
                log.info("LLM attempt %d failed (%s); retrying in %.2f s", attempt, error, delay)
                self._sleep(delay)
            attempts += 1
            try:
                completion = self._client.chat.completions.create(**request)
            except openai.APITimeoutError:
                text, error = "", f"timeout after {self.timeout:g} s"
                continue
            except openai.APIStatusError as e:
                text, error = "", f"HTTP {e.status_code}: {_status_message(e)}"
                continue
            except openai.APIConnectionError as e:
                text, error = "", f"connection error: {e}"
                continue
            except Exception as e:  # the contract is "never raise": report anything else as data
                log.warning("unexpected error from the OpenAI client", exc_info=True)
                text, error = "", f"{type(e).__name__}: {e}"
                continue
            if completion.usage is not None:
                prompt_tokens += completion.usage.prompt_tokens or 0
                completion_tokens += completion.usage.completion_tokens or 0
            text = (completion.choices[0].message.content or "") if completion.choices else ""
            parsed, error = parse_reply(text, schema)
            if parsed is not None:
                return LLMReply(text=text, parsed=parsed, prompt_tokens=prompt_tokens,
                                completion_tokens=completion_tokens,
                                seconds=time.perf_counter() - start, attempts=attempts,
                                backend=self.name, model=self.model)
        log.warning("LLM gave no valid answer after %d attempts: %s", attempts, error)
        return LLMReply(text=text, parsed=None, prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, seconds=time.perf_counter() - start,
                        attempts=attempts, backend=self.name, model=self.model, error=error)

    def _request(self, messages: list[Message], schema: dict[str, Any], *, temperature: float,
                 max_tokens: int, seed: int | None) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for the configured dialect."""
        request: dict[str, Any] = dict(model=self.model, temperature=temperature, max_tokens=max_tokens)
        if seed is not None:
            request["seed"] = seed
        if self.response_format == "json_schema":
            request["response_format"] = {"type": "json_schema",
                                          "json_schema": {"name": "proposal", "schema": schema,
                                                          "strict": True}}
        elif self.response_format == "json_object":
            request["response_format"] = {"type": "json_object", "schema": schema}
        else:
            messages = _with_schema_in_prompt(messages, schema)
        request["messages"] = messages
        return request


def _with_schema_in_prompt(messages: list[Message], schema: dict[str, Any]) -> list[Message]:
    """A copy of ``messages`` whose system message also states the schema.

    Used when the server cannot be told the schema: the model then only knows it from the prompt.
    It goes into the (first) system message because several chat templates accept only one, first.
    """
    rule = ("Answer with one JSON object only, no prose and no code fence, valid against this "
            f"JSON schema:\n{json.dumps(schema, separators=(',', ':'), default=str)}")
    if messages and messages[0].get("role") == "system":
        first = dict(messages[0], content=f"{messages[0].get('content', '')}\n\n{rule}")
        return [first, *messages[1:]]
    return [{"role": "system", "content": rule}, *messages]


def _status_message(e: openai.APIStatusError) -> str:
    """The server's own error message when its body carries one (OpenAI and llama.cpp servers
    both answer ``{"error": {"message": ...}}``), else the SDK's, cut to keep journals readable."""
    body = e.body
    msg: Any = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        msg = inner.get("message") if isinstance(inner, dict) else inner
    return str(msg or e.message)[:500]
