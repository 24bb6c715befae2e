"""`toolgym synth envs|tasks`: template-synthesized environments and validated task shards."""

from __future__ import annotations

import json


def _envs(args) -> int:
    from toolgym.synth.pipeline import synth_envs

    ids = synth_envs(args.out, seed=args.seed, scale=args.scale, workers=args.workers, only=args.only)
    print(f"{len(ids)} environments in {args.out}/envs")
    return 0


def _tasks(args) -> int:
    from toolgym.synth.pipeline import synth_tasks

    m = synth_tasks(
        args.out,
        seed=args.seed,
        scale=args.scale,
        workers=args.workers,
        sandbox_fraction=args.sandbox_fraction,
        runtime_check=args.runtime_check,
        only=args.only,
    )
    keys = (
        "envs",
        "tasks",
        "by_category",
        "by_difficulty",
        "drop_reasons",
        "admission",
        "runtime_check",
        "random_policy",
        "shortcuts",
        "difficulty",
        "diversity",
    )
    print(json.dumps({k: m[k] for k in keys if k in m}, indent=2))
    if m["runtime_check"]["disagreements"]:
        print("toolgym: the rollout runner disagrees with admission on some tasks (see manifest.json)")
        return 1
    return 0


def _report(args) -> int:
    from toolgym.synth.report import write_report

    try:
        text = write_report(args.dir, md=args.md, html_out=args.html)
    except FileNotFoundError as exc:
        print(f"toolgym: {exc}")
        return 2
    if not args.md:
        print(text)
    return 0


def add_parser(sub) -> None:
    from toolgym.cli import add_command
    from toolgym.synth import pipeline

    p = sub.add_parser(
        "synth", help="Synthesize environments and tasks.", description="Synthesize environments and tasks."
    )
    s = p.add_subparsers(dest="synth_command", metavar="SUBCOMMAND", required=True)
    e = add_command(
        s,
        "envs",
        "Build template environments into OUT/envs.",
        "toolgym synth envs --out ./corpus --scale demo",
        _envs,
    )
    t = add_command(
        s,
        "tasks",
        "Generate, validate and dedupe tasks; write OUT/tasks/*.parquet and OUT/manifest.json.",
        "toolgym synth tasks --out ./corpus --scale demo",
        _tasks,
    )
    for q in (e, t):
        q.add_argument("--out", required=True)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument(
            "--scale",
            choices=pipeline.SCALES,
            default="demo",
            help="tiny (tests), demo (~500 tasks), small (~2,500), full (~86,000)",
        )
        q.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
        q.add_argument(
            "--only",
            nargs="+",
            metavar="FAMILY",
            choices=["general", "search", "code_interpreter", "code"],
            help="build only these families (default: all four)",
        )
    r = add_command(
        s,
        "report",
        "Tables, distributions, drop reasons and sample tasks of a corpus (markdown, HTML).",
        "toolgym synth report ./corpus --html report.html --md report.md",
        _report,
    )
    r.add_argument("dir", help="the --out folder of `synth tasks`")
    r.add_argument("--md", help="write the markdown report here (else print it)")
    r.add_argument("--html", help="write the self-contained HTML report here")
    t.add_argument(
        "--sandbox-fraction",
        type=float,
        default=pipeline.SANDBOX_FRACTION,
        help="share of environments whose candidates are admitted in Docker sandboxes (1: all; the rest in-process)",
    )
    t.add_argument(
        "--runtime-check",
        type=float,
        default=0.01,
        help="share of admitted tasks run again through the rollout runner in Docker (0 to skip)",
    )
