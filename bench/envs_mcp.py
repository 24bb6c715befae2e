"""MCP-backed environment benchmark: oracle episodes per second of the notes MCP server imported as an environment
(one server process per episode) beside its native twin (the same tools as @tool functions over SQLite), in
Docker sandboxes (a warm pool, N in flight) and in-process, side by side in one run. Goal: MCP >= 0.5x native.

    python bench/envs_mcp.py            # the table
    python bench/envs_mcp.py --json     # the same rows for machines
    python bench/envs_mcp.py --quick    # fewer episodes (CI smoke)
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the notes server lives in tests/

from toolgym.agent.loop import run_episode  # noqa: E402
from toolgym.agent.policies import OraclePolicy  # noqa: E402
from toolgym.envs import IN_PROCESS, ToolEnv, load_env_spec, load_tasks  # noqa: E402
from toolgym.envs.lease import requirement_sets  # noqa: E402
from toolgym.sandbox import Limits, SandboxPool, get_backend  # noqa: E402

from tests.synth.mcp_servers import import_notes  # noqa: E402
from tests.synth.mcp_servers.notes_native import build_native_notes  # noqa: E402

LIMITS = Limits(memory_mb=512, timeout_s=30)


async def episodes_per_second(env_dir: Path, backend, n: int, in_flight: int) -> dict:
    """`n` oracle episodes over the env's tasks, `in_flight` workers (one ToolEnv each, as a rollout worker holds
    one: it keeps its sandbox between episodes, since no agent code runs in a general environment)."""
    tasks = load_tasks(env_dir)
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(tasks[i % len(tasks)].id)
    rewards: list[float] = []
    pool = None
    if backend is not IN_PROCESS:
        pool = SandboxPool(
            in_flight, backend=backend, limits=LIMITS, requirements=requirement_sets(load_env_spec(env_dir))
        )
        await pool.start()
    envs = [
        ToolEnv(env_dir, backend=IN_PROCESS) if pool is None else ToolEnv(env_dir, pool=pool)
        for _ in range(in_flight)
    ]
    for env in envs:  # warm: the first episode of each worker starts its env server (and its zygote)
        await run_episode(env, OraclePolicy(), task_id=tasks[0].id)

    async def worker(env: ToolEnv) -> None:
        while not queue.empty():
            task_id = queue.get_nowait()
            rewards.append((await run_episode(env, OraclePolicy(), task_id=task_id)).reward)

    started = time.perf_counter()
    await asyncio.gather(*(worker(env) for env in envs))
    elapsed = time.perf_counter() - started
    for env in envs:
        await env.aclose()
    if pool is not None:
        await pool.close()
    return {
        "episodes": n,
        "seconds": elapsed,
        "episodes_per_s": n / elapsed,
        "mean_reward": statistics.mean(rewards),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--quick", action="store_true", help="fewer episodes")
    ap.add_argument("--in-flight", type=int, default=8, help="workers in Docker (in-process runs one)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating runs of each row; the median is shown")
    args = ap.parse_args(argv)
    out = mcp_rows(get_backend("docker"), quick=args.quick, rounds=args.rounds, in_flight=args.in_flight)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"oracle episodes of the notes tasks, median of {args.rounds} alternating rounds")
    print_rows(out)
    return 0


def print_rows(out: list[dict]) -> None:
    print(f"{'where':<11} {'env':<40} {'in flight':>9} {'episodes/s':>11} {'reward':>7} {'vs native':>10}")
    for r in out:
        print(
            f"{r['where']:<11} {r['env']:<40} {r['in_flight']:>9} {r['episodes_per_s']:>11.1f} "
            f"{r['mean_reward']:>7.2f} {r['vs_native']:>9.2f}x"
        )


def mcp_rows(docker, quick: bool = False, rounds: int = 2, in_flight: int = 8) -> list[dict]:
    """The notes MCP env beside its native twin, in Docker (`in_flight` workers) and in-process, median of
    `rounds` alternating runs of each row."""
    n = 24 if quick else 96
    with tempfile.TemporaryDirectory(prefix="toolgym-bench-mcp-") as tmp:
        store = Path(tmp)
        native = build_native_notes(store / "native")
        mcp_docker = import_notes(store / "docker")  # the sandbox imports mcp from the prepared set
        fresh_docker = import_notes(store / "docker-fresh", module="notes_server.fresh")
        mcp_local = import_notes(store / "local", requirements=())  # in-process: this host's SDK
        fresh_local = import_notes(store / "local-fresh", requirements=(), module="notes_server.fresh")
        bare_local = import_notes(store / "bare", requirements=(), preload=False)  # --no-preload
        native_row = "native (@tool over SQLite)"
        at_import, in_main = "MCP, server built at import", "MCP, server built per process"
        few = max(4, n // 12)
        rows = [
            ("docker", native_row, native, docker, n, in_flight),
            ("docker", at_import, mcp_docker, docker, n, in_flight),
            ("docker", in_main, fresh_docker, docker, n, in_flight),
            ("in-process", native_row, native, IN_PROCESS, n, 1),
            ("in-process", at_import, mcp_local, IN_PROCESS, n, 1),
            ("in-process", in_main, fresh_local, IN_PROCESS, n, 1),
            ("in-process", "MCP, no preload (imports per episode)", bare_local, IN_PROCESS, few, 1),
        ]
        runs: dict[int, list[dict]] = {i: [] for i in range(len(rows))}
        for _ in range(rounds):
            for i, (_, _, env_dir, backend, count, in_flight) in enumerate(rows):
                runs[i].append(asyncio.run(episodes_per_second(env_dir, backend, count, in_flight)))
    out = []
    for i, (where, what, _, _, count, in_flight) in enumerate(rows):
        rates = [r["episodes_per_s"] for r in runs[i]]
        out.append(
            {
                "where": where,
                "env": what,
                "in_flight": in_flight,
                "episodes": count,
                "episodes_per_s": statistics.median(rates),
                "all_rounds": rates,
                "mean_reward": statistics.mean(r["mean_reward"] for r in runs[i]),
            }
        )
    native_rate = {r["where"]: r["episodes_per_s"] for r in out if r["env"].startswith("native")}
    for r in out:
        r["vs_native"] = r["episodes_per_s"] / native_rate[r["where"]]
    return out


if __name__ == "__main__":
    sys.exit(main())
