"""The LLM port's conformance suite, run against every backend, then each backend's own knobs.

The conformance tests take a ``harness`` fixture parametrized over ``BACKENDS``: each harness
builds a backend whose next answer to ``MESSAGES`` is a given text (for a real model that cannot
be scripted, ``scriptable`` is False and only the unscripted test runs).
"""

from __future__ import annotations

import json
import random
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from llm_server import LLAMA_CPP_PYTHON_REJECTION, FakeOpenAIServer, _fake_openai_server_fixture  # noqa: F401

from llmzero.llm._base import LLM, LLMUsage
from llmzero.llm.openai_compat import OpenAICompatLLM
from llmzero.llm.parse import parse_reply, schema_error
from llmzero.llm.replay import RecordingLLM, ReplayLLM, messages_key

# make test spreads tests over processes (pytest-xdist, --dist loadgroup): one load of the embedded model.
pytestmark = pytest.mark.xdist_group("llama")

SCHEMA: dict[str, Any] = {
    "title": "proposal",
    "type": "object",
    "properties": {
        "learning_rate": {"type": "number", "exclusiveMinimum": 0},
        "beta": {"type": "number", "minimum": 0},
        "reason": {"type": "string", "maxLength": 200},
    },
    "required": ["learning_rate", "reason"],
    "additionalProperties": False,
}
MESSAGES = [
    {"role": "system", "content": "You propose the hyperparameters of the next GRPO stage."},
    {"role": "user", "content": "Reward plateaued at 0.41; entropy is falling. Propose the next stage."},
]
VALID = {"learning_rate": 1e-5, "beta": 0.04, "reason": "reward plateaued; more exploration"}
GARBAGE = "Sure! I would raise the learning rate {because"


class Harness(Protocol):
    scriptable: bool  # False for a real model: its answers cannot be chosen
    invalid_attempts: int  # how many attempts a backend spends on an answer it cannot parse

    def make(self, answer: str | None) -> LLM:
        """A backend whose next answer to ``MESSAGES`` is ``answer`` (None: a valid one)."""


@dataclass
class ReplayHarness:
    tmp_path: Path
    scriptable: bool = True
    invalid_attempts: int = 1  # a replayed answer is one recorded attempt

    def make(self, answer: str | None) -> LLM:
        record = {"messages": MESSAGES, "schema_name": "proposal",
                  "text": json.dumps(VALID) if answer is None else answer,
                  "prompt_tokens": 30, "completion_tokens": 12, "seconds": 0.4, "model": "recorded-model"}
        path = self.tmp_path / "transcript.jsonl"
        path.write_text(json.dumps(record) + "\n", encoding="utf-8")
        return ReplayLLM(path)


@dataclass
class OpenAIHarness:
    server: FakeOpenAIServer
    scriptable: bool = True
    invalid_attempts: int = 2  # retries=1 below

    def make(self, answer: str | None) -> LLM:
        self.server.answer(json.dumps(VALID) if answer is None else answer)
        return OpenAICompatLLM(self.server.url, "fake-model", retries=1, timeout=5, sleep=lambda s: None)


@pytest.fixture
def replay_backend(tmp_path: Path) -> Harness:
    return ReplayHarness(tmp_path)


@pytest.fixture
def openai_backend(fake_openai_server: FakeOpenAIServer) -> Harness:
    return OpenAIHarness(fake_openai_server)


@dataclass
class LlamaHarness:
    """The real embedded model (one load per session): its answers cannot be scripted."""

    llm: LLM
    scriptable: bool = False
    invalid_attempts: int = 1
    real: bool = True

    def make(self, answer: str | None) -> LLM:
        return self.llm


@pytest.fixture(scope="session")
def _llama_llm() -> LLM:
    pytest.importorskip("llama_cpp", reason="the embedded backend is not installed (make local-llm)")
    from llmzero.llm.llama import LlamaLLM

    return LlamaLLM(tier="0.5b", n_threads=1)


@pytest.fixture
def llama_backend(_llama_llm: LLM) -> Harness:
    return LlamaHarness(_llama_llm)


# Fixture names of the harnesses; the real embedded model runs as a slow parameter.
BACKENDS: list[Any] = ["replay_backend", "openai_backend", pytest.param("llama_backend", marks=pytest.mark.slow)]


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest) -> Harness:
    h: Harness = request.getfixturevalue(request.param)
    return h


def _scripted(harness: Harness, answer: str) -> LLM:
    if not harness.scriptable:
        pytest.skip("this backend's answers cannot be scripted")
    return harness.make(answer)


# ---------------------------------------------------------------- conformance (every backend)


def test_answers_schema_valid_object_or_reports_why(harness: Harness) -> None:
    llm = harness.make(None)
    reply = llm.complete(MESSAGES, SCHEMA, temperature=0.0, max_tokens=300, seed=0)
    assert reply.backend == llm.name
    assert reply.attempts >= 1 and reply.seconds > 0
    if getattr(harness, "real", False):  # a real model under its grammar must answer validly
        assert reply.ok, reply.error
        assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    if reply.ok:
        assert reply.parsed is not None and schema_error(reply.parsed, SCHEMA) is None
        assert reply.error is None
    else:
        assert reply.error


def test_valid_answer_is_parsed(harness: Harness) -> None:
    reply = _scripted(harness, json.dumps(VALID)).complete(MESSAGES, SCHEMA)
    assert reply.ok and reply.parsed == VALID and reply.error is None
    assert reply.attempts == 1
    assert json.loads(reply.text) == VALID


def test_fenced_answer_is_unwrapped(harness: Harness) -> None:
    text = f"Here is my proposal:\n```json\n{json.dumps(VALID, indent=2)}\n```\n"
    reply = _scripted(harness, text).complete(MESSAGES, SCHEMA)
    assert reply.parsed == VALID
    assert reply.text == text  # the raw answer is kept for the journal


def test_tokens_and_latency_are_counted(harness: Harness) -> None:
    llm = _scripted(harness, json.dumps(VALID))
    usage = LLMUsage()
    for _ in range(2):
        reply = llm.complete(MESSAGES, SCHEMA)
        assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
        assert reply.seconds > 0 and reply.attempts == 1
        assert reply.model
        usage.add(reply)
    assert usage.calls == 2 and usage.failures == 0
    assert usage.prompt_tokens == 2 * reply.prompt_tokens and len(usage.per_call_seconds) == 2


@pytest.mark.parametrize("answer", [GARBAGE, "", "[1, 2]", '{"learning_rate": "high", "reason": "x"}',
                                    '{"learning_rate": 1e-5}', '{"learning_rate": NaN, "reason": "x"}'],
                         ids=["garbage", "empty", "array", "wrong-type", "missing-key", "nan"])
def test_invalid_answer_is_an_error_not_an_exception(harness: Harness, answer: str) -> None:
    reply = _scripted(harness, answer).complete(MESSAGES, SCHEMA)
    assert not reply.ok and reply.parsed is None
    assert isinstance(reply.error, str) and reply.error
    assert reply.attempts == harness.invalid_attempts
    assert reply.text == answer


# ---------------------------------------------------------------- parse


def test_parse_reply_reasons_name_the_problem() -> None:
    assert parse_reply("```\n" + json.dumps(VALID) + "\n```", SCHEMA) == (VALID, None)
    assert parse_reply('```json\n{"learning_rate": 1e-5', SCHEMA)[1].startswith("invalid JSON")  # type: ignore[union-attr]
    assert "expected a JSON object" in (parse_reply("3", SCHEMA)[1] or "")
    assert "$.learning_rate" in (parse_reply('{"learning_rate": -1, "reason": "x"}', SCHEMA)[1] or "")
    assert "'reason' is a required property" in (parse_reply('{"learning_rate": 1}', SCHEMA)[1] or "")


# ---------------------------------------------------------------- openai-compatible HTTP


def _openai(server: FakeOpenAIServer, **kw: Any) -> OpenAICompatLLM:
    kw.setdefault("sleep", lambda s: None)
    return OpenAICompatLLM(server.url, "fake-model", **kw)


def test_openai_sends_json_schema_form_by_default(fake_openai_server: FakeOpenAIServer) -> None:
    fake_openai_server.answer_json(VALID)
    reply = _openai(fake_openai_server).complete(MESSAGES, SCHEMA, temperature=0.3, max_tokens=123, seed=7)
    assert reply.ok
    (req,) = fake_openai_server.requests
    assert req.path == "/v1/chat/completions"
    assert req.body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "proposal", "schema": SCHEMA, "strict": True}}
    assert req.body["messages"] == MESSAGES
    assert req.body["model"] == "fake-model"
    assert (req.body["temperature"], req.body["max_tokens"], req.body["seed"]) == (0.3, 123, 7)


def test_openai_sends_the_agents_curves_as_an_image_part(fake_openai_server: FakeOpenAIServer) -> None:
    from test_agent_llm import context

    from llmzero.agents.llm import LLMProposer

    fake_openai_server.answer_json({"diagnosis": "d", "decision": "expand", "proposals": [
        {"changes": [{"name": "entropy_coef", "value": 0.01}], "rationale": "r", "expected_effect": "e"}]})
    out = LLMProposer(_openai(fake_openai_server), answer="free", curves=True).propose(context(), 1, random.Random(0))
    assert out[0].params["entropy_coef"] == 0.01
    (req,) = fake_openai_server.requests
    parts = req.body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")  # base64 of the PNG magic


def test_openai_omits_seed_when_none(fake_openai_server: FakeOpenAIServer) -> None:
    fake_openai_server.answer_json(VALID)
    _openai(fake_openai_server).complete(MESSAGES, SCHEMA)
    assert "seed" not in fake_openai_server.requests[0].body


def test_openai_json_object_form_for_llama_cpp_python(fake_openai_server: FakeOpenAIServer) -> None:
    fake_openai_server.dialect = "llama_cpp_python"
    fake_openai_server.answer_json(VALID)
    # The OpenAI form is refused by that server, as in the notes (HTTP 500) ...
    refused = _openai(fake_openai_server, retries=0).complete(MESSAGES, SCHEMA)
    assert not refused.ok and refused.error is not None
    assert refused.error.startswith("HTTP 500") and "'json_object'" in refused.error
    # ... and its own dialect is accepted.
    reply = _openai(fake_openai_server, response_format="json_object").complete(MESSAGES, SCHEMA)
    assert reply.ok and reply.parsed == VALID
    sent = fake_openai_server.requests[-1].body["response_format"]
    assert sent == {"type": "json_object", "schema": SCHEMA}
    assert LLAMA_CPP_PYTHON_REJECTION.splitlines()[-1].strip() in refused.error


def test_openai_none_form_puts_schema_in_system_prompt(fake_openai_server: FakeOpenAIServer) -> None:
    fake_openai_server.answer_json(VALID)
    reply = _openai(fake_openai_server, response_format="none").complete(MESSAGES, SCHEMA)
    assert reply.ok
    body = fake_openai_server.requests[0].body
    assert "response_format" not in body
    system, user = body["messages"]
    assert system["content"].startswith(MESSAGES[0]["content"]) and '"learning_rate"' in system["content"]
    assert user == MESSAGES[1]
    assert MESSAGES[0]["content"].endswith("stage.")  # the caller's messages are not mutated


def test_openai_retries_with_backoff_then_succeeds(fake_openai_server: FakeOpenAIServer) -> None:
    fake_openai_server.fail(2)
    fake_openai_server.answer_json(VALID)
    slept: list[float] = []
    llm = _openai(fake_openai_server, retries=2, backoff=0.5, sleep=slept.append)
    reply = llm.complete(MESSAGES, SCHEMA)
    assert reply.ok and reply.parsed == VALID and reply.error is None
    assert reply.attempts == 3 and len(fake_openai_server.requests) == 3
    assert slept == [0.5, 1.0]
    assert (reply.prompt_tokens, reply.completion_tokens) == (42, 17)  # failed attempts had no usage


def test_openai_gives_up_after_retries(fake_openai_server: FakeOpenAIServer) -> None:
    fake_openai_server.fail(10, status=503)
    slept: list[float] = []
    reply = _openai(fake_openai_server, retries=2, backoff=0.1, sleep=slept.append).complete(MESSAGES, SCHEMA)
    assert not reply.ok and reply.error is not None and reply.error.startswith("HTTP 503")
    assert reply.attempts == 3 and len(fake_openai_server.requests) == 3
    assert slept == pytest.approx([0.1, 0.2])
    assert reply.text == ""


def test_openai_retries_invalid_json_and_counts_every_attempts_tokens(
        fake_openai_server: FakeOpenAIServer) -> None:
    fake_openai_server.garbage(times=1)
    fake_openai_server.answer_json(VALID, fences=True)
    reply = _openai(fake_openai_server, retries=1).complete(MESSAGES, SCHEMA)
    assert reply.ok and reply.parsed == VALID and reply.attempts == 2
    assert (reply.prompt_tokens, reply.completion_tokens) == (84, 34)


def test_openai_timeout_is_an_error(fake_openai_server: FakeOpenAIServer) -> None:
    fake_openai_server.answer_json(VALID)
    fake_openai_server.sleep(3.0, times=2)
    reply = _openai(fake_openai_server, timeout=0.2, retries=1).complete(MESSAGES, SCHEMA)
    assert not reply.ok and reply.error is not None and "timeout" in reply.error
    assert reply.attempts == 2
    assert 0.2 <= reply.seconds < 2.5


def test_openai_connection_refused_is_an_error() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAICompatLLM(f"http://127.0.0.1:{port}/v1", "m", retries=1, timeout=2, sleep=lambda s: None)
    reply = llm.complete(MESSAGES, SCHEMA)
    assert not reply.ok and reply.error is not None and reply.error.startswith("connection error")
    assert reply.attempts == 2


def test_openai_missing_usage_counts_zero(fake_openai_server: FakeOpenAIServer) -> None:
    fake_openai_server.usage = None
    fake_openai_server.answer_json(VALID)
    reply = _openai(fake_openai_server).complete(MESSAGES, SCHEMA)
    assert reply.ok and (reply.prompt_tokens, reply.completion_tokens) == (0, 0)


def test_openai_reads_api_key_from_named_variable(fake_openai_server: FakeOpenAIServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fake_openai_server.answer_json(VALID)
    monkeypatch.setenv("LLMZERO_TEST_KEY", "sk-test-123")
    _openai(fake_openai_server, api_key_env="LLMZERO_TEST_KEY").complete(MESSAGES, SCHEMA)
    assert fake_openai_server.requests[-1].headers["authorization"] == "Bearer sk-test-123"
    monkeypatch.delenv("LLMZERO_TEST_KEY")
    _openai(fake_openai_server, api_key_env="LLMZERO_TEST_KEY").complete(MESSAGES, SCHEMA)
    assert fake_openai_server.requests[-1].headers["authorization"] == "Bearer none"


def test_openai_rejects_bad_settings_by_name() -> None:
    with pytest.raises(ValueError, match="response_format='json'"):
        OpenAICompatLLM(None, "m", response_format="json")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retries=-1"):
        OpenAICompatLLM(None, "m", retries=-1)


# ---------------------------------------------------------------- replay and recording


def _rec(messages: list[dict[str, str]], text: str, **kw: Any) -> dict[str, Any]:
    return {"messages": messages, "text": text, **kw}


OTHER = [{"role": "user", "content": "Something else entirely."}]


def test_replay_strict_matches_messages_exactly() -> None:
    a, b = json.dumps(VALID), json.dumps({**VALID, "beta": 0.0})
    llm = ReplayLLM([_rec(OTHER, b), _rec(MESSAGES, a)])
    assert llm.complete(MESSAGES, SCHEMA).parsed == VALID
    assert llm.complete(OTHER, SCHEMA).parsed == json.loads(b)
    changed = [MESSAGES[0], {**MESSAGES[1], "content": MESSAGES[1]["content"] + " "}]
    miss = llm.complete(changed, SCHEMA)
    assert not miss.ok and miss.error is not None and "no transcript matched" in miss.error
    assert miss.backend == "replay"


def test_replay_same_messages_return_records_in_turn() -> None:
    texts = [json.dumps({**VALID, "beta": float(i)}) for i in range(3)]
    llm = ReplayLLM([_rec(MESSAGES, t) for t in texts])
    betas = [llm.complete(MESSAGES, SCHEMA).parsed["beta"] for _ in range(4)]  # type: ignore[index]
    assert betas == [0.0, 1.0, 2.0, 0.0]


def test_replay_non_strict_falls_back_to_file_order() -> None:
    texts = [json.dumps({**VALID, "beta": float(i)}) for i in range(2)]
    llm = ReplayLLM([_rec(OTHER, texts[0]), {"text": texts[1]}], strict=False)
    unmatched = [llm.complete(MESSAGES, SCHEMA).parsed["beta"] for _ in range(3)]  # type: ignore[index]
    assert unmatched == [0.0, 1.0, 0.0]
    assert llm.complete(OTHER, SCHEMA).parsed["beta"] == 0.0  # type: ignore[index]


def test_replay_without_records_is_an_error() -> None:
    reply = ReplayLLM([], strict=False).complete(MESSAGES, SCHEMA)
    assert not reply.ok and reply.error is not None and "no transcripts" in reply.error


def test_replay_malformed_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_rec(MESSAGES, "{}")) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.jsonl:3"):
        ReplayLLM(path)


def test_recording_then_replay_is_exact(fake_openai_server: FakeOpenAIServer, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "transcript.jsonl"
    fake_openai_server.answer_json(VALID, fences=True, times=1)
    fake_openai_server.garbage(times=2)  # one failed call, after its retry
    fake_openai_server.answer_json({**VALID, "beta": 0.1})
    recorder = RecordingLLM(_openai(fake_openai_server, retries=1), path)
    assert recorder.name == "openai"
    calls = [MESSAGES, OTHER, MESSAGES]
    live = [recorder.complete(m, SCHEMA, seed=i) for i, m in enumerate(calls)]
    assert [r.ok for r in live] == [True, False, True]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first["key"] == messages_key(MESSAGES) and first["schema_name"] == "proposal"
    assert first["seed"] == 0 and first["backend"] == "openai"

    replay = ReplayLLM(path)
    for m, want in zip(calls, live, strict=True):
        got = replay.complete(m, SCHEMA)
        assert got.backend == "replay"
        assert (got.text, got.parsed, got.error) == (want.text, want.parsed, want.error)
        assert (got.prompt_tokens, got.completion_tokens, got.seconds, got.attempts, got.model) == (
            want.prompt_tokens, want.completion_tokens, want.seconds, want.attempts, want.model)


def test_recording_failure_does_not_fail_the_call(tmp_path: Path) -> None:
    inner = ReplayLLM([_rec(MESSAGES, json.dumps(VALID))])
    reply = RecordingLLM(inner, tmp_path).complete(MESSAGES, SCHEMA)  # a directory: cannot append
    assert reply.ok and reply.parsed == VALID
