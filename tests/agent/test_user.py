"""Simulated users bring new user messages mid-episode; the DeepSeek-V3.2 thinking rule then drops old reasoning."""

from __future__ import annotations

import asyncio
import json

from toolgym.agent.clients import ChatClient
from toolgym.agent.loop import Budgets, run_episode
from toolgym.agent.policies import LLMPolicy
from toolgym.agent.user import STOP, LLMUser, ScriptedUser

from .fake_server import FakeModel, chat_reply, serve


def make_env(**kw):
    from toolgym.envs import make

    return make("toolgym/trip_planning", backend="docker", **kw)


def call(name: str, args: dict, reasoning: str) -> tuple[int, dict]:
    return 200, chat_reply(
        {
            "content": "",
            "reasoning_content": reasoning,
            "tool_calls": [
                {
                    "id": f"c-{reasoning}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
            ],
        }
    )


def answer(text: str, reasoning: str) -> tuple[int, dict]:
    return 200, chat_reply({"content": text, "reasoning_content": reasoning})


def test_thinking_rule_across_tool_results_and_a_new_user_message():
    model = FakeModel(
        call("list_cities", {}, "R1"),  # turn 1: a call...
        answer("Here are the cities.", "R2"),  # ...then an answer: the simulated user speaks next
        call("get_city", {"city": "Paris"}, "R3"),  # turn 2
        answer("Done.", "R4"),
    )
    env = make_env(user=ScriptedUser(["Thanks. Now tell me about Paris."]))
    try:
        with serve(model) as base:
            traj = asyncio.run(
                run_episode(
                    env,
                    LLMPolicy(ChatClient(base, "m")),
                    task_id=env.tasks[0].id,
                    budgets=Budgets(max_steps=8),
                )
            )
    finally:
        env.close()
    assert traj.stop_reason == "answer" and len(traj.steps) == 4
    users = [m["content"] for m in traj.messages if m["role"] == "user"]
    assert users[-1] == "Thanks. Now tell me about Paris."

    def reasoning_sent(i: int) -> list[str]:
        return [
            m.get("reasoning_content") for m in model.requests[i][1]["messages"] if m["role"] == "assistant"
        ]

    assert reasoning_sent(1) == ["R1"]  # only a tool result followed R1: it is kept
    assert reasoning_sent(2) == [None, None]  # a new user message arrived: R1 and R2 are dropped
    assert reasoning_sent(3) == [None, None, "R3"]  # R3 (after the new user message) is kept again


def test_llm_user_plays_the_user_from_instructions():
    user_model = FakeModel(
        (200, chat_reply({"content": "And a cheap hotel there?"})), (200, chat_reply({"content": STOP}))
    )
    with serve(user_model) as base:
        user = LLMUser(base, "user-model", instructions="You want a trip to Rome on a budget.")
        env = make_env(user=user)
        try:
            env.reset(options={"task_id": env.tasks[0].id})
            _, _, first_done, _, info = env.step({"content": "Where to?"})
            _, _, second_done, _, _ = env.step({"content": "Rome has two."})
        finally:
            env.close()
    assert not first_done and info["messages"][-1] == {"role": "user", "content": "And a cheap hotel there?"}
    assert second_done  # the user model said STOP
    sent = user_model.requests[0][1]["messages"]
    assert sent[0]["role"] == "system" and "trip to Rome" in sent[0]["content"]
    assert sent[-1] == {"role": "user", "content": "Where to?"}  # roles swapped for the user model


def test_a_failing_user_model_server_is_an_infrastructure_failure():
    """The simulated user's server is infrastructure: 5xx or garbage from it raise a ModelServerError (which the
    rollout runner retries), never an unclassified exception."""
    import pytest
    from toolgym.agent.clients import ModelServerError

    class Task:
        id = "t"
        user_instructions = "You want a trip."

    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Where to?"}]
    for reply in [(500, {"error": {"message": "overloaded"}}), (200, "not json at all")]:
        with serve(FakeModel(reply)) as url:
            user = LLMUser(url, "m")
            with pytest.raises(ModelServerError, match="simulated user"):
                user.reply(messages, Task())
