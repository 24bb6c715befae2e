"""Synthesis benchmark: the whole corpus of a scale, timed by stage (environments, task generation and
in-process validation, the sandboxed re-check of a random sample in Docker), with counts by category.

    python bench/synth.py [--scale full] [--workers N] [--sandbox-fraction F] [--runtime-check 0.01] [--json]
    python bench/synth.py --scale small --compare-gate     # admission with and without the shortcut gate

Goal (issue 4): 1,800+ environments and 85,000+ verified tasks in at most 15 minutes on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from toolgym.synth import pipeline
from toolgym.synth.report import diversity_table, drops_table, md_table, shortcut_table

GOAL_S = 15 * 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="full", choices=pipeline.SCALES)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument(
        "--sandbox-fraction",
        type=float,
        default=pipeline.SANDBOX_FRACTION,
        help="share of environments admitted in Docker sandboxes (1: all)",
    )
    ap.add_argument("--runtime-check", type=float, default=0.01, help="share re-run by the rollout runner")
    ap.add_argument(
        "--compare-sandbox",
        action="store_true",
        help="also time task admission with every environment in Docker (--sandbox-fraction 1) on the same "
        "environments, and print the two side by side",
    )
    ap.add_argument(
        "--compare-gate",
        action="store_true",
        help="time task admission without and with the shortcut gate on the same environments, side by side",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.compare_sandbox:
        compare_sandbox(args)
        return
    if args.compare_gate:
        compare_gate(args)
        return
    timings: dict = {}
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        ids = pipeline.synth_envs(out, 0, args.scale, args.workers)
        t1 = time.perf_counter()
        m = pipeline.synth_tasks(
            out,
            0,
            args.scale,
            args.workers,
            sandbox_fraction=args.sandbox_fraction,
            runtime_check=args.runtime_check,
            timings=timings,
        )
        t2 = time.perf_counter()
    row = {
        "scale": args.scale,
        "envs": len(ids),
        "tasks": m["tasks"],
        "candidates": m["candidates"],
        "envs_by_category": m["envs_by_category"],
        "tasks_by_category": m["by_category"],
        "stage_s": {
            "environments": round(t1 - t0, 1),
            "tasks + validation": round(timings["validate_s"], 1),
            "runtime check": round(timings["runtime_check_s"], 1),
            "shards + manifest": round(t2 - t1 - timings["validate_s"] - timings["runtime_check_s"], 1),
        },
        "total_s": round(t2 - t0, 1),
        "tasks_per_s": round(m["tasks"] / (t2 - t0), 1),
        "total_vs_goal": round((t2 - t0) / GOAL_S, 2),
        "drop_reasons": m["drop_reasons"],
        "admission": m["admission"],
        "runtime_check": {k: m["runtime_check"][k] for k in ("checked", "disagreements")},
        "distinctness": m["distinctness"]["by_category"],
        "shortcuts": m["shortcuts"]["by_family_level"],
        "difficulty": m["difficulty"]["by_category"],
        "diversity": m["diversity"],
    }
    if args.json:
        print(json.dumps(row, indent=2))
        return
    print(
        f"synthesis at scale {args.scale}: {row['envs']} environments, {row['tasks']} tasks "
        f"({row['candidates']} candidates)"
    )
    print("\n| category | environments | tasks |\n|---|---:|---:|")
    for cat, n in m["envs_by_category"].items():
        print(f"| {cat} | {n} | {m['by_category'].get(cat, 0)} |")
    print(
        "\n| category | environments | distinct tool sets | rule sets | data sets |\n|---|---:|---:|---:|---:|"
    )
    for cat, d in row["distinctness"].items():
        print(f"| {cat} | {d['environments']} | {d['tool_sets']} | {d['rule_sets']} | {d['data_sets']} |")
    print("\n| stage | seconds |\n|---|---:|")
    for stage, s in row["stage_s"].items():
        print(f"| {stage} | {s} |")
    print(f"| **total** | **{row['total_s']}** (goal ≤ {GOAL_S}: {row['total_vs_goal']}× of it) |")
    print(
        f"\n{row['tasks_per_s']} tasks/s; admitted in sandboxes: {m['admission']['sandboxed_envs']} envs; "
        f"runtime check: {m['runtime_check']['checked']} tasks, {len(m['runtime_check']['disagreements'])} disagreements"
    )
    print("\nshortcut solve rates before the gate (share of the candidates that reached it)\n")
    print(md_table(*shortcut_table(m)))
    print("\ndrops by reason\n")
    print(md_table(*drops_table(m)))
    print("\ncomputed difficulty: mean reference calls by level\n")
    print("| category | " + " | ".join(f"level {lv}" for lv in range(1, 6)) + " |\n|---|" + "---:|" * 5)
    for cat, d in m["difficulty"]["by_category"].items():
        cells = [
            f"{d['levels'][str(lv)]['mean_reference_calls']} ({100 * d['levels'][str(lv)]['share']:.0f}%)"
            if str(lv) in d["levels"]
            else "-"
            for lv in range(1, 6)
        ]
        print(f"| {cat} | " + " | ".join(cells) + " |")
    print("\ndiversity per category (masked skeletons; goal: the largest <= 2%)\n")
    print(md_table(*diversity_table(m)))


def compare_gate(args) -> None:
    """Task admission twice over the same environments, without then with the shortcut gate (same placement:
    --sandbox-fraction): the ratio of the times is what the gate costs."""
    with tempfile.TemporaryDirectory() as out:
        pipeline.synth_envs(out, 0, args.scale, args.workers)
        rows = {}
        for name, gate in (("without gate", False), ("with gate", True)):
            t0 = time.perf_counter()
            m = pipeline.synth_tasks(
                out, 0, args.scale, args.workers, sandbox_fraction=args.sandbox_fraction, gate=gate
            )
            rows[name] = {"s": time.perf_counter() - t0, "tasks": m["tasks"], "candidates": m["candidates"]}
            shutil.rmtree(Path(out) / ".work" / "tasks")
    ratio = rows["with gate"]["s"] / rows["without gate"]["s"]
    if args.json:
        print(json.dumps({"scale": args.scale, **rows, "ratio": ratio}, indent=2))
        return
    print(
        f"task admission at scale {args.scale}, sandbox fraction {args.sandbox_fraction}, same environments\n"
    )
    print("| admission | candidates | tasks kept | seconds | candidates/s |\n|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['candidates']} | {r['tasks']} | {r['s']:.1f} | {r['candidates'] / r['s']:.1f} |"
        )
    print(f"\nwith / without the gate: {ratio:.2f}x the time")


def compare_sandbox(args) -> None:
    """Task admission twice over the same environments, in-process then every environment in a Docker sandbox:
    the corpus must be the same, and the ratio of the times is the price of running no tool on the host."""
    with tempfile.TemporaryDirectory() as out:
        pipeline.synth_envs(out, 0, args.scale, args.workers)
        rows = {}
        for name, fraction in (("in-process", 0.0), ("sandboxed", 1.0)):
            t0 = time.perf_counter()
            m = pipeline.synth_tasks(out, 0, args.scale, args.workers, sandbox_fraction=fraction)
            rows[name] = {"s": time.perf_counter() - t0, "tasks": m["tasks"], "shards": m["shards"]}
            shutil.rmtree(Path(out) / ".work" / "tasks")
    same = rows["in-process"]["shards"] == rows["sandboxed"]["shards"]
    ratio = rows["sandboxed"]["s"] / rows["in-process"]["s"]
    if args.json:
        print(json.dumps({"scale": args.scale, **rows, "same_corpus": same, "ratio": ratio}, indent=2))
        return
    print(f"task admission at scale {args.scale}, the same environments both ways\n")
    print("| admission | tasks | seconds | tasks/s |\n|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['tasks']} | {r['s']:.1f} | {r['tasks'] / r['s']:.1f} |")
    print(f"\nsandboxed / in-process time: {ratio:.2f}x; identical task shards: {same}")


if __name__ == "__main__":
    main()
