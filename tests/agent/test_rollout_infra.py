"""Infrastructure failures in rollouts: a sandbox killed under a running episode and a model server answering
5xx are retried, recorded apart from agent failures, and left out of every agent metric by `evaluate`."""

from __future__ import annotations

import asyncio

import pytest
from toolgym.agent.clients import ChatClient, RetryPolicy
from toolgym.agent.evaluate import evaluate
from toolgym.agent.policies import LLMPolicy, OraclePolicy
from toolgym.agent.rollout import load_trajectories, rollout
from toolgym.envs import IN_PROCESS
from toolgym.envs.corpus import load_corpus
from toolgym.sandbox.backend import Owner
from toolgym.sandbox.engine import docker_client

from .fake_server import FakeModel, chat_reply, serve


class KillsTheSandboxes(OraclePolicy):
    """The oracle, except that the first turn of the whole run kills every container this process owns: the
    sandboxes die under running episodes, as when the engine or the kernel's OOM killer takes them."""

    killed = 0

    async def act(self, messages, tools):
        if not KillsTheSandboxes.killed:
            client = docker_client()
            for c in client.api.containers(filters={"label": f"toolgym.owner={Owner.me().label()}"}):
                client.api.kill(c["Id"])
                KillsTheSandboxes.killed += 1
        return await super().act(messages, tools)


def test_a_sandbox_killed_mid_episode_is_retried_on_a_fresh_one(tmp_path, docker_backend):
    KillsTheSandboxes.killed = 0
    corpus = load_corpus("reference").select(env_ids=["order_desk", "trip_planning"])
    stats = asyncio.run(
        rollout(corpus, KillsTheSandboxes, tmp_path / "run", in_flight=2, backend="docker", progress=False)
    )
    rows = load_trajectories(tmp_path / "run")
    assert KillsTheSandboxes.killed >= 1
    assert stats.infra_retries >= 1 and sum(r["infra_retries"] for r in rows) == stats.infra_retries
    # every episode was finished on a fresh sandbox: nothing lost, nothing counted against the agent
    assert len(rows) == len(corpus.tasks) and all(r["status"] == "ok" and r["success"] for r in rows)


def test_model_server_5xx_is_retried_then_kept_apart_from_agent_failures(tmp_path):
    corpus = load_corpus("reference").select(env_ids=["order_desk"], limit=2)
    failing = (500, {"error": {"message": "engine overloaded"}})
    give_up = (200, chat_reply({"content": "I cannot tell."}))
    # one try and one client retry per attempt: task 1 fails one attempt and then gets an answer (an agent
    # failure: wrong answer); task 2 fails all three attempts (an infrastructure failure)
    model = FakeModel(failing, failing, give_up, *[failing] * 6)
    with serve(model) as url:

        def policy():
            client = ChatClient(url, "m", retry=RetryPolicy(max_retries=1, backoff_s=0.0))
            return LLMPolicy(client, thinking=False)

        stats = asyncio.run(
            rollout(
                corpus,
                policy,
                tmp_path / "run",
                in_flight=1,
                max_infra_retries=2,
                progress=False,
            )
        )
    first, second = load_trajectories(tmp_path / "run")
    assert (first["status"], first["infra_retries"], first["success"]) == ("ok", 1, False)
    assert first["stop_reason"] != "model_error"
    assert (second["status"], second["infra_retries"]) == ("infra_error", 3)
    assert "engine overloaded" in second["error"]
    assert (stats.infra_errors, stats.infra_retries) == (1, 4)
    report = evaluate([first, second], ks=(1,))
    assert (report["infra_errors"], report["infra_retries"]) == (1, 4)
    # the agent's success rate is over the one episode the infrastructure let it play
    assert report["overall"]["episodes"] == 1 and report["overall"]["success_rate"] == 0.0


def test_a_model_policy_is_refused_in_process(tmp_path):
    """In-process env servers run tools on this host: only toolgym's own (trusted) policies may use them."""
    corpus = load_corpus("reference").select(env_ids=["order_desk"], limit=1)

    def policy():
        return LLMPolicy(ChatClient("http://127.0.0.1:9", "m"), thinking=False)

    with pytest.raises(ValueError, match="not trusted"):
        asyncio.run(rollout(corpus, policy, tmp_path / "run", backend=IN_PROCESS, progress=False))
    with pytest.raises(ValueError, match="IN_PROCESS"):
        asyncio.run(rollout(corpus, policy, tmp_path / "run2", backend="inprocess", progress=False))
