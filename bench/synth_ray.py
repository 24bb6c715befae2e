"""Synthesis on Ray beside local processes, in one run: the same corpus (seed, scale) built by worker processes
and by Ray actors on a one-node cluster started here (`--ray local`), wall time side by side and every file
compared; with --by-category, what one environment and one admitted task cost per category (one worker, so the
seconds are one core's), the numbers a run past one machine is planned from.

    .venv/bin/python bench/synth_ray.py --scale demo --workers 2 --by-category
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and bench/ray.py would be imported as Ray itself.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from toolgym.synth.pipeline import synth_envs, synth_tasks  # noqa: E402

CATEGORIES = ("general", "search", "code_interpreter", "code")


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def build(out: Path, scale: str, workers: int, ray: str | None, only=None) -> dict:
    """Seconds of the two stages, environments and tasks counted."""
    t0 = time.perf_counter()
    envs = synth_envs(out, seed=0, scale=scale, workers=workers, only=only, progress="none", ray=ray)
    t1 = time.perf_counter()
    m = synth_tasks(
        out, seed=0, scale=scale, workers=workers, only=only, runtime_check=0.0, progress="none", ray=ray
    )
    t2 = time.perf_counter()
    return {"envs": len(envs), "tasks": m["tasks"], "envs_s": t1 - t0, "tasks_s": t2 - t1}


def side_by_side(scale: str, workers: int) -> dict:
    from toolgym.agent.cluster import connect, disconnect

    with tempfile.TemporaryDirectory() as tmp:
        local = build(Path(tmp) / "local", scale, workers, None)
        started = time.perf_counter()
        connect("local", num_cpus=workers)
        start_s = time.perf_counter() - started
        try:
            on_ray = build(Path(tmp) / "ray", scale, workers, "local")
        finally:
            disconnect()
        same = _files(Path(tmp) / "local") == _files(Path(tmp) / "ray")
    return {"local": local, "ray": on_ray, "ray_start_s": start_s, "identical": same}


def by_category(scale: str) -> dict:
    rows = {}
    for cat in CATEGORIES:
        with tempfile.TemporaryDirectory() as tmp:
            r = build(Path(tmp) / cat, scale, 1, None, only=[cat])
        rows[cat] = {
            **r,
            "env_s_per_env": r["envs_s"] / r["envs"],
            "admit_s_per_env": r["tasks_s"] / r["envs"],
            "s_per_task": (r["envs_s"] + r["tasks_s"]) / max(1, r["tasks"]),
        }
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="tiny", choices=["tiny", "demo", "small", "full"])
    ap.add_argument("--workers", type=int, default=2, help="processes, and the local Ray cluster's CPUs")
    ap.add_argument("--by-category", action="store_true", help="also each category's cost on one worker")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {"scale": args.scale, "workers": args.workers, **side_by_side(args.scale, args.workers)}
    if args.by_category:
        result["by_category"] = by_category(args.scale)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    loc, ray = result["local"], result["ray"]
    print(f"scale {args.scale}: {loc['envs']} environments, {loc['tasks']} tasks, {args.workers} workers")
    print(f"{'stage':<8} {'local s':>8} {'ray s':>8} {'ray/local':>10}")
    for stage in ("envs_s", "tasks_s"):
        print(f"{stage[:-2]:<8} {loc[stage]:>8.1f} {ray[stage]:>8.1f} {ray[stage] / loc[stage]:>9.2f}x")
    print(f"(starting the local Ray cluster: {result['ray_start_s']:.1f} s, not counted above)")
    print(f"files identical: {result['identical']}")
    if args.by_category:
        print(
            f"\n{'category':<17} {'envs':>5} {'tasks':>6} {'build s/env':>12} {'admit s/env':>12} {'s/task':>7}"
        )
        for cat, r in result["by_category"].items():
            print(
                f"{cat:<17} {r['envs']:>5} {r['tasks']:>6} {r['env_s_per_env']:>12.2f} "
                f"{r['admit_s_per_env']:>12.2f} {r['s_per_task']:>7.3f}"
            )


if __name__ == "__main__":
    main()
