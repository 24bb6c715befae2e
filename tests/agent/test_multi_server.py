"""One client over several model servers (`--base-url A,B=CAP,...`), against real HTTP servers on 127.0.0.1:
requests spread over the servers, a server never holds more than its cap, a server killed mid-run costs no
request (they move to the others), a failing server rests, and only when every server fails does the client
raise its usual error, naming them all."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from contextlib import ExitStack
from typing import Any

import pytest
from toolgym.agent.clients import (
    ChatClient,
    CompletionsClient,
    ModelServerHTTPError,
    ModelServerUnavailable,
    RetryPolicy,
    base_urls,
    parse_base_urls,
)
from toolgym.agent.messages import user

from .fake_server import FakeModel, chat_reply, serve, text_reply

FAST = RetryPolicy(max_retries=2, backoff_s=0.01, max_backoff_s=0.02)


class Replica(FakeModel):
    """A server that answers every request with its own name after `delay_s`, counting the requests it holds
    at once; `status` other than 200 makes it fail them all; once `dead`, a request it holds is cut off."""

    def __init__(self, name: str, delay_s: float = 0.03, status: int = 200, text: bool = False) -> None:
        super().__init__()
        self.name, self.delay_s, self.status, self.text = name, delay_s, status, text
        self.lock = threading.Lock()
        self.in_flight = self.peak = self.answered = 0
        self.dead = False

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, Any, float]:
        with self.lock:
            self.requests.append((path, body))
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self.delay_s)
            if self.dead:
                raise ConnectionAbortedError("killed")  # the handler drops the connection unanswered
            if self.status != 200:
                return self.status, {"error": {"message": f"{self.name} is overloaded"}}, 0.0
            with self.lock:
                self.answered += 1
            return 200, text_reply(self.name) if self.text else chat_reply({"content": self.name}), 0.0
        finally:
            with self.lock:
                self.in_flight -= 1


class Fleet:
    """Replicas served on free loopback ports; `kill(i)` stops one for good mid-run."""

    def __init__(self, *replicas: Replica) -> None:
        self.replicas = replicas
        self.stacks = [ExitStack() for _ in replicas]
        self.urls = [stack.enter_context(serve(r)) for stack, r in zip(self.stacks, replicas, strict=True)]

    def kill(self, i: int) -> None:
        self.replicas[i].dead = True
        self.stacks[i].close()  # the port closes: new connections are refused

    def close(self) -> None:
        for stack in self.stacks:
            stack.close()


@pytest.fixture
def fleet():
    made: list[Fleet] = []

    def make(*replicas: Replica) -> Fleet:
        made.append(Fleet(*replicas))
        return made[-1]

    yield make
    for f in made:
        f.close()


def free_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


async def ask(client, n: int) -> list[str]:
    """`n` requests at once; the content of each answer (the name of the server that gave it)."""
    got = await asyncio.gather(*(client.complete([user(f"q{i}")]) for i in range(n)))
    return [c.message["content"] for c in got]


def test_the_list_is_parsed_with_caps_and_bad_entries_name_the_fix():
    assert parse_base_urls("http://a:8000/v1") == [("http://a:8000/v1", None)]
    assert parse_base_urls(" http://a:8000/v1=4, http://b:8000=16 ") == [
        ("http://a:8000/v1", 4),
        ("http://b:8000", 16),
    ]
    assert base_urls("http://a:8000/v1=4,http://b:8000") == ["http://a:8000/v1", "http://b:8000"]
    for bad, says in (
        ("http://a=0", "at least 1"),
        ("http://a=many", "whole number"),
        ("http://a,,http://b", "empty entry"),
        ("http://a:8000,http://a:8000/v1", "twice"),
    ):
        with pytest.raises(ValueError, match=says):
            ChatClient(bad, "m")


def test_requests_spread_over_the_servers(fleet):
    f = fleet(Replica("a"), Replica("b"), Replica("c"))

    async def go():
        async with ChatClient(",".join(f.urls), "m", max_concurrency=30, retry=FAST) as client:
            at_once = await ask(client, 30)
            one_by_one = [(await ask(client, 1))[0] for _ in range(6)]
            return at_once, one_by_one, client

    at_once, one_by_one, client = asyncio.run(go())
    assert {name: at_once.count(name) for name in "abc"} == {"a": 10, "b": 10, "c": 10}
    assert sorted(one_by_one) == ["a", "a", "b", "b", "c", "c"]  # idle servers take turns
    assert [s.requests for s in client.servers] == [12, 12, 12] and client.usage.requests == 36


def test_completions_client_spreads_too(fleet):
    f = fleet(Replica("a", text=True), Replica("b", text=True))

    async def go():
        async with CompletionsClient(",".join(f.urls), "m", encoding="hermes", retry=FAST) as client:
            return await ask(client, 8)

    assert sorted(asyncio.run(go())) == ["a"] * 4 + ["b"] * 4


def test_a_server_never_holds_more_than_its_cap(fleet):
    f = fleet(Replica("small", delay_s=0.05), Replica("big", delay_s=0.05))
    base = f"{f.urls[0]}=2,{f.urls[1]}=5"

    async def go():
        async with ChatClient(base, "m", max_concurrency=20, retry=FAST) as client:
            most = [0, 0]

            async def watch():  # what the client hands each server, not only what reaches it
                while True:
                    most[:] = [max(m, s.in_flight) for m, s in zip(most, client.servers, strict=True)]
                    await asyncio.sleep(0)

            watcher = asyncio.create_task(watch())
            names = await ask(client, 42)
            watcher.cancel()
            return names, client, most

    names, client, most = asyncio.run(go())
    small, big = f.replicas
    assert len(names) == 42 and small.answered + big.answered == 42
    assert most == [2, 5] and (small.peak, big.peak) == (2, 5)  # each filled, neither over
    assert big.answered > small.answered > 0
    assert all(s.in_flight == 0 for s in client.servers)


def test_a_server_killed_mid_run_loses_no_request(fleet):
    f = fleet(Replica("a", delay_s=0.02), Replica("b", delay_s=0.02))

    async def go():
        async with ChatClient(",".join(f.urls), "m", max_concurrency=4, retry=FAST) as client:
            tasks = [asyncio.create_task(client.complete([user(f"q{i}")])) for i in range(60)]
            while f.replicas[1].answered < 5:
                await asyncio.sleep(0.005)
            await asyncio.to_thread(f.kill, 1)
            done = await asyncio.gather(*tasks)
            return [c.message["content"] for c in done], client

    names, client = asyncio.run(go())
    a, b = f.replicas
    assert len(names) == 60 and names.count("b") == b.answered and a.answered + b.answered == 60
    assert a.answered > 30  # the rest of the run went to the live server
    dead = client.servers[1]
    assert dead.failures >= 1 and dead.cooling_until > time.monotonic() and client.usage.failovers >= 1


def test_a_failing_server_rests_while_the_others_answer(fleet):
    f = fleet(Replica("sick", status=503, delay_s=0), Replica("well", delay_s=0))

    async def go():
        async with ChatClient(",".join(f.urls), "m", max_concurrency=1, retry=FAST) as client:
            return [(await ask(client, 1))[0] for _ in range(5)], client

    names, client = asyncio.run(go())
    assert names == ["well"] * 5
    # the first request tried the sick server with its retries, then moved; later ones never went there
    assert len(f.replicas[0].requests) == FAST.max_retries + 1
    assert client.usage.failovers == 1 and client.servers[0].failures == 1


def test_when_every_server_is_down_the_error_names_them_all():
    urls = [free_port_url(), free_port_url()]

    async def go():
        async with ChatClient(",".join(urls), "m", retry=FAST) as client:
            await client.complete([user("hi")])

    with pytest.raises(ModelServerUnavailable) as caught:
        asyncio.run(go())
    message = str(caught.value)
    assert all(url in message for url in urls) and "--base-url" in message and "\n" not in message


def test_when_every_server_fails_the_last_failure_is_raised(fleet):
    f = fleet(Replica("x", status=503, delay_s=0), Replica("y", status=502, delay_s=0))

    async def go():
        async with ChatClient(",".join(f.urls), "m", retry=FAST) as client:
            await client.complete([user("hi")])

    with pytest.raises(ModelServerHTTPError) as caught:
        asyncio.run(go())
    assert caught.value.status == 502 and "Every model server" in str(caught.value)
    assert [len(r.requests) for r in f.replicas] == [3, 3]


def test_a_rested_server_is_used_again_after_its_cool_down(fleet):
    f = fleet(Replica("a", status=503, delay_s=0), Replica("b", delay_s=0))

    async def go():
        async with ChatClient(",".join(f.urls), "m", max_concurrency=1, retry=FAST, cooldown_s=0.3) as client:
            first = [(await ask(client, 1))[0] for _ in range(3)]
            f.replicas[0].status = 200  # it recovers while resting
            await asyncio.sleep(0.35)
            return first, [(await ask(client, 1))[0] for _ in range(4)]

    resting, back = asyncio.run(go())
    assert resting == ["b", "b", "b"] and back[0] == "a" and "b" in back  # back in the rotation
