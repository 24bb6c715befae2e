"""A task whose facts the user holds: through a real ToolEnv episode in a Docker sandbox, an agent that asks
the (scripted) user and acts on the answer scores 1.0; one that acts on the prompt alone cannot."""

from __future__ import annotations

import json

from toolgym.agent.user import ScriptedUser
from toolgym.envs import ToolEnv
from toolgym.envs.spec import Provenance

from .shapes import admitted, build


def _user_task(tmp_path):
    ((key, env_dir),) = build("catalogue_orders", tmp_path, indexes=(0,))
    _, outcome = admitted(key, env_dir, n=48)
    tid, c = next((t, c) for t, c in outcome.kept if c.template.split("/")[2] == "user_return")
    task = c.task(
        tid, env_dir.name, "general", Provenance(producer="template", family="general/catalogue_orders")
    )
    return env_dir, task, c


def _calls(solution) -> dict:
    return {
        "content": "",
        "tool_calls": [
            {
                "id": f"c{i}",
                "type": "function",
                "function": {"name": x.name, "arguments": json.dumps(x.arguments)},
            }
            for i, x in enumerate(solution)
        ],
    }


def test_asking_the_user_solves_it_and_the_prompt_alone_cannot(tmp_path, docker_backend):
    env_dir, task, c = _user_task(tmp_path)
    email = c.solution[0].arguments["email"]
    assert email not in task.prompt[0] and email in task.user_instructions
    facts = task.user_instructions.split(". ", 1)[1]
    user = ScriptedUser([f"Sure: my email is {email}. {facts}"])
    env = ToolEnv(env_dir, [task], backend=docker_backend, user=user, transport="push")
    try:
        obs, info = env.reset(options={"task_id": task.id})
        obs, reward, done, _, info = env.step(
            {"content": "Happy to help. What is your email, and which order?"}
        )
        assert (
            not done and info["messages"][-1]["role"] == "user" and email in info["messages"][-1]["content"]
        )
        obs, reward, done, _, info = env.step(_calls(c.solution))  # what the answer made possible
        assert not done
        obs, reward, done, _, info = env.step({"content": "Done: the return is booked."})
        assert done and reward == 1.0, info.get("reason")

        # Without asking, the email is unknown: a guess at who the user is finds no one, and nothing changes.
        env.user = ScriptedUser([])
        env.reset(options={"task_id": task.id})
        guess = [c.solution[0].model_copy(update={"arguments": {"email": "customer@example.com"}})]
        obs, reward, done, _, info = env.step(_calls(guess))
        obs, reward, done, _, info = env.step({"content": "I could not find your order."})
        assert done and reward == 0.0
    finally:
        env.close()
