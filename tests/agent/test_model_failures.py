"""Model-server failures told apart, against a real HTTP server on 127.0.0.1 that the test starts.

A hang, a stalled answer, 5xx, garbage bodies, a dropped connection, a refused connection, a rejected request
and a context overflow each raise their own `ModelServerError` kind with a one-line message; the request
timeout ends a hang within it. Through the loop each becomes the step error's kind; all are infrastructure
failures (stop_reason model_error, retried by the rollout) except the context overflow, the agent's own
(stop_reason context_length). Model text with lone surrogates or bytes that are not UTF-8 ends in clean
strings, and a whole rollout through Docker sandboxes writes it to parquet.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from toolgym.agent.clients import (
    MODEL_ERROR_KINDS,
    ChatClient,
    CompletionsClient,
    ContextLengthExceeded,
    ModelServerBadResponse,
    ModelServerDropped,
    ModelServerError,
    ModelServerHTTPError,
    ModelServerRejected,
    ModelServerSlowStream,
    ModelServerTimeout,
    ModelServerUnavailable,
    RetryPolicy,
)
from toolgym.agent.loop import run_episode
from toolgym.agent.messages import user
from toolgym.agent.policies import LLMPolicy
from toolgym.agent.rollout import INFRA_STOPS
from toolgym.agent.trajectory import ERROR_KINDS

LIFETIME_S = 60.0  # a server shuts itself down after this, whatever the test does
HOLD_S = 10.0  # the longest a scripted hang or trickle holds a connection

VLLM_CONTEXT = (
    "This model's maximum context length is 4096 tokens. However, you requested 5120 tokens "
    "(4096 in the messages, 1024 in the completion). Please reduce the length of the messages or completion."
)


def completion(text: str) -> dict:
    return {"choices": [{"index": 0, "text": text, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3}}


def chat(message: dict) -> dict:
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


class Script:
    """What the server does, one step per request: ("json", status, obj), ("raw", status, bytes),
    ("hang",), ("trickle", nbytes, interval_s) or ("drop",). An exhausted script answers 500."""

    def __init__(self, *steps: tuple) -> None:
        self.steps = deque(steps)
        self.requests: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def next(self, path: str, body: dict) -> tuple:
        with self.lock:
            self.requests.append((path, body))
            return self.steps.popleft() if self.steps else ("json", 500, {"error": {"message": "no more"}})


@contextmanager
def loopback(script: Script) -> Iterator[str]:
    """Serve `script` on a free port of 127.0.0.1; yields the base URL. Bounded: every held connection is
    released when the block ends (or after HOLD_S), and the server stops itself after LIFETIME_S."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            step = script.next(self.path, body)
            self.close_connection = True
            try:
                if step[0] == "hang":
                    stop.wait(HOLD_S)
                elif step[0] == "drop":
                    pass  # close without a word
                elif step[0] == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(step[1]))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    deadline = time.monotonic() + HOLD_S
                    for _ in range(step[1]):
                        if stop.wait(step[2]) or time.monotonic() > deadline:
                            break
                        self.wfile.write(b" ")
                        self.wfile.flush()
                else:
                    status, payload = step[1], step[2]
                    data = payload if step[0] == "raw" else json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(LIFETIME_S, server.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        watchdog.cancel()
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAST = RetryPolicy(max_retries=2, backoff_s=0.0)


def fail(url: str, cls=ChatClient, **kwargs) -> tuple[ModelServerError, float]:
    """The error one request raises, and how long it took."""
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeout_s", 0.5)

    async def go():
        async with cls(url, "m", **kwargs) as client:
            return await client.complete([user("hi")])

    started = time.perf_counter()
    with pytest.raises(ModelServerError) as err:
        asyncio.run(go())
    elapsed = time.perf_counter() - started
    assert "\n" not in str(err.value) and len(str(err.value)) < 400
    return err.value, elapsed


def test_a_hung_server_times_out_within_the_request_timeout_and_is_not_retried_by_default():
    script = Script(("hang",), ("hang",))
    with loopback(script) as url:
        err, elapsed = fail(url)
    assert type(err) is ModelServerTimeout and err.kind == "model_timeout" and err.infra
    assert elapsed < 0.5 + 1.5 and len(script.requests) == 1
    assert "did not answer within 0.5s (1 try): it hangs or is overloaded" in str(err)
    # timeout_retries lets it try again, each try within the same timeout
    script = Script(("hang",), ("json", 200, chat({"content": "late"})))
    with loopback(script) as url:

        async def go():
            retry = RetryPolicy(max_retries=2, backoff_s=0.0, timeout_retries=1)
            async with ChatClient(url, "m", retry=retry, timeout_s=0.5) as client:
                return await client.complete([user("hi")])

        assert asyncio.run(go()).message["content"] == "late"


def test_a_stalled_stream_is_told_from_a_hang():
    # Headers come at once, then a byte every 0.1 s: each read is quick, the whole answer is not.
    script = Script(("trickle", 1000, 0.1))
    with loopback(script) as url:
        err, elapsed = fail(url)
    assert type(err) is ModelServerSlowStream and err.kind == "model_slow_stream" and err.infra
    assert isinstance(err, ModelServerTimeout) and elapsed < 0.5 + 1.5
    assert "began answering but did not finish within 0.5s" in str(err)


def test_5xx_after_retries():
    script = Script(*[("json", 503, {"error": {"message": "engine\noverloaded"}})] * 3)
    with loopback(script) as url:
        err, _ = fail(url)
    assert type(err) is ModelServerHTTPError and err.kind == "model_http_error" and err.status == 503
    assert "kept failing (503: engine overloaded) after 3 tries" in str(err) and len(script.requests) == 3


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (
            b"<html>502 Bad Gateway</html>",
            "something other than a JSON object ('<html>502 Bad Gateway</html>')",
        ),
        (b"", "an empty body"),
        (b'{"choices": [{"message": {"content": "cut', "something other than a JSON object"),
        (b"[" * 100_000, "something other than a JSON object"),
        (b'{"object": "list"}', "JSON without a choices list"),
        (b'{"choices": ["x"]}', "JSON whose choices[0] is not an object"),
        (b'{"choices": [{"text": "raw"}]}', "JSON whose choices[0] has no message object"),
        (
            b'{"error": {"message": "model crashed"}}',
            "an error object instead of a completion (model crashed)",
        ),
    ],
)
def test_garbage_bodies_are_retried_then_named(body, what):
    script = Script(*[("raw", 200, body)] * 3)
    with loopback(script) as url:
        err, _ = fail(url)
    assert type(err) is ModelServerBadResponse and err.kind == "model_bad_response" and err.infra
    assert what in str(err) and "OpenAI-compatible API" in str(err) and len(script.requests) == 3


def test_a_garbage_body_then_a_good_one_is_fine_and_completions_need_text():
    script = Script(("raw", 200, b"nonsense"), ("json", 200, chat({"content": "ok"})))
    with loopback(script) as url:

        async def go():
            async with ChatClient(url, "m", retry=FAST) as client:
                return await client.complete([user("hi")]), client.usage.retries

        turn, retries = asyncio.run(go())
    assert turn.message["content"] == "ok" and retries == 1
    script = Script(*[("json", 200, chat({"content": "a chat answer"}))] * 3)
    with loopback(script) as url:
        err, _ = fail(url, CompletionsClient, encoding="hermes")
    assert err.kind == "model_bad_response" and "choices[0] has no text string" in str(err)


@pytest.mark.parametrize(
    "error",
    [
        {"error": {"message": VLLM_CONTEXT, "type": "BadRequestError", "param": None, "code": 400}},
        {"object": "error", "message": VLLM_CONTEXT, "type": "BadRequestError", "code": 400},
        {
            "error": {
                "message": "Too long.",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            }
        },
        {
            "error": {
                "message": "The decoder prompt (length 5000) is longer than the maximum model length of 4096.",
                "code": 400,
            }
        },
    ],
)
def test_context_length_exceeded_is_the_agents_own_and_not_retried(error):
    script = Script(("json", 400, error), ("json", 200, chat({"content": "never asked"})))
    with loopback(script) as url:
        err, _ = fail(url)
    assert type(err) is ContextLengthExceeded and err.kind == "context_length" and err.infra is False
    assert err.status == 400 and len(script.requests) == 1
    assert str(err).startswith("The prompt no longer fits the model's context window (400: ")


def test_rejected_dropped_and_refused():
    script = Script(("json", 404, {"error": {"message": "The model `m` does not exist."}}))
    with loopback(script) as url:
        err, _ = fail(url)
    assert type(err) is ModelServerRejected and err.kind == "model_rejected" and err.infra
    assert len(script.requests) == 1 and "rejected the request (404): The model `m` does not exist." in str(
        err
    )
    script = Script(("drop",), ("drop",), ("drop",))
    with loopback(script) as url:
        err, _ = fail(url)
    assert type(err) is ModelServerDropped and err.kind == "model_dropped"
    assert "dropped the connection 3 times" in str(err)
    url = f"http://127.0.0.1:{free_port()}"
    err, _ = fail(url)
    assert type(err) is ModelServerUnavailable and err.kind == "model_unavailable"
    assert str(err) == (
        f"No model server answers at {url}: start it (toolgym serve prints the command) or fix --base-url."
    )


def test_surrogates_and_bad_bytes_from_a_server_come_out_clean():
    # A JSON escape for a lone surrogate and raw bytes that are not UTF-8, in the chat and the raw paths.
    chat_body = (
        b'{"choices": [{"message": {"content": "a\\ud800b \xff\xfe", "reasoning": "r\\udcff", "tool_calls": '
        b'[{"id": "c\\ud800", "function": {"name": "f\\ud800", "arguments": "{\\"q\\": \\"\\\\ud800\\"}"}}]}, '
        b'"finish_reason": "stop\\ud800"}], "usage": {"prompt_tokens": "lots", "completion_tokens": -3}}'
    )
    text_body = b'{"choices": [{"text": "<think>r\\udcff</think>a\\ud800 \xff<tool_call>{bad", "finish_reason": "stop"}]}'
    script = Script(("raw", 200, chat_body), ("raw", 200, text_body))
    with loopback(script) as url:

        async def go():
            async with (
                ChatClient(url, "m") as chat_client,
                CompletionsClient(url, "m", encoding="hermes") as raw,
            ):
                return await chat_client.complete([user("x\ud800")]), await raw.complete([user("y\udcff")])

        chat_turn, raw_turn = asyncio.run(go())
    for turn in (chat_turn, raw_turn):
        json.dumps([turn.message, turn.text, turn.finish_reason, turn.usage], ensure_ascii=False).encode(
            "utf-8"
        )
    assert (
        chat_turn.message["content"] == "a\ufffdb \ufffd\ufffd"
        and chat_turn.message["reasoning_content"] == "r\ufffd"
    )
    call = chat_turn.message["tool_calls"][0]
    assert call["id"] == "c\ufffd" and call["function"]["name"] == "f\ufffd"
    # An escaped lone surrogate in the arguments is replaced too: the tool never receives one.
    assert json.loads(call["function"]["arguments"]) == {"q": "\ufffd"}
    assert chat_turn.usage["prompt_tokens"] == chat_turn.usage["completion_tokens"] == 0
    assert raw_turn.text == "<think>r\ufffd</think>a\ufffd \ufffd<tool_call>{bad"
    assert raw_turn.message["reasoning_content"] == "r\ufffd" and raw_turn.message["parse_errors"]
    # The requests went out as UTF-8 JSON with the history's lone surrogates replaced.
    assert script.requests[0][1]["messages"][0]["content"] == "x\ufffd"
    assert script.requests[1][1]["prompt"].count("y\ufffd") == 1


class OneTaskEnv:
    """Just enough of a ToolEnv for the loop to reach its first model turn."""

    def __init__(self) -> None:
        self.unwrapped = SimpleNamespace(task=SimpleNamespace(id="t", solution=[]))

    async def areset(self, seed=None, options=None):
        return None, {"env_id": "e", "task_id": "t", "messages": [user("hi")], "tools": []}

    async def astep(self, action):  # pragma: no cover - no failing model gets this far
        raise AssertionError("the model failed: the environment is never stepped")


@pytest.mark.parametrize(
    ("step", "kind", "stop"),
    [
        (("hang",), "model_timeout", "model_error"),
        (("trickle", 1000, 0.1), "model_slow_stream", "model_error"),
        (("json", 502, {"error": {"message": "bad gateway"}}), "model_http_error", "model_error"),
        (("raw", 200, b"<html>"), "model_bad_response", "model_error"),
        (("drop",), "model_dropped", "model_error"),
        (("json", 401, {"error": {"message": "bad key"}}), "model_rejected", "model_error"),
        (("json", 400, {"error": {"message": VLLM_CONTEXT}}), "context_length", "context_length"),
        (None, "model_unavailable", "model_error"),
    ],
)
def test_the_loop_records_each_kind_and_only_the_context_overflow_is_the_agents(step, kind, stop):
    def episode(url: str):
        client = ChatClient(url, "m", retry=RetryPolicy(max_retries=1, backoff_s=0.0), timeout_s=0.4)
        return asyncio.run(run_episode(OneTaskEnv(), LLMPolicy(client, thinking=False)))

    if step is None:
        traj = episode(f"http://127.0.0.1:{free_port()}")
    else:
        with loopback(Script(step, step)) as url:
            traj = episode(url)
    assert traj.stop_reason == stop and traj.truncated and not traj.terminated and traj.reward == 0.0
    [error] = traj.steps[-1].errors
    assert error["kind"] == kind and kind in ERROR_KINDS and kind in MODEL_ERROR_KINDS
    assert error["detail"] and "\n" not in error["detail"]
    assert (stop in INFRA_STOPS) is (kind != "context_length")
    assert traj.error_counts()[kind] == 1


def test_any_other_exception_from_a_policy_is_a_plain_model_error():
    class Broken:
        name = "broken"

        def start(self, task):
            pass

        async def act(self, messages, tools):
            raise KeyError("choices\ud800")

    traj = asyncio.run(run_episode(OneTaskEnv(), Broken()))
    assert traj.stop_reason == "model_error"
    assert traj.steps[0].errors == [{"kind": "model_error", "detail": "KeyError: 'choices\\ud800'"}]


def test_a_rollout_through_docker_writes_dirty_model_text_and_keeps_each_failure_where_it_belongs(
    tmp_path, docker_backend
):
    """End to end through Docker sandboxes and parquet, a hermes model over /v1/completions: task 1's replies
    carry lone surrogates and bytes that are not UTF-8 (an unreadable turn, a call to an unknown tool, an
    answer); task 2's prompt overflows the context (the agent's failure: status ok); task 3's server hangs
    (an infrastructure failure after the rollout's retries, each ended by the request timeout)."""
    from toolgym.agent.evaluate import evaluate
    from toolgym.agent.rollout import load_trajectories, rollout
    from toolgym.envs.corpus import load_corpus

    def dirty(text: str) -> bytes:  # JSON escapes for the surrogates, raw 0xff 0xfe bytes for the marker
        return json.dumps(completion(text)).encode().replace(b"@BYTES@", b"\xff\xfe")

    script = Script(
        ("raw", 200, dirty('<think>plan \udcff</think>\n<tool_call>\n{"name": "x\ud800 @BYTES@')),
        (
            "raw",
            200,
            dirty(
                'ok</think><tool_call>\n{"name": "nope\ud800", "arguments": {"q": "\\udcff @BYTES@"}}\n</tool_call>'
            ),
        ),
        ("raw", 200, dirty("done</think>The answer is \ud800 @BYTES@.")),
        ("json", 400, {"error": {"message": VLLM_CONTEXT, "type": "BadRequestError", "code": 400}}),
        ("hang",),
        ("hang",),
        ("hang",),
    )
    corpus = load_corpus("reference").select(env_ids=["order_desk"], limit=3)
    with loopback(script) as url:

        def policy():
            client = CompletionsClient(
                url, "m", encoding="hermes", timeout_s=0.5, retry=RetryPolicy(max_retries=0)
            )
            return LLMPolicy(client, thinking=True)

        stats = asyncio.run(
            rollout(
                corpus,
                policy,
                tmp_path / "run",
                in_flight=1,
                backend="docker",
                max_infra_retries=2,
                progress=False,
            )
        )
    dirty_row, overflow, hung = load_trajectories(tmp_path / "run")
    assert len(script.requests) == 7 and (stats.infra_errors, stats.infra_retries) == (1, 3)

    assert (dirty_row["status"], dirty_row["stop_reason"], dirty_row["infra_retries"]) == ("ok", "answer", 0)
    assert "\ufffd" in dirty_row["malformed"][0]["text"] and dirty_row["malformed"][0]["errors"]
    assistant = [m for m in dirty_row["messages"] if m["role"] == "assistant"]
    call = assistant[0]["tool_calls"][0]["function"]
    assert call["name"] == "nope\ufffd" and json.loads(call["arguments"]) == {"q": "\ufffd \ufffd\ufffd"}
    assert assistant[-1]["content"] == "The answer is \ufffd \ufffd\ufffd."
    assert dirty_row["steps"][0]["errors"][0]["kind"] == "parse" and dirty_row["steps"][1]["errors"]

    assert (overflow["status"], overflow["stop_reason"], overflow["infra_retries"]) == (
        "ok",
        "context_length",
        0,
    )
    assert overflow["steps"][-1]["errors"][0]["kind"] == "context_length" and not overflow["success"]

    assert (hung["status"], hung["stop_reason"], hung["infra_retries"]) == ("infra_error", "model_error", 3)
    assert "did not answer within 0.5s" in hung["error"]
    assert hung["steps"][-1]["errors"][0]["kind"] == "model_timeout"

    report = evaluate([dirty_row, overflow, hung], ks=(1,))
    assert report["infra_errors"] == 1 and report["overall"]["episodes"] == 2
