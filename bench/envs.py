"""Environment benchmark: oracle episodes per second through ToolEnv in Docker sandboxes (a warm pool, 8 in
flight) per category, one tool call's round trip through the env server beside the same call in-process, and
format 2's environments (a class-based multi-turn env and its native twin of @tool functions; an MCP-backed env
beside its native twin, from bench/envs_mcp.py) in Docker and in-process, side by side.

    python bench/envs.py            # the table
    python bench/envs.py --json     # the same rows for machines
    python bench/envs.py --quick    # fewer episodes and calls (CI smoke)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from toolgym.envs import ToolEnv, load_tasks, sandbox_mounts
from toolgym.envs.inside.envserver import EnvServer
from toolgym.sandbox import Limits, SandboxPool, get_backend
from toolgym.synth.reference import reference_envs, reference_store

LIMITS = Limits(memory_mb=512, timeout_s=30)


def oracle_actions(task) -> list[dict]:
    calls = [
        {
            "id": f"c{i}",
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
        }
        for i, c in enumerate(task.solution)
    ]
    return [{"content": "", "tool_calls": calls}] + [{"content": task.answer or "done"}] * len(task.prompt)


async def episodes_per_second(backend, env_dirs: list[Path], n: int, in_flight: int, transport: str) -> dict:
    """Run `n` oracle episodes over the tasks of `env_dirs`, `in_flight` at a time, on a warm pool."""
    jobs = [(d, t) for d in env_dirs for t in load_tasks(d)]
    jobs = [jobs[i % len(jobs)] for i in range(n)]
    mounts = sandbox_mounts([reference_store()]) if transport == "mount" else None
    rewards: list[float] = []
    async with SandboxPool(in_flight, backend=backend, limits=LIMITS, mounts=mounts) as pool:
        queues = {d: asyncio.Queue() for d in env_dirs}
        for env_dir, task in jobs:
            queues[env_dir].put_nowait(task)

        async def worker(env_dir: Path) -> None:
            # One ToolEnv per worker, as a rollout runner holds one: it keeps its sandbox between episodes
            # when no agent code ran there, and takes a freshly reset one from the pool when it did.
            env = ToolEnv(env_dir, pool=pool, transport=transport)
            queue = queues[env_dir]
            while not queue.empty():
                task = queue.get_nowait()
                await env.areset(options={"task_id": task.id})
                reward = 0.0
                for action in oracle_actions(task):
                    _, reward, terminated, truncated, _ = await env.astep(action)
                    if terminated or truncated:
                        break
                rewards.append(reward)
            await env.aclose()

        started = time.perf_counter()
        await asyncio.gather(*(worker(env_dirs[w % len(env_dirs)]) for w in range(in_flight)))
        elapsed = time.perf_counter() - started
    return {
        "episodes": n,
        "seconds": elapsed,
        "episodes_per_s": n / elapsed,
        "mean_reward": statistics.mean(rewards),
    }


def call_round_trips(backend, n: int) -> list[dict]:
    """p50/p90 of one read tool call (trip_planning.get_hotel): env server in a sandbox vs in-process."""
    env_dir = next(p for p in reference_envs() if p.name == "trip_planning")
    task = load_tasks(env_dir)[0]
    hotel = next(c for c in task.solution if c.name == "get_hotel").arguments
    rows = []
    env = ToolEnv(env_dir, backend=backend)
    env.reset(options={"task_id": task.id})
    server = env._server
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        server.call("get_hotel", json.dumps(hotel))
        samples.append(time.perf_counter() - t)
    rows.append({"what": "env server in a Docker sandbox", "samples": samples})
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        env._server.session.run("1")
        samples.append(time.perf_counter() - t)
    rows.append({"what": "bare Python cell in the same sandbox (floor)", "samples": samples})
    env.close()
    with tempfile.TemporaryDirectory() as scratch:
        local = EnvServer(str(env_dir), scratch=scratch)
        local.reset({"id": task.id})
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            local.call("get_hotel", json.dumps(hotel))
            samples.append(time.perf_counter() - t)
        local.ctx.close()
    rows.append({"what": "the same EnvServer in-process (no sandbox)", "samples": samples})
    for r in rows:
        xs = sorted(r.pop("samples"))
        r["p50_ms"] = 1000 * xs[len(xs) // 2]
        r["p90_ms"] = 1000 * xs[int(0.9 * (len(xs) - 1))]
    return rows


def v2_rows(docker, n: int) -> list[dict]:
    """Oracle episodes/s of the 4-turn bank task: its class-based env and its native twin, in-process and in
    Docker (one kept sandbox: no agent code runs in general environments), n episodes each."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from toolgym.agent.loop import run_episode
    from toolgym.agent.policies import OraclePolicy
    from toolgym.envs import IN_PROCESS

    from tests.envs import multiturn_env

    store = Path(tempfile.mkdtemp(prefix="bench-v2-"))
    envs = {
        "class-based (tools_from_class)": multiturn_env.build(store),
        "native twin (@tool + SQLite)": (multiturn_env.build_native(store)),
    }
    rows = []
    for name, env_dir in envs.items():
        for where, backend in (("in-process", IN_PROCESS), ("docker", docker)):
            env = ToolEnv(env_dir, backend=backend, transport="push")
            try:
                asyncio.run(run_episode(env, OraclePolicy()))  # warm: the sandbox and the server
                started, rewards = time.perf_counter(), []
                for _ in range(n):
                    rewards.append(asyncio.run(run_episode(env, OraclePolicy())).reward)
                seconds = time.perf_counter() - started
            finally:
                env.close()
            rows.append(
                {
                    "env": name,
                    "where": where,
                    "episodes": n,
                    "seconds": seconds,
                    "episodes_per_s": n / seconds,
                    "mean_reward": sum(rewards) / n,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--quick", action="store_true", help="fewer episodes and calls")
    ap.add_argument("--in-flight", type=int, default=8)
    args = ap.parse_args(argv)
    backend = get_backend("docker")
    n = 16 if args.quick else 64
    envs = reference_envs()
    by_category: dict[str, list[Path]] = {}
    for d in envs:
        by_category.setdefault(ToolEnv(d).env_spec.category, []).append(d)
    runs = [
        ("general", "mount"),
        ("general", "push"),
        ("search", "mount"),
        ("code_interpreter", "push"),
        ("code", "push"),
    ]
    episodes = []
    for category, transport in runs:
        count = n if category in ("general", "search") else max(8, n // 4)
        r = asyncio.run(episodes_per_second(backend, by_category[category], count, args.in_flight, transport))
        episodes.append({"category": category, "transport": transport, **r})
    calls = call_round_trips(backend, 200 if args.quick else 1000)
    v2 = v2_rows(backend, 10 if args.quick else 40)
    from envs_mcp import mcp_rows  # bench/envs_mcp.py: the MCP-backed env beside its native twin

    mcp = mcp_rows(backend, quick=args.quick, in_flight=args.in_flight)
    if args.json:
        print(
            json.dumps(
                {"episodes": episodes, "tool_call_round_trip": calls, "format_v2": v2, "mcp": mcp}, indent=2
            )
        )
        return 0
    print(
        f"oracle episodes through ToolEnv, Docker, warm pool of {args.in_flight}, {args.in_flight} in flight"
    )
    print(
        f"{'category':<18} {'transport':<10} {'episodes':>8} {'seconds':>8} {'episodes/s':>11} {'reward':>7}"
    )
    for r in episodes:
        print(
            f"{r['category']:<18} {r['transport']:<10} {r['episodes']:>8} {r['seconds']:>8.2f} "
            f"{r['episodes_per_s']:>11.1f} {r['mean_reward']:>7.2f}"
        )
    print("\none tool call (trip_planning.get_hotel)")
    print(f"{'path':<46} {'p50 ms':>8} {'p90 ms':>8}")
    for r in calls:
        print(f"{r['what']:<46} {r['p50_ms']:>8.3f} {r['p90_ms']:>8.3f}")
    base = calls[2]["p50_ms"]
    print(
        f"\nsandbox overhead per call: {calls[0]['p50_ms'] - base:.3f} ms "
        f"({calls[0]['p50_ms'] / base:.1f}x the in-process call)"
    )
    print("\nformat 2: the 4-turn bank task (5 calls, toolgym:ground_truth), one episode at a time")
    print(f"{'env':<32} {'where':<11} {'episodes':>8} {'episodes/s':>11} {'vs native':>10} {'reward':>7}")
    native = {r["where"]: r["episodes_per_s"] for r in v2 if r["env"].startswith("native")}
    for r in v2:
        print(
            f"{r['env']:<32} {r['where']:<11} {r['episodes']:>8} {r['episodes_per_s']:>11.1f} "
            f"{r['episodes_per_s'] / native[r['where']]:>9.2f}x {r['mean_reward']:>7.2f}"
        )
    from envs_mcp import print_rows

    print("\nthe notes MCP env beside its native twin (bench/envs_mcp.py; one MCP server per episode)")
    print_rows(mcp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
