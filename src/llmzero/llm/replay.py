"""Recorded LLM transcripts: replay them as a backend, or record them from any backend.

Tests and demos need LLM answers that are real (the quirks of a real model: fences, prose, wrong
types) yet deterministic and free. ``RecordingLLM`` wraps any backend and appends one JSON line per
call to a transcript file; ``ReplayLLM`` answers from such a file. A transcript record is::

    {"version": 1, "key": "<sha256 of the messages>", "messages": [...], "schema": {...},
     "schema_name": "...", "text": "<raw answer>", "prompt_tokens": 0, "completion_tokens": 0,
     "seconds": 0.0, "attempts": 1, "backend": "...", "model": "...", "error": null}

Only ``text`` is required to replay; ``messages`` is needed for exact matching. Replayed text is
parsed and validated again, against the schema of the replaying call, with the same rules as live
answers, so a recorded answer that the current schema no longer accepts fails as it would live.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmzero.llm._base import LLM, LLMReply, Message
from llmzero.llm.parse import parse_reply

log = logging.getLogger(__name__)

TRANSCRIPT_VERSION = 1


def messages_key(messages: Iterable[Mapping[str, Any]]) -> str:
    """A stable hash of chat messages: canonical JSON (sorted keys, no spaces), sha256 hex.

    Stable across processes and Python versions (unlike ``hash``), so that a transcript recorded
    today still matches the same prompt tomorrow; any change to the prompt changes the key.
    """
    canonical = json.dumps([dict(m) for m in messages], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Transcript:
    """One recorded call, as much of it as replay needs."""

    text: str
    key: str | None = None  # messages_key of the recorded messages; None: usable only in order
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    attempts: int = 1
    model: str = ""
    error: str | None = None

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Transcript:
        """Read a record; the key is recomputed from ``messages`` so that hand-written fixtures
        need not carry one, and a stale stored key cannot silently mismatch."""
        if not isinstance(rec, Mapping) or not isinstance(rec.get("text"), str):
            raise ValueError("a transcript record must be a JSON object with a string 'text'")
        messages = rec.get("messages")
        if messages is not None and not isinstance(messages, list):
            raise ValueError("a transcript record's 'messages' must be a list of messages")
        return cls(text=rec["text"], key=None if messages is None else messages_key(messages),
                   prompt_tokens=int(rec.get("prompt_tokens") or 0),
                   completion_tokens=int(rec.get("completion_tokens") or 0),
                   seconds=float(rec.get("seconds") or 0.0), attempts=int(rec.get("attempts") or 1),
                   model=str(rec.get("model") or ""), error=rec.get("error"))


def load_transcripts(path: str | os.PathLike[str]) -> list[Transcript]:
    """Every record of a JSONL transcript file, in file order; blank lines are skipped.

    A malformed line raises ``ValueError`` naming the file and line: a broken fixture is a setup
    error to fix, not an LLM failure to replay.
    """
    out: list[Transcript] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(Transcript.from_record(json.loads(line)))
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from e
    return out


class ReplayLLM:
    """Answers from recorded transcripts instead of a model.

    A call is matched to the records whose messages hash equal to its own; several records with
    the same messages are returned in turn (cycling), as a model asked the same thing repeatedly.
    With ``strict=False`` a call that matches no record gets the records in file order instead
    (cycling), which suits canned answers whose prompts are not worth pinning. An unmatched strict
    call returns ``parsed=None`` with an error. Latency and token counts are the recorded ones, so
    accounting in tests is deterministic.
    """

    name = "replay"

    def __init__(self, source: str | os.PathLike[str] | Iterable[Mapping[str, Any]], *,
                 strict: bool = True) -> None:
        """``source`` is a JSONL transcript file, or the records themselves (for scripted tests)."""
        if isinstance(source, (str, os.PathLike)):
            self.source = str(source)
            self._records = load_transcripts(source)
        else:
            self.source = "<records>"
            self._records = [Transcript.from_record(r) for r in source]
        self.strict = strict
        self._by_key: dict[str, list[Transcript]] = {}
        for t in self._records:
            if t.key is not None:
                self._by_key.setdefault(t.key, []).append(t)
        self._key_turn: dict[str, int] = {}
        self._next = 0
        self._lock = threading.Lock()  # the cursors move on every call

    def __len__(self) -> int:
        return len(self._records)

    def complete(self, messages: list[Message], schema: dict[str, Any], *, temperature: float = 0.2,
                 max_tokens: int = 400, seed: int | None = None) -> LLMReply:
        """The next recorded answer for ``messages``; sampling arguments are ignored (the answer
        was sampled when it was recorded)."""
        key = messages_key(messages)
        with self._lock:
            t = self._pick(key)
        if t is None:
            why = (f"no transcript matched the messages (key {key[:12]}) among the "
                   f"{len(self._records)} recorded in {self.source}" if self._records
                   else f"no transcripts in {self.source}")
            return LLMReply(text="", parsed=None, backend=self.name, error=why)
        parsed, error = parse_reply(t.text, schema)
        if parsed is None and not t.text and t.error:
            error = t.error  # the recorded call failed outright: replay its reason
        return LLMReply(text=t.text, parsed=parsed, prompt_tokens=t.prompt_tokens,
                        completion_tokens=t.completion_tokens, seconds=t.seconds, attempts=t.attempts,
                        backend=self.name, model=t.model, error=error)

    def _pick(self, key: str) -> Transcript | None:
        group = self._by_key.get(key)
        if group:
            turn = self._key_turn.get(key, 0)
            self._key_turn[key] = turn + 1
            return group[turn % len(group)]
        if self.strict or not self._records:
            return None
        t = self._records[self._next % len(self._records)]
        self._next += 1
        return t


def transcript_record(messages: list[Message], schema: dict[str, Any], reply: LLMReply, *,
                      temperature: float, max_tokens: int, seed: int | None) -> dict[str, Any]:
    """The JSONL record of one call, in the format ``ReplayLLM`` reads."""
    return {
        "version": TRANSCRIPT_VERSION,
        "key": messages_key(messages),
        "messages": [dict(m) for m in messages],
        "schema_name": str(schema.get("title", "")),
        "schema": schema,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "seed": seed,
        "text": reply.text,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "seconds": reply.seconds,
        "attempts": reply.attempts,
        "backend": reply.backend,
        "model": reply.model,
        "error": reply.error,
    }


class RecordingLLM:
    """Forwards every call to ``inner`` and appends its transcript to a JSONL file.

    The file is append-only and each record is flushed when written, so a search that dies still
    leaves every call it made. A failure to write is logged and does not fail the call: recording
    is a side channel, the search must not depend on it. ``name`` is the inner backend's, because
    the answers are that backend's.
    """

    def __init__(self, inner: LLM, path: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.path = Path(path)
        self._lock = threading.Lock()  # one whole line per record, even from several threads

    def complete(self, messages: list[Message], schema: dict[str, Any], *, temperature: float = 0.2,
                 max_tokens: int = 400, seed: int | None = None) -> LLMReply:
        reply = self.inner.complete(messages, schema, temperature=temperature, max_tokens=max_tokens,
                                    seed=seed)
        record = transcript_record(messages, schema, reply, temperature=temperature,
                                   max_tokens=max_tokens, seed=seed)
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
            except OSError:
                log.warning("could not append the LLM transcript to %s", self.path, exc_info=True)
        return reply
