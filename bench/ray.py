"""Ray rollout benchmark: the mixed oracle rollout of bench/rollout.py (2,000 distinct tasks of all four categories,
Docker sandboxes, 8 in flight) run locally and with `--ray local` (a one-node cluster in this process, one actor
with the same 8 sandboxes), side by side; the driver's commit rate; and CPU seconds per episode by category.

    python bench/ray.py [--tasks 2000] [--rounds 1] [--commit-rows 100000] [--no-categories] [--json]

- Rates are wall clock around the whole call (sandbox pool start, shipping the environments and shard writing
  included); the Ray cluster's own start is timed apart (once per process, not per run). The two paths
  alternate for `--rounds` rounds. Goal (issue 18): Ray >= 0.8x local.
- Commit rate: rows of the oracle run, copied under new keys up to `--commit-rows`, committed through
  `TrajectoryStore.commit` in the batch sizes the driver writes (a finished chunk's rows, at least
  `commit_every`), then one `finalize`. The question: can one driver keep up with 10,000 episodes/s?
- CPU per episode, each category alone (local, Docker): this process (policy, loop, verifier calls' client
  side), the sandboxes' cgroups (env servers, tools, verifiers: sampled every 0.5 s, so a replaced sandbox's
  last half second is missed) and the Docker engine's processes (dockerd, containerd, shims: shared with whatever
  else runs on the machine, so an upper bound).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from toolgym.agent.cluster import connect, disconnect
from toolgym.agent.policies import OraclePolicy
from toolgym.agent.ray_rollout import RayRolloutPool, ray_rollout
from toolgym.agent.rollout import content, load_trajectories, rollout
from toolgym.agent.runstore import TrajectoryStore
from toolgym.envs.corpus import Corpus, load_corpus
from toolgym.sandbox import SandboxPool
from toolgym.sandbox.engine import docker_client
from toolgym.synth.pipeline import synth_envs, synth_tasks

# `python bench/ray.py` puts bench/ first on sys.path, where this file would shadow the `ray` package that
# toolgym imports when it joins the cluster.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

GOAL_RATIO = 0.8
IN_FLIGHT = 8
CGROUP = Path("/sys/fs/cgroup/cpuacct/docker")
HZ = os.sysconf("SC_CLK_TCK")


def local_run(corpus: Corpus, out: Path) -> float:
    t0 = time.perf_counter()
    stats = asyncio.run(
        rollout(corpus, OraclePolicy, out, in_flight=IN_FLIGHT, backend="docker", progress=False)
    )
    wall = time.perf_counter() - t0
    assert stats.successes == stats.episodes == len(corpus.tasks), "the oracle must solve every task"
    return stats.episodes / wall


def ray_run(corpus: Corpus, out: Path, pool: RayRolloutPool) -> float:
    t0 = time.perf_counter()
    stats = ray_rollout(corpus, OraclePolicy, out, pool=pool, progress=False)
    wall = time.perf_counter() - t0
    assert stats.successes == stats.episodes == len(corpus.tasks), "the oracle must solve every task"
    return stats.episodes / wall


def commit_rate(sample_rows: list[dict], n: int, batch: int, work: Path) -> dict:
    """Rows per second of `TrajectoryStore.commit` in batches of `batch`, and of the final `finalize`."""
    rows = []
    for i in range(n):
        row = dict(sample_rows[i % len(sample_rows)])
        row["key"] = f"synthetic-{i:08d}#0"
        row["task_id"] = f"synthetic-{i:08d}"
        rows.append(row)
    store = TrajectoryStore(work / f"commit-{batch}")
    store.acquire()
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        store.commit(rows[start : start + batch])
    commit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.finalize()
    finalize_s = time.perf_counter() - t0
    store.release()
    return {"batch": batch, "rows": n, "rows_per_s": n / commit_s, "finalize_s": finalize_s}


def engine_cpu_s() -> float:
    """CPU seconds so far of the Docker engine's processes (dockerd, containerd and the shims)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if name in ("dockerd", "containerd") or name.startswith("containerd-shim"):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            continue
    return total / HZ


def category_cpu(corpus: Corpus, out: Path) -> dict:
    """One category's oracle episodes, locally in Docker: CPU seconds per episode by where they were spent."""
    client = docker_client()
    pool = SandboxPool(IN_FLIGHT, backend="docker", run_id=f"bench-{random.randrange(1 << 32):08x}")
    seen: dict[str, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while True:
            for c in client.api.containers(all=True, filters={"label": f"toolgym.run={pool.run_id}"}):
                try:
                    used = int((CGROUP / c["Id"] / "cpuacct.usage").read_text()) / 1e9
                except (OSError, ValueError):
                    continue
                seen[c["Id"]] = max(seen.get(c["Id"], 0.0), used)
            if stop.wait(0.5):
                return

    async def run() -> float:
        await pool.start()
        t0 = time.perf_counter()
        try:
            await rollout(corpus, OraclePolicy, out, pool=pool, in_flight=IN_FLIGHT, progress=False)
        finally:
            sampler_done = time.perf_counter() - t0
            stop.set()
            thread.join()
            await pool.close()
        return sampler_done

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    engine0 = engine_cpu_s()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    wall = asyncio.run(run())
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    engine = engine_cpu_s() - engine0
    here = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    sandboxes = sum(seen.values())
    n = len(corpus.tasks)
    return {
        "episodes": n,
        "eps_per_s": n / wall,
        "driver_cpu_s_per_ep": here / n,
        "sandbox_cpu_s_per_ep": sandboxes / n,
        "engine_cpu_s_per_ep": engine / n,
        "total_cpu_s_per_ep": (here + sandboxes + engine) / n,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000, help="distinct tasks, drawn from the 'small' corpus")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--commit-rows", type=int, default=100_000)
    ap.add_argument("--no-categories", action="store_true", help="skip the CPU-per-episode runs")
    ap.add_argument(
        "--corpus", type=Path, help="a synthesis output to reuse (default: synthesize 'small', seed 0, here)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = args.corpus or work / "corpus"
        if args.corpus is None or not (source / "tasks").is_dir():
            synth_envs(source, seed=0, scale="small")
            synth_tasks(source, seed=0, scale="small")
        corpus = load_corpus(source).select(sample=args.tasks)
        os.environ["TOOLGYM_ENV_CACHE"] = str(work / "env-cache")  # the first Ray round ships every env
        t0 = time.perf_counter()
        connect("local", num_cpus=os.cpu_count())
        pool = RayRolloutPool(corpus, address="local", in_flight=IN_FLIGHT, backend="docker")
        ray_start_s = time.perf_counter() - t0
        rounds = []
        for r in range(args.rounds):
            local = local_run(corpus, work / f"local-{r}")
            on_ray = ray_run(corpus, work / f"ray-{r}", pool)
            rounds.append({"local": local, "ray": on_ray, "ratio": on_ray / local})
        same = [content(x) for x in load_trajectories(work / "local-0")] == [
            content(x) for x in load_trajectories(work / "ray-0")
        ]
        pool.close()
        disconnect()
        sample_rows = TrajectoryStore(work / "local-0").rows()
        batches = (16, 64, 256, 1024) if args.commit_rows else ()
        commits = [commit_rate(sample_rows, args.commit_rows, b, work) for b in batches]
        categories = {}
        if not args.no_categories:
            for cat in sorted({t.category for t in corpus.tasks}):
                categories[cat] = category_cpu(corpus.select(category=cat), work / f"cpu-{cat}")
    n = len(rounds)
    mean = {k: sum(r[k] for r in rounds) / n for k in ("local", "ray")}
    result = {
        "tasks": len(corpus.tasks),
        "environments": len(corpus.env_dirs),
        "by_category": dict(sorted(Counter(t.category for t in corpus.tasks).items())),
        "in_flight": IN_FLIGHT,
        "cpus": os.cpu_count(),
        "ray_cluster_start_s": ray_start_s,
        "rounds": rounds,
        "local_eps_per_s": mean["local"],
        "ray_eps_per_s": mean["ray"],
        "ratio": mean["ray"] / mean["local"],
        "rows_equal": same,
        "commit": commits,
        "cpu_per_episode": categories,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"oracle rollouts: {result['tasks']} distinct tasks in {result['environments']} environments "
        f"({result['by_category']}), Docker, {IN_FLIGHT} in flight, {result['cpus']} CPUs; Ray: one actor on a "
        f"one-node local cluster (started once in {ray_start_s:.1f} s)\n"
    )
    print("| round | local, ep/s | --ray local, ep/s | Ray / local |\n|---|---:|---:|---:|")
    for i, r in enumerate(rounds):
        print(f"| {i + 1} | {r['local']:.1f} | {r['ray']:.1f} | {r['ratio']:.2f} |")
    print(
        f"| **mean** | **{mean['local']:.1f}** | **{mean['ray']:.1f}** | **{result['ratio']:.2f}** "
        f"(goal >= {GOAL_RATIO}) |"
    )
    print(f"\nrows of the Ray run equal the local run's (timings aside): {same}")
    if commits:
        print("\n| driver commit batch (rows) | rows/s | finalize of all rows, s |\n|---:|---:|---:|")
    for c in commits:
        print(f"| {c['batch']} | {c['rows_per_s']:,.0f} | {c['finalize_s']:.1f} |")
    if categories:
        print(
            "\n| category (alone, local Docker) | episodes | ep/s | driver CPU s/ep | sandboxes CPU s/ep | "
            "engine CPU s/ep | total CPU s/ep |\n|---|---:|---:|---:|---:|---:|---:|"
        )
        for cat, c in categories.items():
            print(
                f"| {cat} | {c['episodes']} | {c['eps_per_s']:.1f} | {c['driver_cpu_s_per_ep']:.3f} | "
                f"{c['sandbox_cpu_s_per_ep']:.3f} | {c['engine_cpu_s_per_ep']:.3f} | {c['total_cpu_s_per_ep']:.3f} |"
            )


if __name__ == "__main__":
    main()
