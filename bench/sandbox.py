"""Sandbox benchmark: every number beside its baseline, measured side by side in one run.

python bench/sandbox.py            # the table
python bench/sandbox.py --json     # the same rows for machines
python bench/sandbox.py --quick    # fewer repeats and episodes (CI smoke)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import textwrap
import time

from toolgym.sandbox import Limits, SandboxPool, get_backend, open_sandbox, reaper
from toolgym.sandbox.backend import Owner
from toolgym.sandbox.image import default_image
from toolgym.sandbox.sandbox import get_backend_uncached

LIMITS = Limits(memory_mb=256, timeout_s=30)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_cold_start(backend, n: int) -> list[dict]:
    image = default_image()

    def ours():
        with open_sandbox(backend, LIMITS) as sb:
            sb.run(["true"])

    rows = [
        dict(
            metric="cold start: create -> first command done",
            what=f"toolgym {backend.name}",
            samples=timed(ours, n),
        )
    ]
    if backend.name == "docker":
        if shutil.which("docker"):

            def plain():
                subprocess.run(
                    ["docker", "run", "--rm", "--network", "none", image, "true"],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )

            rows.append(
                dict(
                    metric="cold start: create -> first command done",
                    what="plain `docker run --rm`",
                    samples=timed(plain, n),
                )
            )
    return rows


def bench_round_trips(backend, n: int) -> list[dict]:
    rows = []
    with open_sandbox(backend, LIMITS) as sb:
        sb.run(["true"])
        rows.append(
            dict(metric="request round trip (ping)", what="in-sandbox server", samples=timed(sb.ping, n))
        )
        rows.append(
            dict(
                metric="command round trip (`true`)",
                what="in-sandbox server",
                samples=timed(lambda: sb.run(["true"]), n),
            )
        )
        if backend.name == "docker":
            container = backend.client.containers.get(sb.handle.extra["container"])
            rows.append(
                dict(
                    metric="command round trip (`true`)",
                    what="docker exec (SDK)",
                    samples=timed(lambda: container.exec_run(["true"], user="1000"), n),
                )
            )
        rows.append(
            dict(
                metric="command round trip (`true`)",
                what="local subprocess (no sandbox)",
                samples=timed(lambda: subprocess.run(["true"]), n),
            )
        )
        py = sb.python()
        py.run("x = 0")
        rows.append(
            dict(
                metric="python cell round trip (`x += 1`)",
                what="in-sandbox session",
                samples=timed(lambda: py.run("x += 1"), n),
            )
        )
    return rows


async def episodes(backend, n: int, in_flight: int, recycle: str) -> tuple[float, list[float], dict]:
    async with SandboxPool(in_flight, backend=backend, limits=LIMITS, recycle=recycle) as pool:
        acquire_s: list[float] = []
        sem = asyncio.Semaphore(in_flight)

        async def episode() -> None:
            async with sem:
                t = time.perf_counter()
                sb = await pool.acquire()
                acquire_s.append(time.perf_counter() - t)
                py = await asyncio.to_thread(sb.python)
                for i in range(5):
                    await py.arun(f"v = {i} * {i}")
                await pool.release(sb)

        started = time.perf_counter()
        await asyncio.gather(*(episode() for _ in range(n)))
        rate = n / (time.perf_counter() - started)
        # Warm acquire: the pool has had time to recycle; one at a time, nothing else running.
        await asyncio.sleep(1.0)
        warm = []
        for _ in range(30):
            t = time.perf_counter()
            sb = await pool.acquire()
            warm.append(time.perf_counter() - t)
            await pool.release(sb)
            await asyncio.sleep(0.03)
        return rate, warm, vars(pool.stats)


LEAK_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from toolgym.sandbox import Limits, SandboxPool
    async def main():
        async with SandboxPool(4, backend="docker", limits=Limits(memory_mb=256)) as pool:
            async def one():
                async with pool.lease() as sb:
                    await sb.arun("echo episode > /workspace/out; cat /workspace/out")
                print("E", flush=True)
            while True:
                await asyncio.gather(*(one() for _ in range(4)))
    asyncio.run(main())
    """
)


def bench_memory_bomb(name: str, n: int) -> list[dict]:
    """How fast the server answers the host while a command fills the sandbox's memory, with the agent cgroup
    (the default) and without it (server and agent in one cgroup), in alternating rounds; and what the agent
    cgroup costs a plain command (its child joins the cgroup between fork and exec)."""
    import threading
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.security.test_resource_bombs import MEMORY_BOMB  # the bomb the containment test runs

    limits = Limits(memory_mb=256, pids=96, timeout_s=10)
    variants = {}
    for split in (True, False):
        backend = get_backend_uncached(name, None)
        backend.agent_cgroup = split
        variants[split] = dict(backend=backend, pings=[], worst=[], true=[], oom=0)
    for _ in range(n):
        for v in variants.values():
            with open_sandbox(v["backend"], limits) as sb:
                timed(lambda: sb.run(["true"]), 20)  # warm: the spare kernel starts beside the first commands
                v["true"] += timed(lambda: sb.run(["true"]), 40)
                done, pings = threading.Event(), []

                def watch(sb=sb, done=done, pings=pings):
                    while not done.wait(0.01):
                        pings.append(sb.ping())

                watcher = threading.Thread(target=watch)
                watcher.start()
                r = sb.run(["python3", "-c", MEMORY_BOMB], timeout_s=5)
                done.set()
                watcher.join()
                v["pings"] += pings
                v["worst"].append(max(pings, default=0.0))
                v["oom"] += r.oom_killed
    return [
        dict(
            agent_cgroup=split,
            bombs=n,
            oom_killed=v["oom"],
            ping_p50_ms=pct(v["pings"], 0.5) * 1e3,
            ping_p99_ms=pct(v["pings"], 0.99) * 1e3,
            worst_ping_p50_ms=pct(v["worst"], 0.5) * 1e3,
            worst_ping_max_ms=max(v["worst"]) * 1e3,
            true_p50_ms=pct(v["true"], 0.5) * 1e3,
        )
        for split, v in variants.items()
    ]


def bench_leaks(total: int, workers: int, seed: int) -> dict:
    """Episodes in worker processes that get SIGKILLed at random; then what is left after reaping."""
    rng = random.Random(seed)
    client = get_backend("docker").client
    done = 0
    kills = 0
    procs: list[tuple[subprocess.Popen, Owner]] = []
    owners: list[Owner] = []
    from toolgym.sandbox.backend import process_start_time

    def spawn():
        p = subprocess.Popen(
            [sys.executable, "-c", LEAK_WORKER], stdout=subprocess.PIPE, text=True, bufsize=1
        )
        o = Owner(Owner.me().host, p.pid, process_start_time(p.pid))
        owners.append(o)
        procs.append((p, o))

    for _ in range(workers):
        spawn()
    import selectors

    sel = selectors.DefaultSelector()
    for p, _ in procs:
        sel.register(p.stdout, selectors.EVENT_READ, p)
    budget = {id(p): rng.randint(50, 400) for p, _ in procs}
    while done < total:
        for key, _ in sel.select(timeout=1.0):
            p = key.data
            line = p.stdout.readline()
            if not line:
                sel.unregister(p.stdout)
                continue
            done += 1
            budget[id(p)] -= 1
            if budget[id(p)] <= 0 and done < total:
                p.kill()  # SIGKILL mid-episode: no cleanup runs in the worker
                p.wait()
                kills += 1
                sel.unregister(p.stdout)
                procs[:] = [(q, o) for q, o in procs if q is not p]
                spawn()
                q = procs[-1][0]
                sel.register(q.stdout, selectors.EVENT_READ, q)
                budget[id(q)] = rng.randint(50, 400)
    for p, _ in procs:
        p.kill()
        p.wait()
        kills += 1
    orphaned = sum(reaper.count(client, o) for o in owners)
    reaper.reap_dead(client)
    leaked = sum(reaper.count(client, o) for o in owners)
    return {
        "episodes": done,
        "sigkills": kills,
        "orphaned_before_reap": orphaned,
        "leaked_after_reap": leaked,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer repeats and episodes")
    ap.add_argument("--backend", default="docker", choices=["docker", "namespace"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    backend = get_backend(args.backend)
    n_cold = 5 if args.quick else 20
    n_rt = 50 if args.quick else 300
    n_eps = 40 if args.quick else 400
    n_leak = 200 if args.quick else 2000

    rows = bench_cold_start(backend, n_cold) + bench_round_trips(backend, n_rt)
    table = [
        dict(
            metric=r["metric"],
            what=r["what"],
            p50_ms=pct(r["samples"], 0.5) * 1e3,
            p95_ms=pct(r["samples"], 0.95) * 1e3,
            n=len(r["samples"]),
        )
        for r in rows
    ]
    episode_rows = []
    for recycle in ("reset", "fresh"):
        n = n_eps if recycle == "reset" else max(n_eps // 4, 20)
        rate, warm, stats = asyncio.run(episodes(backend, n, 8, recycle))
        episode_rows.append(
            dict(
                recycle=recycle,
                episodes=n,
                episodes_per_s=rate,
                warm_acquire_p50_ms=statistics.median(warm) * 1e3,
                stats=stats,
            )
        )
    leaks = bench_leaks(n_leak, 4, args.seed) if backend.name == "docker" else None
    bombs = bench_memory_bomb(backend.name, 3 if args.quick else 15)
    result = {
        "backend": backend.name,
        "round_trips": table,
        "episodes": episode_rows,
        "leaks": leaks,
        "memory_bomb": bombs,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"sandbox benchmark, backend={backend.name}, {time.strftime('%Y-%m-%d')}\n")
    print(f"| {'metric':<42} | {'what':<31} | {'p50 ms':>8} | {'p95 ms':>8} | {'n':>4} |")
    print(f"|{'-' * 44}|{'-' * 33}|{'-' * 10}|{'-' * 10}|{'-' * 6}|")
    for r in table:
        print(
            f"| {r['metric']:<42} | {r['what']:<31} | {r['p50_ms']:>8.2f} | {r['p95_ms']:>8.2f} | {r['n']:>4} |"
        )
    by = {(r["metric"], r["what"]): r["p50_ms"] for r in table}
    cmd = "command round trip (`true`)"
    if (cmd, "docker exec (SDK)") in by:
        print(
            f"\ncommand round trip: server is {by[(cmd, 'docker exec (SDK)')] / by[(cmd, 'in-sandbox server')]:.1f}x"
            " faster than docker exec"
        )
    cold = "cold start: create -> first command done"
    if (cold, "plain `docker run --rm`") in by:
        print(
            f"cold start: toolgym / plain docker run = "
            f"{by[(cold, 'toolgym docker')] / by[(cold, 'plain `docker run --rm`')]:.2f}"
        )
    print("\n| episodes (acquire, 5 Python cells, release), 8 in flight | episodes/s | warm acquire p50 ms |")
    print("|---|---|---|")
    for e in episode_rows:
        print(
            f"| recycle={e['recycle']} ({e['episodes']} episodes) | {e['episodes_per_s']:.1f} | "
            f"{e['warm_acquire_p50_ms']:.2f} |"
        )
    print(
        "\n| a command fills the sandbox's memory (256 MB, 9 processes) | OOM-killed | server ping p50 ms | "
        "p99 ms | worst per bomb, p50 ms | worst ms | `true` round trip p50 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for b in bombs:
        what = "agent cgroup (default)" if b["agent_cgroup"] else "one cgroup (baseline)"
        print(
            f"| {what}, {b['bombs']} bombs | {b['oom_killed']} | {b['ping_p50_ms']:.2f} | {b['ping_p99_ms']:.2f} | "
            f"{b['worst_ping_p50_ms']:.2f} | {b['worst_ping_max_ms']:.2f} | {b['true_p50_ms']:.2f} |"
        )
    if leaks:
        print(
            f"\nleak check: {leaks['episodes']} episodes, {leaks['sigkills']} workers SIGKILLed, "
            f"{leaks['orphaned_before_reap']} containers orphaned before reaping, "
            f"**{leaks['leaked_after_reap']} leaked after reaping**"
        )


if __name__ == "__main__":
    main()
