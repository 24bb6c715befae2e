"""Training benchmark: does our data make the embedded model (SmolLM2-135M-Instruct) better at held-out tasks?

    python bench/train.py [--work DIR] [--sft-samples 100] [--eval-tasks 16] [--grpo-iterations 2] [--json]
    python bench/train.py --work DIR --tag TAG --epochs 2 ...   # another SFT against the same baseline
    python bench/train.py --work DIR --speed 12                 # SFT tokens/s with and without --detach-prompt

The whole loop, each stage skipped when its output is already in --work (so a run can be resumed or a stage
re-run alone): a `small` corpus (seed 0) split by environment (`toolgym synth split`, 20% held out), oracle
rollouts of the train part in sandboxes, SFT on a balanced draw of those trajectories, held-out success
before and after on the same tasks and seeds (greedy, through the real rollout path: the local engine and
Docker sandboxes), then GRPO iterations from the SFT model with held-out success after each. It prints SFT
tokens/s, per category before / after / difference with its 95% paired bootstrap interval and the episode
count, and the GRPO curve; `--json` prints {"categories": {CATEGORY: {"before", "after", "diff",
"diff_ci_low", "diff_ci_high", "episodes"}}, "sft": {...}, "grpo": [...]}.
Goal (issue 17): the interval of the difference above 0 in at least two categories.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path


def log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def prepare(work: Path, scale: str) -> None:
    from toolgym.agent.policies import OraclePolicy
    from toolgym.agent.rollout import rollout
    from toolgym.envs.corpus import load_corpus
    from toolgym.synth.pipeline import synth_envs, synth_tasks
    from toolgym.synth.split import split_corpus

    if not (work / "corpus" / "manifest.json").is_file():
        log(f"synthesizing the {scale} corpus")
        synth_envs(work / "corpus", seed=0, scale=scale)
        synth_tasks(work / "corpus", seed=0, scale=scale)
    if not (work / "split" / "split.json").is_file():
        split_corpus(load_corpus(work / "corpus"), work / "split", held_out=0.2, seed=0)
    if not (work / "oracle" / "rollout.json").is_file():
        log("oracle rollouts of the train part in sandboxes")
        asyncio.run(
            rollout(load_corpus(work / "split" / "train"), OraclePolicy, work / "oracle", progress=False)
        )


def speed(work: Path, model_name: str, samples: int, rounds: int, max_seq_tokens: int) -> int:
    """SFT steps on real sequences of the oracle run, with the prompt's gradient and with it detached,
    alternating per round on one model: tokens/s of each and their ratio."""
    from toolgym.agent.training import (
        _round_robin,
        load_model,
        load_trajectories,
        resolve_model_path,
        sft_sequences,
    )
    from toolgym.model.finetune import sft_train

    model, tokenizer = load_model(resolve_model_path(model_name))
    rows = [r for r in load_trajectories(work / "oracle") if r["status"] == "ok" and r["difficulty"] == 1]
    seqs = []
    for r in _round_robin(rows, 0)[:samples]:
        seqs += sft_sequences([r], tokenizer, encoding="hermes", thinking=True, max_tokens=max_seq_tokens)[0]
    share = sum(s.mask.index(True) for s in seqs) / sum(len(s.ids) for s in seqs)
    log(
        f"{len(seqs)} sequences, {sum(len(s.ids) for s in seqs)} tokens, {share:.0%} before the first trained one"
    )
    rates: dict[bool, list[float]] = {False: [], True: []}
    for n in range(rounds):
        for detach in (n % 2 == 1, n % 2 == 0):
            stats = sft_train(model, seqs, lr=1e-7, pad_id=tokenizer.pad_token_id or 0, detach_prompt=detach)
            rates[detach].append(stats.tokens_per_s)
            log(f"round {n + 1}: detach_prompt={detach}: {stats.tokens_per_s:.0f} tokens/s")
    full, cut = (sorted(rates[k])[len(rates[k]) // 2] for k in (False, True))
    print("\n| SFT step | tokens/s (median of rounds) | ratio |\n|---|---:|---:|")
    print(f"| gradient through the prompt | {full:.0f} | 1.00 |")
    print(f"| prompt detached (`--detach-prompt`) | {cut:.0f} | {cut / full:.2f} |")
    return 0


def main() -> int:
    from toolgym.commands.train import category_list

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="a folder kept between runs (default: a temporary one)")
    ap.add_argument("--scale", default="small")
    ap.add_argument("--model", default="default")
    ap.add_argument("--sft-samples", type=int, default=100)
    ap.add_argument("--max-seq-tokens", type=int, default=3072)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--detach-prompt", action="store_true", help="SFT without gradient through the prompt")
    ap.add_argument(
        "--tag",
        help="SFT into WORK/sft-TAG, reusing WORK/sft's before-training measurement (same settings): "
        "another data mix or length against one baseline",
    )
    ap.add_argument("--eval-tasks", type=int, default=16, help="held-out tasks per category")
    ap.add_argument("--max-difficulty", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--grpo-iterations", type=int, default=2)
    ap.add_argument("--grpo-tasks", type=int, default=8)
    ap.add_argument(
        "--grpo-eval-tasks", type=int, default=8, help="held-out tasks per category per iteration"
    )
    ap.add_argument("--group", type=int, default=4)
    ap.add_argument(
        "--grpo-categories",
        type=category_list,
        metavar="CAT[,CAT]",
        help="GRPO's training tasks and per-iteration held-out measurement only of these categories "
        "(e.g. search: where the SFT checkpoint solves some, so groups carry signal)",
    )
    ap.add_argument("--grpo-lr", type=float, default=5e-6)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--speed",
        type=int,
        metavar="SAMPLES",
        help="only time SFT steps on this many oracle trajectories, with and without --detach-prompt",
    )
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds of --speed")
    args = ap.parse_args()

    from toolgym.agent.training import EvalSettings, GRPOJob, SFTJob, train_grpo, train_sft

    work = Path(args.work or tempfile.mkdtemp(prefix="toolgym-bench-train-"))
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, args.scale)
    if args.speed:
        return speed(work, args.model, args.speed, args.rounds, args.max_seq_tokens)
    settings = EvalSettings(
        per_category=args.eval_tasks,
        max_difficulty=args.max_difficulty,
        max_steps=args.max_steps,
        max_tokens=args.max_tokens,
        in_flight=16,
    )
    sft_dir = work / (f"sft-{args.tag}" if args.tag else "sft")
    sft_report = sft_dir / "report.json"
    if not sft_report.is_file():
        train_sft(
            SFTJob(
                model=args.model,
                data=[str(work / "oracle")],
                out=str(sft_dir),
                held_out=str(work / "split" / "held_out"),
                eval=settings,
                lr=args.lr,
                epochs=args.epochs,
                before_from=str(work / "sft")
                if args.tag and (work / "sft" / "report.json").is_file()
                else None,
                max_seq_tokens=args.max_seq_tokens,
                max_samples=args.sft_samples,
                detach_prompt=args.detach_prompt,
            ),
            log,
        )
    sft = json.loads(sft_report.read_text())
    grpo = None
    if args.grpo_iterations > 0:
        grpo_dir = work / (f"grpo-{args.tag}" if args.tag else "grpo")
        grpo_report = grpo_dir / "report.json"
        if not grpo_report.is_file():
            grpo_eval = EvalSettings(
                **{
                    **settings.__dict__,
                    "per_category": args.grpo_eval_tasks,
                    "categories": args.grpo_categories,
                }
            )
            train_grpo(
                GRPOJob(
                    model=str(sft_dir / "model"),
                    corpus=str(work / "split" / "train"),
                    out=str(grpo_dir),
                    held_out=str(work / "split" / "held_out"),
                    eval=grpo_eval,
                    iterations=args.grpo_iterations,
                    tasks_per_iteration=args.grpo_tasks,
                    group_size=args.group,
                    lr=args.grpo_lr,
                    max_difficulty=args.max_difficulty,
                    categories=args.grpo_categories,
                ),
                log,
            )
        grpo = json.loads(grpo_report.read_text())

    keys = ("before", "after", "diff", "diff_ci_low", "diff_ci_high", "episodes")
    out = {
        "categories": {c: {k: g[k] for k in keys} for c, g in sft["compare"].items()},
        "sft": {k: sft["sft"][k] for k in ("steps", "tokens", "trained_tokens", "seconds", "tokens_per_s")},
        "sft_data": {k: sft["data"][k] for k in ("rows", "by_category", "sequences", "tokens")},
        "eval_seconds": {"before": sft.get("before_s"), "after": sft.get("after_s")},
        "grpo": [
            {
                "iteration": e["iteration"],
                "train_reward": e.get("train_reward"),
                "held_out": {c: g["rate"] for c, g in e.get("held_out", {}).items()},
                "held_out_episodes": e.get("held_out", {}).get("overall", {}).get("episodes"),
                "kl": e.get("kl"),
                "masked_samples": e.get("masked_samples"),
            }
            for e in (grpo or {}).get("iterations", [])
        ],
        "work": str(work),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    s = out["sft"]
    print(
        f"SFT: {s['steps']} steps, {s['tokens']} tokens in {s['seconds']:.0f} s = {s['tokens_per_s']:.0f} tokens/s"
    )
    print("\n| category | episodes | before | after | difference (95% CI) |\n|---|---:|---:|---:|---:|")
    for c, g in out["categories"].items():
        print(
            f"| {c} | {g['episodes']} | {100 * g['before']:.1f}% | {100 * g['after']:.1f}% | "
            f"{100 * g['diff']:+.1f} ({100 * g['diff_ci_low']:+.1f} to {100 * g['diff_ci_high']:+.1f}) |"
        )
    if out["grpo"]:
        cats = sorted({c for e in out["grpo"] for c in e["held_out"]})
        print("\n| GRPO iteration | train reward | " + " | ".join(f"held-out {c}" for c in cats) + " |")
        print("|---:|---:|" + "---:|" * len(cats))
        for e in out["grpo"]:
            reward = "" if e["train_reward"] is None else f"{e['train_reward']:.3f}"
            print(
                f"| {e['iteration']} | {reward} | "
                + " | ".join(f"{100 * e['held_out'].get(c, 0):.1f}%" for c in cats)
                + " |"
            )
    met = [c for c, g in out["categories"].items() if c != "overall" and g["diff_ci_low"] > 0]
    print(f"\ncategories with the difference's interval above 0: {met or 'none'} (goal: at least two)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
