"""A tiny scripted OpenAI-compatible model server for the client tests.

`FakeModel` answers from a script of (status, body, delay) replies and records every request; it is
served in-process through `httpx.MockTransport` or on 127.0.0.1 by a real `http.server` thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


def chat_reply(
    message: dict[str, Any], prompt_tokens: int = 10, completion_tokens: int = 5
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


def text_reply(
    text: str, finish_reason: str = "stop", prompt_tokens: int = 20, completion_tokens: int = 7
) -> dict:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


class FakeModel:
    """Replies in script order; `requests` holds (path, body) of everything received."""

    def __init__(self, *replies: tuple[int, Any] | tuple[int, Any, float]) -> None:
        self.script: deque = deque(replies)
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, Any, float]:
        self.requests.append((path, body))
        if not self.script:
            return 500, {"error": {"message": "script exhausted"}}, 0.0
        status, reply, *delay = self.script.popleft()
        return status, reply, (delay[0] if delay else 0.0)

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            status, reply, delay = self.answer(request.url.path, json.loads(request.content))
            if delay:
                raise httpx.ReadTimeout("scripted timeout", request=request)
            return httpx.Response(status, json=reply)

        return httpx.MockTransport(handle)


@contextmanager
def serve(model: FakeModel, port: int = 0) -> Iterator[str]:
    """Serve `model` on a loopback port (a free one by default); yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, reply, delay = model.answer(self.path, body)
            time.sleep(delay)
            data = json.dumps(reply).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
