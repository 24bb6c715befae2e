"""`toolgym train sft|grpo`: small, honest trainers on toolgym's own runs and environments, with held-out
success measured through the real rollout path before and after."""

from __future__ import annotations

import json
import time


def _log(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def category_list(text: str) -> list[str] | None:
    """`--categories search,code` as a list (None for an empty one: every category)."""
    return [c.strip() for c in text.split(",") if c.strip()] or None


def _eval_settings(args):
    from toolgym.agent.training import EvalSettings

    return EvalSettings(
        per_category=args.eval_tasks,
        max_difficulty=args.max_difficulty,
        max_steps=args.max_steps,
        max_tokens=args.max_tokens,
        in_flight=args.in_flight,
        seed=args.seed,
        encoding=args.encoding,
        categories=args.categories,
    )


def _summary(report: dict) -> None:
    if "compare" in report:
        print("\ncategory            episodes   before    after     diff (95% CI)")
        for c, g in report["compare"].items():
            print(
                f"{c:<20}{g['episodes']:>8}  {100 * g['before']:6.1f}%  {100 * g['after']:6.1f}%  "
                f"{100 * g['diff']:+6.1f} ({100 * g['diff_ci_low']:+.1f} to {100 * g['diff_ci_high']:+.1f})"
            )
    print(json.dumps({"report": report.get("report_html"), "model": report.get("model_out")}, indent=2))


def _sft(args) -> int:
    from toolgym.agent.training import SFTJob, train_sft

    job = SFTJob(
        model=args.model,
        data=args.data,
        out=args.out,
        held_out=args.held_out,
        eval=_eval_settings(args),
        epochs=args.epochs,
        lr=args.lr,
        batch_tokens=args.batch_tokens,
        max_seq_tokens=args.max_seq_tokens,
        max_samples=args.max_samples,
        backend=args.backend,
        seed=args.seed,
        skip_before=args.skip_before,
        before_from=args.before_from,
        detach_prompt=args.detach_prompt,
    )
    _summary(train_sft(job, _log))
    return 0


def _grpo(args) -> int:
    from toolgym.agent.training import GRPOJob, train_grpo

    job = GRPOJob(
        model=args.model,
        corpus=args.corpus,
        out=args.out,
        held_out=args.held_out,
        eval=_eval_settings(args),
        iterations=args.iterations,
        tasks_per_iteration=args.tasks,
        group_size=args.group,
        temperature=args.temperature,
        lr=args.lr,
        kl_coef=args.kl,
        max_difficulty=args.max_difficulty,
        categories=args.categories,
        backend=args.backend,
        seed=args.seed,
    )
    _summary(train_grpo(job, _log))
    return 0


def _common(p) -> None:
    p.add_argument(
        "--model",
        default="default",
        help="a Hugging Face checkpoint folder, or 'default' (SmolLM2-135M-Instruct)",
    )
    p.add_argument(
        "--out", required=True, help="writes OUT/model, OUT/report.json, OUT/report.html and the runs"
    )
    p.add_argument(
        "--held-out", help="a corpus to measure success on (e.g. `toolgym synth split`'s held_out)"
    )
    p.add_argument("--eval-tasks", type=int, default=24, help="held-out tasks per category (default 24)")
    p.add_argument("--max-difficulty", type=int, help="only tasks up to this difficulty level (1-5)")
    p.add_argument(
        "--categories",
        type=category_list,
        metavar="CAT[,CAT]",
        help="only tasks of these categories (e.g. search,code): the held-out measurement, SFT's samples, "
        "GRPO's training tasks",
    )
    p.add_argument("--max-steps", type=int, default=8, help="model turns per episode (default 8)")
    p.add_argument("--max-tokens", type=int, default=256, help="tokens per model turn (default 256)")
    p.add_argument("--in-flight", type=int, default=12, help="episodes at once (default 12)")
    p.add_argument("--encoding", default="hermes", choices=["hermes", "deepseek_v32"])
    p.add_argument("--backend", default="auto", help="sandbox backend (docker, namespace, auto)")
    p.add_argument("--seed", type=int, default=0)


def add_parser(sub) -> None:
    from toolgym.cli import add_command

    p = sub.add_parser(
        "train",
        help="Fine-tune a model on toolgym data: sft (cold start) or grpo (environment rewards).",
        description="Fine-tune a model on toolgym data: sft (cold start) or grpo (environment rewards).",
    )
    s = p.add_subparsers(dest="train_command", metavar="SUBCOMMAND", required=True)
    a = add_command(
        s,
        "sft",
        "Supervised fine-tuning on runs' successful trajectories (loss on the assistant's own tokens), with "
        "held-out success before and after.",
        "toolgym synth split ./corpus --out ./split\n"
        "toolgym rollout ./split/train --policy oracle --out runs/train-oracle\n"
        "toolgym train sft --data runs/train-oracle --held-out ./split/held_out --out runs/sft \\\n"
        "    --max-samples 2 --max-seq-tokens 1024 --eval-tasks 1 --max-steps 1 --max-tokens 32   # a small run: docs/training.md",
        _sft,
    )
    a.add_argument(
        "--data", nargs="+", required=True, help="run folders whose successful episodes are the samples"
    )
    a.add_argument("--epochs", type=int, default=1)
    a.add_argument("--lr", type=float, default=5e-5)
    a.add_argument("--batch-tokens", type=int, default=4096, help="padded tokens per optimizer step")
    a.add_argument("--max-seq-tokens", type=int, default=3072, help="leave out trajectories longer than this")
    a.add_argument("--max-samples", type=int, help="at most this many trajectories, balanced over categories")
    a.add_argument(
        "--detach-prompt",
        action="store_true",
        help="run each batch's prompt up to its first trained token without gradient (a KV cache the rest "
        "attends to): about 1.5x the tokens/s; the prompt's own representations are not trained",
    )
    a.add_argument("--skip-before", action="store_true", help="do not measure the model before training")
    a.add_argument(
        "--before-from",
        metavar="SFT_OUT",
        help="reuse the before-training measurement of an earlier SFT job (same model, held-out corpus "
        "and evaluation settings; refused otherwise): compare data mixes against one baseline",
    )
    _common(a)
    b = add_command(
        s,
        "grpo",
        "GRPO with environment rewards: G sandboxed rollouts per task from the current policy, advantages "
        "R - mean(R), unbiased KL, off-policy masking; reward and held-out success per iteration.",
        "toolgym train grpo --model runs/sft/model --corpus ./split/train --held-out ./split/held_out \\\n"
        "    --out runs/grpo --iterations 1 --tasks 2 --group 2 --eval-tasks 1 --max-steps 1 --max-tokens 32",
        _grpo,
    )
    b.add_argument("--corpus", required=True, help="the training tasks")
    b.add_argument("--iterations", type=int, default=2)
    b.add_argument("--tasks", type=int, default=8, help="tasks per iteration (spread over categories)")
    b.add_argument("--group", type=int, default=4, help="rollouts per task (G)")
    b.add_argument("--temperature", type=float, default=0.8, help="sampling temperature of the rollouts")
    b.add_argument("--lr", type=float, default=1e-6)
    b.add_argument("--kl", type=float, default=0.02, help="KL coefficient")
    _common(b)
