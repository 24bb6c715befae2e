"""Rollouts on Ray: an actor killed and then a whole node removed mid-run lose no episode and commit none twice,
with no sandbox left behind; a Ray run's rows equal a local run's (oracle, and a seeded model server); and a
rollout without --ray never imports Ray."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
import time

import pytest
from toolgym.agent.cluster import disconnect
from toolgym.agent.policies import OraclePolicy
from toolgym.agent.rollout import content, load_trajectories, rollout
from toolgym.agent.served_policy import ServedPolicy
from toolgym.envs.corpus import load_corpus

from .fake_server import FakeModel, chat_reply, serve

ray = pytest.importorskip("ray")


class SlowOracle(OraclePolicy):
    """The oracle with a pause before every turn, so that episodes are still in flight when the test strikes."""

    async def act(self, messages, tools):
        await asyncio.sleep(0.15)
        return await super().act(messages, tools)


class SeededModel(FakeModel):
    """An OpenAI-compatible stub whose reply is a function of (seed, the request's messages): the same episode
    gets the same replies whatever process, node or order it runs in. First a call of a tool picked by the
    hash (arguments filled from its schema), then an answer."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed

    def answer(self, path, body):
        digest = hashlib.sha256(
            f"{self.seed}:{json.dumps(body['messages'], sort_keys=True)}".encode()
        ).digest()
        tools = body.get("tools") or []
        if tools and not any(m["role"] == "tool" for m in body["messages"]):
            fn = tools[digest[0] % len(tools)]["function"]
            props = (fn.get("parameters") or {}).get("properties") or {}
            fill = {"integer": digest[1] % 5, "number": 1.5, "boolean": True, "array": [], "object": {}}
            kinds = {k: v.get("type") for k, v in props.items()}
            args = {k: fill.get(t[0] if isinstance(t, list) else t, "x") for k, t in kinds.items()}
            call = {
                "id": "c1",
                "type": "function",
                "function": {"name": fn["name"], "arguments": json.dumps(args)},
            }
            message = {"content": "", "reasoning_content": f"try {fn['name']}", "tool_calls": [call]}
        else:
            message = {"content": f"answer {digest[:3].hex()}"}
        return 200, chat_reply(message, prompt_tokens=len(body["messages"]), completion_tokens=digest[2]), 0.0


@pytest.fixture
def no_ray_left():
    yield
    disconnect()


def run_ids_containers(run_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=toolgym.run={run_id}"], capture_output=True, text=True
    )
    return out.stdout.split()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.docker
def test_an_actor_killed_then_a_node_removed_lose_nothing_and_leak_nothing(
    tmp_path, docker_backend, no_ray_left
):
    from ray.cluster_utils import Cluster
    from toolgym.agent.ray_rollout import RayRolloutPool, ray_rollout

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors cannot import this test module
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        corpus = load_corpus("reference").select(env_ids=["order_desk", "trip_planning", "search"])
        pool = RayRolloutPool(corpus, address=cluster.address, in_flight=1, backend="docker")
        assert len(pool.slots) == 3  # one actor per node
        out = tmp_path / "run"
        result: dict = {}

        def drive() -> None:
            try:
                result["stats"] = ray_rollout(
                    corpus,
                    SlowOracle,
                    out,
                    pool=pool,
                    samples_per_task=2,
                    commit_every=1,
                    progress=False,
                    finalize=False,
                )
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                result["error"] = exc

        thread = threading.Thread(target=drive)
        thread.start()

        def committed() -> int:
            return len(list((out / "parts").glob("*.parquet")))

        def wait_for(n: int) -> None:
            deadline = time.monotonic() + 120
            while committed() < n and time.monotonic() < deadline and thread.is_alive():
                time.sleep(0.05)

        planned = len(corpus.tasks) * 2
        wait_for(4)
        w1, w2 = (n.node_id for n in workers)
        ray.kill(next(s.actor for s in pool.slots if s.node_id == w1))  # one actor, mid-chunk
        wait_for(committed() + 3)
        assert committed() < planned, "the run ended before the node could be removed: make episodes slower"
        cluster.remove_node(workers[1])  # a whole node, with its actor and its sandboxes' owner
        thread.join(300)
        assert not thread.is_alive() and "error" not in result, result.get("error")
        stats = result["stats"]

        import pyarrow.parquet as pq

        keys = [
            k for f in sorted((out / "parts").glob("*.parquet")) for k in pq.read_table(f)["key"].to_pylist()
        ]
        expected = sorted(f"{t.id}#{s}" for t in corpus.tasks for s in range(2))
        assert sorted(keys) == expected  # every episode exactly once: none lost, none committed twice
        rows = load_trajectories(out)
        assert all(r["status"] == "ok" and r["success"] for r in rows)
        assert stats.ray["actors_lost"] >= 2 and stats.ray["ray_retries"] >= 2
        assert not any(s.node_id == w2 for s in pool.slots)  # nothing placed on the removed node
        assert any(r["infra_retries"] >= 1 for r in rows)  # the re-run episodes say so
        assert sum(r["infra_retries"] for r in rows) == stats.infra_retries
        pool.close()
        assert run_ids_containers(pool.run_id) == []  # no sandbox left on any node
    finally:
        disconnect()
        cluster.shutdown()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.docker
def test_ray_rows_equal_local_rows_for_the_oracle_and_a_seeded_model(tmp_path, docker_backend, no_ray_left):
    from toolgym.agent.ray_rollout import RayRolloutPool, ray_rollout

    corpus = load_corpus("reference").select(env_ids=["order_desk", "trip_planning"], limit=6)
    with serve(SeededModel(seed=7)) as url:
        policies = {"oracle": OraclePolicy, "llm": ServedPolicy(url, "stub", max_concurrency=2)}
        with RayRolloutPool(corpus, address="local", num_cpus=1, in_flight=2, backend="docker") as pool:
            for name, policy in policies.items():
                kw = {"samples_per_task": 2, "seed": 3, "progress": False}
                asyncio.run(
                    rollout(corpus, policy, tmp_path / f"local-{name}", in_flight=2, backend="docker", **kw)
                )
                if name == "oracle":  # resumed: the folder already holds the first two tasks' episodes
                    ray_rollout(corpus.select(limit=2), policy, tmp_path / "ray-oracle", pool=pool, **kw)
                stats = ray_rollout(corpus, policy, tmp_path / f"ray-{name}", pool=pool, **kw)
                assert stats.skipped == (4 if name == "oracle" else 0)
                local, on_ray = (
                    load_trajectories(tmp_path / f"local-{name}"),
                    load_trajectories(tmp_path / f"ray-{name}"),
                )
                assert len(local) == len(corpus.tasks) * 2
                assert [content(r) for r in on_ray] == [content(r) for r in local], name
            # the trainer's API: groups of G, each as soon as it is done
            groups = list(pool.rollout_groups(corpus.tasks[:2], OraclePolicy, 3, seed=3))
    assert sorted(len(g) for g in groups) == [3, 3]
    assert all(len({r["task_id"] for r in g}) == 1 and [r["sample"] for r in g] == [0, 1, 2] for g in groups)
    llm = load_trajectories(tmp_path / "ray-llm")
    assert all(
        r["n_tool_calls"] == 1 and r["completion_tokens"] > 0 for r in llm
    )  # the stub was really played


def test_a_rollout_without_ray_never_imports_it(tmp_path):
    code = (
        "import sys; from toolgym.cli import main; "
        f"rc = main(['rollout', 'reference', '--limit', '2', '--backend', 'inprocess', '--no-progress', "
        f"'--out', {str(tmp_path / 'run')!r}]); "
        "assert rc == 0, rc; print('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_policy_local_on_ray_is_refused_in_one_sentence(tmp_path):
    cmd = [sys.executable, "-m", "toolgym", "rollout", "reference", "--policy", "local", "--model", "default"]
    done = subprocess.run(
        [*cmd, "--ray", "local", "--out", str(tmp_path / "r")], capture_output=True, text=True
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--policy llm" in done.stderr and "toolgym serve" in done.stderr
