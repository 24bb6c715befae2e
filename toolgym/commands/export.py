"""`toolgym export sft|rl`: cold-start SFT data and RL prompts / GRPO groups from runs and corpora."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path


@contextlib.contextmanager
def _writing(out):
    """A full or read-only --out: one sentence (each file is written whole or not at all)."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or not exc.errno:
            raise
        raise ValueError(f"cannot write to {out}: {exc.strerror}.") from exc


def _run_rows(run) -> tuple[list[dict], dict]:
    """The rows of a run folder, finished or not, and its progress (a partial run is said on stderr)."""
    from toolgym.agent.runstore import is_run_dir, load_trajectories, run_progress

    if not is_run_dir(run):
        raise ValueError(f"{run} is not a run folder (no trajectories, parts or plan.json).")
    rows = load_trajectories(run)
    progress = run_progress(run, rows)
    if not rows:
        raise ValueError(f"{run} holds no committed episodes yet: there is nothing to export.")
    if progress["partial"]:
        print(f"toolgym: {run}: {progress['note']}; exporting what it committed", file=sys.stderr)
    return rows, progress


def _sft(args) -> int:
    from toolgym.agent.export import export_sft

    rows, progress = _run_rows(args.run)
    with _writing(args.out):
        result = export_sft(
            rows,
            args.out,
            min_reward=args.min_reward,
            system_prompt=args.system_prompt,
            thinking=not args.no_thinking,
            tokenizer=args.tokenizer,
        )
    print(json.dumps({**result, "run": progress}, indent=2))
    return 0


def _rl(args) -> int:
    from toolgym.agent.export import export_rl
    from toolgym.agent.runstore import is_run_dir, run_corpus
    from toolgym.envs.corpus import load_corpus

    source = Path(args.source)
    if is_run_dir(source):
        # a finished run names its corpus in rollout.json, a killed one in plan.json
        corpus_path = args.corpus or run_corpus(source)
        if not corpus_path:
            raise ValueError(
                f"{source} does not record its corpus (no rollout.json or plan.json): pass --corpus."
            )
        rows, progress = _run_rows(source)
        corpus = load_corpus(corpus_path)
        with _writing(args.out):
            result = {**export_rl(args.out, corpus=corpus, rows=rows), "run": progress}
    else:
        corpus = load_corpus(args.source)
        with _writing(args.out):
            result = export_rl(args.out, corpus=corpus)
    print(json.dumps(result, indent=2))
    return 0


def add_parser(sub) -> None:
    from toolgym.cli import add_command

    p = sub.add_parser(
        "export",
        help="Export datasets: sft (cold start) or rl (prompts, GRPO groups).",
        description="Export datasets: sft (cold start) or rl (prompts, GRPO groups).",
    )
    s = p.add_subparsers(dest="export_command", metavar="SUBCOMMAND", required=True)
    a = add_command(
        s,
        "sft",
        "Successful trajectories as chat samples (JSONL, parquet) and DeepSeek-V3.2 "
        "text with the assistant spans to train on.",
        "toolgym export sft runs/oracle --out data/sft --system-prompt tools_in_reasoning",
        _sft,
    )
    a.add_argument("run", help="a run folder")
    a.add_argument("--out", required=True)
    a.add_argument("--min-reward", type=float, default=1.0)
    a.add_argument(
        "--system-prompt",
        help="reasoning | tools | tools_in_reasoning (the cold-start prompts), or your own text",
    )
    a.add_argument("--no-thinking", action="store_true", help="render without thinking mode")
    a.add_argument("--tokenizer", help="a local tokenizer folder: adds input_ids and labels (-100 masked)")
    b = add_command(
        s,
        "rl",
        "verl-style RL prompt rows from a corpus; from a run also GRPO groups with advantages R - mean(R).",
        "toolgym export rl ./corpus --out data/rl       # prompt rows of a corpus\n"
        "toolgym export rl runs/v32 --out data/grpo      # and GRPO groups of a run (several samples per task)",
        _rl,
    )
    b.add_argument("source", help="a corpus (synthesis output, env store, 'reference') or a run folder")
    b.add_argument("--out", required=True)
    b.add_argument("--corpus", help="for a run folder: its corpus (default: the one the run recorded)")
