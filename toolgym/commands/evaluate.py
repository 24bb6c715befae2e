"""`toolgym eval`: success rates, pass@k, flips and tool-use metrics of a run; compare two; rescore."""

from __future__ import annotations

import json
from pathlib import Path


def run(args) -> int:
    from toolgym.agent.evaluate import compare, evaluate, rescore, to_markdown, write_reports
    from toolgym.agent.runstore import is_run_dir, load_trajectories, run_corpus, run_progress

    if not is_run_dir(args.run):
        raise ValueError(
            f"{args.run} is not a run folder (no trajectories, parts or plan.json): "
            f"run `toolgym rollout ... --out {args.run}` first."
        )
    # a killed or still running rollout is evaluated on what it committed, and flagged as partial
    rows = load_trajectories(args.run)
    progress = run_progress(args.run, rows)
    if not rows:
        planned = f" ({progress['planned']} planned)" if progress["planned"] is not None else ""
        raise ValueError(
            f"{args.run} holds no committed episodes yet{planned}: let its rollout run (or run "
            f"`toolgym rollout ... --out {args.run}`) first."
        )
    view = None if args.no_view else _viewer(args.run, rows, quiet=args.json)
    if args.rescore:
        from toolgym.envs.corpus import load_corpus

        corpus_path = args.corpus or run_corpus(args.run)
        if not corpus_path:
            raise ValueError(
                f"{args.run} does not record its corpus (no rollout.json or plan.json): pass --corpus."
            )
        rows = rescore(rows, load_corpus(corpus_path), backend=args.backend)
        changed = sum(r["reward"] != r["old_reward"] for r in rows)
        print(f"rescored {len(rows)} trajectories: {changed} rewards changed")
    ks = [int(k) for k in args.k.split(",")]
    report = evaluate(rows, ks, progress=progress)
    comparison = compare(rows, load_trajectories(args.compare)) if args.compare else None
    if comparison is not None:
        comparison = {**comparison, "a": str(args.run), "b": str(args.compare)}
    out = Path(args.report_dir or Path(args.run) / "eval")
    try:
        md, page = write_reports(report, rows, out, comparison, view=view)
    except OSError as exc:  # a read-only or full run folder: say so, the evaluation itself is fine
        raise ValueError(
            f"cannot write the reports to {out}: {exc.strerror or exc}; pass --report-dir."
        ) from exc
    if args.json:
        print(json.dumps({"report": report, "comparison": comparison}, indent=2, default=list))
    else:
        print(to_markdown(report, comparison))
        print(f"\nreports: {md} and {page}")
        if view:
            print(f"episodes: {view} (the HTML report's rows open it filtered)")
    return 0


def _viewer(run: str, rows: list[dict], quiet: bool):
    """The run's trajectory viewer, built (or rebuilt) from the rows as stored, before any rescoring: the
    HTML report's rows link to it. None when it cannot be written (a read-only run folder): the evaluation
    goes on, with a note on stdout (stderr stays for the one sentence of a failure)."""
    from toolgym.agent.viewer import build_view

    try:
        return build_view(run, rows=rows)
    except (OSError, ValueError) as exc:
        if not quiet:
            print(f"note: no trajectory viewer ({exc}); the report has no episode links.")
        return None


def add_parser(sub) -> None:
    from toolgym.cli import add_command

    p = add_command(
        sub,
        "eval",
        "Evaluate a rollout: success and pass@k with intervals, flips, tool use.",
        "toolgym eval runs/v32 --k 1,2,4\ntoolgym eval runs/local --compare runs/oracle\n"
        "toolgym eval runs/v32 --rescore          # re-run the verifiers on the stored actions",
        run,
    )
    p.add_argument("run", help="a run folder written by `toolgym rollout`")
    p.add_argument("--compare", help="a second run: B - A deltas, paired over shared tasks")
    p.add_argument(
        "--k", default="1,2,4,8,16", help="pass@k values (those above the samples per task are skipped)"
    )
    p.add_argument(
        "--rescore", action="store_true", help="replay the stored actions and re-run the verifiers"
    )
    p.add_argument("--corpus", help="for --rescore: the corpus (default: the one the run used)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "docker", "namespace"],
        help="where --rescore replays the recorded actions (always a sandbox: they are a model's)",
    )
    p.add_argument("--report-dir", help="where report.md/.html/.json go (default RUN/eval)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--no-view",
        action="store_true",
        help="do not (re)build the trajectory viewer in RUN/view that the HTML report's rows link to",
    )
