"""LLM clients against a scripted OpenAI-compatible server: retries, timeouts, tool calls, usage, raw mode."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
from toolgym.agent import encodings
from toolgym.agent.clients import (
    ChatClient,
    CompletionsClient,
    ModelServerError,
    ModelServerTimeout,
    ModelServerUnavailable,
    RetryPolicy,
    api_root,
)
from toolgym.agent.messages import arguments_dict, tool_result, user

from .fake_server import FakeModel, chat_reply, serve, text_reply

# Timeouts are retried here too (by default a timed-out attempt is not: see test_model_failures.py).
FAST = RetryPolicy(max_retries=3, backoff_s=0.001, max_backoff_s=0.01, timeout_retries=3)
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def run(coro):
    return asyncio.run(coro)


async def no_sleep(_seconds: float) -> None:
    return None


def mock_client(model: FakeModel, cls=ChatClient, **kwargs):
    kwargs.setdefault("retry", FAST)
    return cls("http://fake:8000", "m", transport=model.transport(), sleep=no_sleep, **kwargs)


def test_api_root_accepts_both_spellings():
    assert api_root("http://h:1") == api_root("http://h:1/v1/") == "http://h:1/v1"


def test_tool_call_round_trip_with_reasoning_and_usage():
    model = FakeModel(
        (200, chat_reply({"content": None, "reasoning": "need weather", "tool_calls": [CALL]}, 100, 20)),
        (200, chat_reply({"content": "Rainy.", "reasoning_content": "read it"}, 150, 10)),
    )

    async def episode():
        async with mock_client(model) as client:
            history = [user("Weather in Paris?")]
            first = await client.complete(history, TOOLS, tool_choice="auto", thinking=True, temperature=0.6)
            history += [first.message, tool_result(CALL["id"], "rain")]
            second = await client.complete(history, TOOLS)
            return client, first, second

    client, first, second = run(episode())
    assert first.message["reasoning_content"] == "need weather"
    assert arguments_dict(first.message["tool_calls"][0]) == {"city": "Paris"}
    assert second.message["content"] == "Rainy." and second.message["reasoning_content"] == "read it"
    path, body = model.requests[0]
    assert path == "/v1/chat/completions"
    assert body["tools"] == TOOLS and body["tool_choice"] == "auto" and body["temperature"] == 0.6
    assert body["chat_template_kwargs"] == {"thinking": True, "enable_thinking": True}
    sent = model.requests[1][1]["messages"]
    # The reasoning goes back as reasoning_content; the parse report does not go on the wire.
    assert sent[1]["reasoning_content"] == "need weather" and "parse_errors" not in sent[1]
    assert sent[1]["tool_calls"][0]["id"] == "c1" and sent[2] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": "rain",
    }
    assert (client.usage.prompt_tokens, client.usage.completion_tokens, client.usage.requests) == (250, 30, 2)
    assert client.usage.total_tokens == 280


def test_retries_on_500_and_429_then_succeeds():
    model = FakeModel(
        (500, {"error": {"message": "boom"}}),
        (429, {"error": {"message": "slow down"}}),
        (503, "unavailable"),
        (200, chat_reply({"content": "ok"})),
    )
    delays = []

    async def record(seconds):
        delays.append(seconds)

    async def go():
        retry = RetryPolicy(max_retries=3, backoff_s=1.0, max_backoff_s=3.0, jitter=0.25, seed=7)
        client = ChatClient("http://fake", "m", transport=model.transport(), retry=retry, sleep=record)
        out = await client.complete([user("hi")])
        await client.aclose()
        return client, out

    client, out = run(go())
    assert out.message["content"] == "ok" and client.usage.retries == 3 and len(model.requests) == 4
    # Exponential (1, 2, capped 3) with seeded jitter: the same policy gives the same delays.
    assert [round(d / b, 6) for d, b in zip(delays, [1, 2, 3], strict=True)] == [
        round(d / b, 6) for d, b in zip(RetryPolicy(3, 1.0, 3.0, 0.25, 7).delays(), [1, 2, 3], strict=True)
    ]
    assert all(0.75 * b <= d <= 1.25 * b for d, b in zip(delays, [1, 2, 3], strict=True))


def test_gives_up_with_one_sentence_after_retries():
    model = FakeModel(*[(502, {"error": {"message": "bad gateway"}})] * 4)
    with pytest.raises(ModelServerError, match=r"kept failing \(502: bad gateway\) after 4 tries"):
        run(mock_client(model).complete([user("hi")]))


def test_client_error_is_not_retried():
    model = FakeModel((404, {"error": {"message": "The model `m` does not exist."}}))
    with pytest.raises(ModelServerError, match=r"rejected the request \(404\): The model `m` does not exist"):
        run(mock_client(model).complete([user("hi")]))
    assert len(model.requests) == 1


def test_timeouts_are_retried_then_reported():
    model = FakeModel((200, {}, 1.0), (200, chat_reply({"content": "late but fine"})))
    assert run(mock_client(model).complete([user("hi")])).message["content"] == "late but fine"
    model = FakeModel(*[(200, {}, 1.0)] * 4)
    with pytest.raises(ModelServerTimeout, match="did not answer within"):
        run(mock_client(model).complete([user("hi")]))


def test_concurrency_is_capped():
    in_flight = 0
    peak = 0

    class Slow(FakeModel):
        def transport(self):
            async def handle(request):
                nonlocal in_flight, peak
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.01)
                in_flight -= 1
                return httpx.Response(200, json=chat_reply({"content": "x"}))

            return httpx.MockTransport(handle)

    async def go():
        client = ChatClient("http://fake", "m", transport=Slow().transport(), max_concurrency=3)
        await asyncio.gather(*[client.complete([user(str(i))]) for i in range(12)])
        return client

    client = run(go())
    assert peak == 3 and client.usage.requests == 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_server_gives_one_clear_sentence():
    url = f"http://127.0.0.1:{free_port()}"
    client = ChatClient(url, "m", retry=FAST)
    with pytest.raises(ModelServerUnavailable) as err:
        run(client.complete([user("hi")]))
    assert str(err.value) == (
        f"No model server answers at {url}: start it (toolgym serve prints the command) or fix --base-url."
    )


DSML_TURN = (
    "I need the weather.</think>\n\n<｜DSML｜function_calls>\n"
    '<｜DSML｜invoke name="get_weather">\n'
    '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n'
    "</｜DSML｜invoke>\n</｜DSML｜function_calls>"
)
HERMES_TURN = '<think>\nI need the weather.\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_loopback_server_raw_completions_deepseek_and_hermes():
    """A real HTTP server on 127.0.0.1: raw prompts rendered by us, text parsed by us, retries and timeouts."""
    model = FakeModel(
        (500, {"error": {"message": "warming up"}}),
        (200, text_reply(DSML_TURN)),
        (200, text_reply("It rains in Paris.", prompt_tokens=40, completion_tokens=5)),
        (200, {}, 0.5),  # too slow for the 0.2 s timeout: retried
        (200, text_reply(HERMES_TURN)),
        (
            200,
            text_reply(
                '<think>hm</think>\n<tool_call>\n{"name": "get_weather", "arg', finish_reason="length"
            ),
        ),
    )

    async def go(url):
        history = [user("Weather in Paris?")]
        async with CompletionsClient(
            url, "m", encoding="deepseek_v32", retry=FAST, sampling={"max_tokens": 64}
        ) as ds:
            first = await ds.complete(history, TOOLS, thinking=True)
            call = first.message["tool_calls"][0]
            history2 = [*history, first.message, tool_result(call["id"], "rain")]
            second = await ds.complete(history2, TOOLS, thinking=True)
        async with CompletionsClient(url, "m", encoding="hermes", retry=FAST, timeout_s=0.2) as hermes:
            third = await hermes.complete(history, TOOLS, thinking=True)
            cut = await hermes.complete(history, TOOLS, thinking=True)
        return ds, first, second, hermes, third, cut

    with serve(model) as url:
        ds, first, second, hermes_client, third, cut = run(go(url))

    # deepseek_v32: our prompt went out verbatim, with the DSML tags kept and our thinking rule applied.
    path, body = model.requests[1]
    assert path == "/v1/completions" and body["skip_special_tokens"] is False and body["max_tokens"] == 64
    assert body["prompt"] == encodings.render(
        "deepseek_v32", [user("Weather in Paris?")], TOOLS, thinking=True
    )
    assert body["prompt"].endswith("<｜User｜>Weather in Paris?<｜Assistant｜><think>")
    assert first.message["reasoning_content"] == "I need the weather." and first.message["parse_errors"] == []
    assert arguments_dict(first.message["tool_calls"][0]) == {"city": "Paris"}
    follow_up = model.requests[2][1]["prompt"]
    assert follow_up.startswith(body["prompt"] + DSML_TURN + "<｜end▁of▁sentence｜>")
    assert follow_up.endswith("<function_results>\n<result>rain</result>\n</function_results>\n\n<think>")
    assert second.message["reasoning_content"] == "It rains in Paris." and second.message["content"] == ""
    assert "cut off before </think>" in second.message["parse_errors"][0]
    assert (ds.usage.prompt_tokens, ds.usage.completion_tokens, ds.usage.retries) == (60, 12, 1)

    # hermes: ChatML prompt, stop strings set, one timeout retried, tool call parsed.
    body = model.requests[4][1]
    assert body["prompt"].endswith("<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n")
    assert body["stop"] == ["<|im_end|>", "<|endoftext|>"]
    assert third.message["reasoning_content"] == "I need the weather."
    assert [json.loads(c["function"]["arguments"]) for c in third.message["tool_calls"]] == [
        {"city": "Paris"}
    ]
    assert hermes_client.usage.retries == 1 and hermes_client.usage.requests == 2
    assert "tool_calls" not in cut.message and cut.finish_reason == "length"
    assert any("max_tokens" in e for e in cut.message["parse_errors"])


def test_dropped_connections_and_non_json_answers_are_named():
    def drop(request):
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    client = ChatClient("http://fake", "m", transport=httpx.MockTransport(drop), retry=FAST, sleep=no_sleep)
    with pytest.raises(ModelServerError, match="dropped the connection 4 times"):
        run(client.complete([user("hi")]))

    html = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>nginx</html>"))
    client = ChatClient("http://fake", "m", transport=html, retry=FAST, sleep=no_sleep)
    with pytest.raises(ModelServerError, match="OpenAI-compatible API"):
        run(client.complete([user("hi")]))


def test_completions_client_needs_a_text_encoding():
    with pytest.raises(ValueError, match="use ChatClient"):
        CompletionsClient("http://fake", "m", encoding="openai")


def test_chat_client_reads_any_answer_without_raising_anything_but_a_named_error():
    """Server answers of every shape (the encodings fuzzer's messages inside completions, odd usage and
    finish reasons): a clean Completion, or ModelServerBadResponse when it is not a completion at all."""
    import random

    from toolgym.agent.clients import ModelServerBadResponse

    from .test_encodings_fuzz import check, random_message, random_value

    rng = random.Random(7)
    answers = []
    for _ in range(600):
        message = random_message(rng)
        if isinstance(message, str) or rng.random() < 0.2:
            message = rng.choice([message, random_value(rng)])
        choice = {"message": message, "finish_reason": rng.choice(["stop", None, 5, "length\ud800"])}
        answers.append(
            rng.choice(
                [
                    {
                        "choices": [choice],
                        "usage": rng.choice([None, {"prompt_tokens": "x"}, [1], random_value(rng)]),
                    },
                    {"choices": rng.choice([[], None, [message], choice])},
                    random_value(rng),
                ]
            )
        )
    queue = list(answers)

    def handle(request):
        body = json.dumps(queue.pop(0), allow_nan=True).encode()
        return httpx.Response(200, content=body, headers={"Content-Type": "application/json"})

    async def go():
        ok = bad = 0
        retry = RetryPolicy(max_retries=0)
        async with ChatClient(
            "http://fake", "m", transport=httpx.MockTransport(handle), retry=retry
        ) as client:
            for _ in answers:
                try:
                    turn = await client.complete([user("hi")])
                except ModelServerBadResponse as exc:
                    assert "OpenAI-compatible API" in str(exc)
                    bad += 1
                    continue
                check("openai", turn.message)
                assert turn.finish_reason is None or isinstance(turn.finish_reason, str)
                json.dumps([turn.finish_reason, turn.usage], ensure_ascii=False).encode("utf-8")
                ok += 1
        return ok, bad

    ok, bad = run(go())
    assert ok + bad == 600 and ok > 100 and bad > 100
