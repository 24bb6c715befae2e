"""Rollout benchmark: oracle episodes over 2,000 distinct tasks of all four categories, end to end through Docker
sandboxes, beside the same episodes with the env servers in-process (no sandbox); then the containers left
behind and a SIGKILL-and-resume check.

    python bench/rollout.py [--tasks 2000] [--rounds 2] [--by-category] [--json]

Each side is timed around the whole `rollout` call (pool start and shard writing included); the two sides
alternate for `--rounds` rounds so a slow moment of the shared machine does not fall on one side only.
Goal (issue 6): sandboxed >= 0.5x the in-process rate, 0 leaked containers, resume equal to uninterrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from toolgym.agent.policies import OraclePolicy
from toolgym.agent.rollout import content, load_trajectories, rollout
from toolgym.envs import IN_PROCESS
from toolgym.envs.corpus import Corpus, load_corpus
from toolgym.sandbox import reaper
from toolgym.sandbox.engine import docker_client
from toolgym.synth.pipeline import synth_envs, synth_tasks

GOAL_RATIO = 0.5


def timed_run(corpus: Corpus, out: Path, backend: str) -> float:
    """Episodes per second of one oracle rollout, wall clock around the whole call."""
    where = IN_PROCESS if backend == "inprocess" else backend
    t0 = time.perf_counter()
    stats = asyncio.run(rollout(corpus, OraclePolicy, out, in_flight=8, backend=where, progress=False))
    wall = time.perf_counter() - t0
    assert stats.successes == stats.episodes == len(corpus.tasks), "the oracle must solve every task"
    return stats.episodes / wall


def resume_check(corpus_dir: Path, work: Path) -> dict:
    cmd = [sys.executable, "-m", "toolgym", "rollout", str(corpus_dir), "--policy", "oracle"]
    cmd += ["--limit", "300", "--backend", "docker", "--no-progress"]
    subprocess.run([*cmd, "--out", str(work / "whole")], check=True, capture_output=True)
    proc = subprocess.Popen(
        [*cmd, "--out", str(work / "cut")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not len(list((work / "cut" / "parts").glob("*.parquet"))) >= 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = len(list((work / "cut" / "parts").glob("*.parquet")))
    subprocess.run([*cmd, "--out", str(work / "cut")], check=True, capture_output=True)
    a, b = load_trajectories(work / "whole"), load_trajectories(work / "cut")
    return {
        "parts_before_kill": committed,
        "rows": len(b),
        "duplicates": len(b) - len({r["key"] for r in b}),
        "lost": len({r["key"] for r in a} - {r["key"] for r in b}),
        "equal_to_uninterrupted": [content(r) for r in a] == [content(r) for r in b],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000, help="distinct tasks, drawn from the 'small' corpus")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--by-category",
        action="store_true",
        help="also each category's tasks alone, both paths (where time goes)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        synth_envs(work / "corpus", seed=0, scale="small")
        synth_tasks(work / "corpus", seed=0, scale="small")
        corpus = load_corpus(work / "corpus").select(sample=args.tasks)
        client = docker_client()
        before = reaper.count(client)
        rounds = []
        for r in range(args.rounds):
            docker = timed_run(corpus, work / f"docker-{r}", "docker")
            inprocess = timed_run(corpus, work / f"inprocess-{r}", "inprocess")
            rounds.append({"docker": docker, "inprocess": inprocess, "ratio": docker / inprocess})
        alone = {}
        if args.by_category:
            for cat in sorted({t.category for t in corpus.tasks}):
                sub = corpus.select(category=cat)
                docker = timed_run(sub, work / f"docker-{cat}", "docker")
                inprocess = timed_run(sub, work / f"inprocess-{cat}", "inprocess")
                alone[cat] = {"docker": docker, "inprocess": inprocess, "ratio": docker / inprocess}
        leaked = reaper.count(client) - before
        resume = resume_check(work / "corpus", work)
    n = len(rounds)
    mean = {k: sum(r[k] for r in rounds) / n for k in ("docker", "inprocess")}
    result = {
        "tasks": len(corpus.tasks),
        "environments": len(corpus.env_dirs),
        "by_category": dict(sorted(Counter(t.category for t in corpus.tasks).items())),
        "rounds": rounds,
        "docker_eps_per_s": mean["docker"],
        "inprocess_eps_per_s": mean["inprocess"],
        "ratio": mean["docker"] / mean["inprocess"],
        "category_alone": alone,
        "leaked_containers": leaked,
        "resume": resume,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"oracle rollouts: {result['tasks']} distinct tasks in {result['environments']} environments "
        f"({result['by_category']}), 8 in flight, {n} rounds alternating the two paths\n"
    )
    print(
        "| round | Docker sandboxes, ep/s | in-process, ep/s | sandboxed / in-process |\n|---|---:|---:|---:|"
    )
    for i, r in enumerate(rounds):
        print(f"| {i + 1} | {r['docker']:.1f} | {r['inprocess']:.1f} | {r['ratio']:.2f} |")
    print(
        f"| **mean** | **{mean['docker']:.1f}** | **{mean['inprocess']:.1f}** | **{result['ratio']:.2f}** "
        f"(goal >= {GOAL_RATIO}) |"
    )
    if alone:
        print(
            "\n| category alone | tasks | Docker, ep/s | in-process, ep/s | ratio |\n|---|---:|---:|---:|---:|"
        )
        for cat, r in alone.items():
            n = result["by_category"][cat]
            print(f"| {cat} | {n} | {r['docker']:.1f} | {r['inprocess']:.1f} | {r['ratio']:.2f} |")
    print(f"\nleaked containers: {leaked}")
    print(f"resume after SIGKILL: {resume}")


if __name__ == "__main__":
    main()
