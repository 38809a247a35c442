"""A fake OpenAI-compatible chat-completions server for tests, standard library only.

It lets the HTTP backend be tested through its real client stack (the ``openai`` SDK, HTTP,
timeouts, status codes) without a model: each test scripts what the server answers and inspects
the requests it received. It binds 127.0.0.1 on a free port, serves from one background thread
(one more per request), and is bounded: at most ``max_requests`` requests are answered (then 429),
request bodies are capped, scripted delays are capped and cut short at shutdown, and the
``fake_openai_server`` fixture stops it at teardown.

Use it from a test module with::

    from llm_server import FakeOpenAIServer, _fake_openai_server_fixture  # noqa: F401

and take ``fake_openai_server`` as a test argument.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest

Dialect = Literal["openai", "llama_cpp_python"]

MAX_BODY_BYTES = 1 << 20
MAX_DELAY_S = 5.0

# What llama-cpp-python's server (0.3.36) answers to the OpenAI ``json_schema`` response_format.
LLAMA_CPP_PYTHON_REJECTION = ("1 validation error for CreateChatCompletionRequest\nresponse_format.type\n"
                              "  Input should be 'text' or 'json_object'")


@dataclass(frozen=True)
class Step:
    """One scripted response: ``content`` with HTTP 200, or an error ``status``, after ``delay``."""

    content: str = ""
    status: int = 200
    delay: float = 0.0


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # the decoded JSON body, or the raw text when it was not JSON


@dataclass
class FakeOpenAIServer:
    """Scriptable stand-in for ``/v1/chat/completions``.

    Requests consume the queued steps first (``fail``, ``sleep``, ``answer(..., times=n)``,
    ``garbage(times=n)``), then get the default answer. ``dialect="llama_cpp_python"`` rejects
    the ``json_schema`` response_format with HTTP 500 before any step is consumed, as that server
    does. ``usage`` is the token counts of every answer; None leaves the usage block out.
    """

    dialect: Dialect = "openai"
    usage: tuple[int, int] | None = (42, 17)
    max_requests: int = 200
    requests: list[RecordedRequest] = field(default_factory=list)
    default: Step = Step(content='{"ok": true}')
    _queue: deque[Step] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # ----- scripting -----

    def answer(self, content: str, *, fences: bool = False, times: int | None = None) -> None:
        """Answer ``content`` (inside a ```json fence when ``fences``): from now on when ``times``
        is None, else for the next ``times`` requests."""
        if fences:
            content = f"```json\n{content}\n```"
        self._script(Step(content=content), times)

    def answer_json(self, obj: Any, *, fences: bool = False, times: int | None = None) -> None:
        self.answer(json.dumps(obj), fences=fences, times=times)

    def garbage(self, *, times: int | None = None) -> None:
        """Answer text that is not JSON, as an unconstrained small model sometimes does."""
        self._script(Step(content="Sure! I would raise the learning rate {because"), times)

    def fail(self, n: int, status: int = 500) -> None:
        """Answer HTTP ``status`` to the next ``n`` requests, then carry on with the script."""
        self._script(Step(status=status), n)

    def sleep(self, seconds: float, *, times: int = 1) -> None:
        """Stall the next ``times`` requests for ``seconds`` (capped) before answering the default."""
        self._script(Step(content=self.default.content, delay=min(seconds, MAX_DELAY_S)), times)

    def _script(self, step: Step, times: int | None) -> None:
        with self._lock:
            if times is None:
                self.default = step
            else:
                self._queue.extend([step] * times)

    # ----- lifecycle -----

    @property
    def url(self) -> str:
        """The base URL to give a client (``.../v1``)."""
        assert self._httpd is not None, "the server is not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True  # a stalled handler must not hold up shutdown
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a scripted delay
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- serving (called from handler threads) -----

    def _respond(self, req: RecordedRequest) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(req)
            n = len(self.requests)
        if n > self.max_requests:
            return 429, _error(429, f"fake server request budget of {self.max_requests} exhausted")
        if req.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            return 404, _error(404, f"no route {req.path}")
        body = req.body if isinstance(req.body, dict) else {}
        response_format = body.get("response_format") or {}
        if self.dialect == "llama_cpp_python" and response_format.get("type") == "json_schema":
            return 500, _error(500, LLAMA_CPP_PYTHON_REJECTION)
        with self._lock:
            step = self._queue.popleft() if self._queue else self.default
        if step.delay:
            self._stopping.wait(step.delay)
        if step.status != 200:
            return step.status, _error(step.status, "scripted failure")
        completion: dict[str, Any] = {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "")),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": step.content}}],
        }
        if self.usage is not None:
            p, c = self.usage
            completion["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        return 200, completion


def _error(status: int, message: str) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "code": status}}


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeOpenAI/1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY_BYTES)
        raw = self.rfile.read(length).decode("utf-8", errors="replace")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        req = RecordedRequest(method="POST", path=self.path,
                              headers={k.lower(): v for k, v in self.headers.items()}, body=body)
        status, payload = self.server.fake._respond(req)  # type: ignore[attr-defined]
        data = json.dumps(payload).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # tests stay quiet; the requests are in ``FakeOpenAIServer.requests``


@pytest.fixture(name="fake_openai_server")
def _fake_openai_server_fixture() -> Iterator[FakeOpenAIServer]:
    """A started fake server, stopped at teardown."""
    with FakeOpenAIServer() as server:
        yield server
