"""Security benchmark: the hostile-agent suite by area (attacks tried, attacks contained), and what the hardening
costs: Docker oracle rollouts of the same mixed corpus on this checkout and on an older one, side by side.

    python bench/security.py [--baseline DIR] [--tasks 2000] [--rounds 2] [--json]

`--baseline DIR` is a plain install of the older toolgym (`pip install --no-deps --target DIR <checkout>`; copy
its synth/templates too if the install lacks them): its rollouts run with DIR first on PYTHONPATH. Each side
synthesizes its own `small` corpus from seed 0 and rolls out the same seeded sample of it. Goals: every attack
contained; rollout throughput after / before >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_RATIO = 0.9

# Only API that old and new toolgym share, so the same script times both.
ROLLOUT = r"""
import asyncio, json, sys, time
from pathlib import Path
from toolgym.agent.policies import OraclePolicy
from toolgym.agent.rollout import rollout
from toolgym.envs.corpus import load_corpus
from toolgym.synth.pipeline import synth_envs, synth_tasks
work, n, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if not (work / "corpus" / "manifest.json").exists():
    synth_envs(work / "corpus", seed=0, scale="small")
    synth_tasks(work / "corpus", seed=0, scale="small")
corpus = load_corpus(work / "corpus").select(sample=n)
out = []
for r in range(rounds):
    t0 = time.perf_counter()
    stats = asyncio.run(rollout(corpus, OraclePolicy, work / f"run-{time.time_ns()}", in_flight=8, backend="docker", progress=False))
    wall = time.perf_counter() - t0
    assert stats.successes == stats.episodes == len(corpus.tasks), "the oracle must solve every task"
    out.append(stats.episodes / wall)
print(json.dumps(out))
"""


def attacks() -> dict[str, dict[str, int]]:
    """Run tests/security; per area (test file): attacks tried and contained (a test passes when its attack is
    contained)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/security",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--junitxml={report}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        tried, contained = Counter(), Counter()
        for case in ET.parse(report).getroot().iter("testcase"):
            area = case.get("classname", "").split(".")[-1].removeprefix("test_")
            if case.find("skipped") is not None:
                continue
            tried[area] += 1
            contained[area] += case.find("failure") is None and case.find("error") is None
    return {a: {"tried": tried[a], "contained": contained[a]} for a in sorted(tried)}


def throughput(pythonpath: str | None, work: Path, tasks: int, rounds: int) -> list[float]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run(
        [sys.executable, "-c", ROLLOUT, str(work), str(tasks), str(rounds)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(f"the rollout failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", help="a plain install of the older toolgym to compare throughput with")
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result: dict = {"attacks": attacks()}
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            before_dir, after_dir = Path(tmp, "before"), Path(tmp, "after")
            before_dir.mkdir()
            after_dir.mkdir()
            before, after = [], []
            for _ in range(args.rounds):  # alternate, so both sides see the same machine
                before += throughput(args.baseline, before_dir, args.tasks, 1)
                after += throughput(None, after_dir, args.tasks, 1)
        mean_b, mean_a = sum(before) / len(before), sum(after) / len(after)
        result["throughput"] = {
            "before_eps": before,
            "after_eps": after,
            "ratio": mean_a / mean_b,
            "goal": GOAL_RATIO,
        }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| area | attacks tried | contained |\n|---|---:|---:|")
    for area, r in result["attacks"].items():
        print(f"| {area} | {r['tried']} | {r['contained']} |")
    total = sum(r["tried"] for r in result["attacks"].values())
    held = sum(r["contained"] for r in result["attacks"].values())
    print(f"| **all** | **{total}** | **{held}** |")
    if "throughput" in result:
        t = result["throughput"]
        print("\n| round | before (ep/s) | after (ep/s) |\n|---|---:|---:|")
        for i, (b, a) in enumerate(zip(t["before_eps"], t["after_eps"], strict=True)):
            print(f"| {i + 1} | {b:.1f} | {a:.1f} |")
        print(f"\nafter / before: {t['ratio']:.2f} (goal >= {GOAL_RATIO})")


if __name__ == "__main__":
    main()
