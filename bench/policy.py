"""The in-process policy against the same model served by vLLM CPU, side by side in one run (not a timed test).

On the same N tasks, seed and sampling settings, three rollouts in sandboxes: the model in this process
(`--policy local`, dense) one episode at a time (batch 1) and N in flight (batched), then the model served by
vLLM CPU (started here from .venv-vllm, stopped after) through the same raw-completions client and encoding.
Prints one table: episodes/s, completion tokens/s (over the rollout's wall time), mean batch of the local
engine, the share of its prompt tokens taken from its prefix cache, success rate with its Wilson 95% interval,
and each token rate as a ratio to vLLM's. vLLM serves in float32 like the local engine (`--vllm-dtype`; its CPU
default, bfloat16, garbles the embedded model). vLLM's start-up is not counted in its rate.
The goal (issue 15): in-process dense >= 0.5x the vLLM CPU token rate.

Run: .venv/bin/python bench/policy.py [--tasks 50] [--model default|PATH] [--in-flight 8] [--max-tokens 128]
         [--threads N] [--prefix-cache-tokens N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from toolgym.agent.clients import CompletionsClient
from toolgym.agent.evaluate import wilson
from toolgym.agent.local import DEFAULT_PREFIX_CACHE_TOKENS, LocalPolicy, resolve_model_path
from toolgym.agent.loop import Budgets
from toolgym.agent.policies import LLMPolicy
from toolgym.agent.rollout import load_trajectories, rollout
from toolgym.agent.serve import serve_command
from toolgym.envs.corpus import load_corpus

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(name: str, corpus, factory, out: Path, args, engine=None) -> dict:
    """One rollout of `factory`'s policies over the corpus: its rates and success rate."""
    budgets = Budgets(max_steps=args.max_steps)
    in_flight = 1 if name.endswith("batch 1") else args.in_flight
    before = (0, 0, 0, 0)
    if engine is not None:
        engine.prefixes.clear()  # each run starts cold: the batch-1 run's turns are the batched run's prompts
        s = engine.stats
        before = (s.steps, s.row_steps, s.prompt_tokens_reused, s.prompt_tokens)
    stats = asyncio.run(
        rollout(corpus, factory, out, in_flight=in_flight, budgets=budgets, seed=args.seed, progress=False)
    )
    rows = load_trajectories(out)
    ok = [r for r in rows if r["status"] == "ok"]
    successes = sum(bool(r["success"]) for r in ok)
    completion = sum(r["completion_tokens"] for r in rows)
    row = {
        "policy": name,
        "episodes": len(rows),
        "infra": stats.infra_errors,
        "wall_s": stats.wall_s,
        "episodes_per_s": len(rows) / stats.wall_s,
        "completion_tokens": completion,
        "tokens_per_s": completion / stats.wall_s,
        "prompt_tokens_per_s": sum(r["prompt_tokens"] for r in rows) / stats.wall_s,
        "success": successes / max(1, len(ok)),
        "ci": wilson(successes, len(ok)) if ok else (0.0, 0.0),
        "mean_batch": None,
        "reused": None,
    }
    if engine is not None:
        steps, row_steps = engine.stats.steps - before[0], engine.stats.row_steps - before[1]
        row["mean_batch"] = row_steps / steps if steps else 0.0
        prompt = engine.stats.prompt_tokens - before[3]
        row["reused"] = (engine.stats.prompt_tokens_reused - before[2]) / prompt if prompt else 0.0
    print(
        f"  {name}: {len(rows)} episodes in {stats.wall_s:.1f} s, {completion} completion tokens",
        flush=True,
    )
    return row


def start_vllm(model_dir: Path, args, log: Path) -> tuple[subprocess.Popen, str]:
    python = args.vllm_python
    if not Path(python).exists():
        raise SystemExit(f"no vLLM environment at {python}: run `make vllm-env` or pass --vllm-python.")
    port = free_port()
    argv = serve_command(
        str(model_dir),
        family="hermes",
        port=port,
        python=python,
        max_model_len=args.window,
        extra_args=["--dtype", args.vllm_dtype],
    )
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    proc = subprocess.Popen(
        argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.vllm_start_timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"vLLM exited with {proc.returncode} while starting; see {log}")
        try:
            if httpx.get(base + "/v1/models", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_vllm(proc)
            raise SystemExit(f"vLLM did not come up within {args.vllm_start_timeout:.0f} s; see {log}")
        time.sleep(1)


def stop_vllm(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the engine core processes go with it
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def table(rows: list[dict]) -> str:
    served = next((r for r in rows if r["policy"].startswith("vLLM")), None)
    lines = [
        "| policy | episodes | episodes/s | completion tok/s | prompt tok/s | mean batch | prompt reused "
        "| success (95% CI) | tok/s vs vLLM |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        ratio = (
            f"{r['tokens_per_s'] / served['tokens_per_s']:.2f}x" if served and served["tokens_per_s"] else "-"
        )
        batch = f"{r['mean_batch']:.1f}" if r["mean_batch"] is not None else "-"
        reused = f"{r['reused']:.0%}" if r["reused"] is not None else "-"
        lo, hi = r["ci"]
        lines.append(
            f"| {r['policy']} | {r['episodes']} | {r['episodes_per_s']:.3f} | {r['tokens_per_s']:.1f} | "
            f"{r['prompt_tokens_per_s']:.0f} | {batch} | {reused} | {r['success']:.1%} [{lo:.1%}, {hi:.1%}] "
            f"| {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50, help="N: the first N tasks of the corpus")
    parser.add_argument("--corpus", default="reference")
    parser.add_argument("--model", default="default", help="a Hugging Face checkpoint folder, or 'default'")
    parser.add_argument("--encoding", default="hermes", choices=["hermes", "deepseek_v32"])
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--window", type=int, default=8192, help="context window (vLLM --max-model-len)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads of the local engine"
    )
    parser.add_argument(
        "--prefix-cache-tokens",
        type=int,
        default=DEFAULT_PREFIX_CACHE_TOKENS,
        help="tokens of finished sequences the local engine keeps for prefix reuse (0: none)",
    )
    parser.add_argument(
        "--vllm-dtype", default="float32", help="vLLM --dtype (the local engine runs float32)"
    )
    parser.add_argument("--skip-batch1", action="store_true", help="leave out the batch-1 local run")
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    parser.add_argument("--vllm-start-timeout", type=float, default=600.0)
    args = parser.parse_args()

    model_dir = resolve_model_path(args.model)
    corpus = load_corpus(args.corpus).select(limit=args.tasks)
    sampling = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    print(f"{len(corpus.tasks)} tasks of {args.corpus}, model {model_dir}, {args.encoding}, {sampling}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="toolgym-bench-policy-") as tmp:
        out = Path(tmp)
        local = LocalPolicy.from_pretrained(
            model_dir,
            encoding=args.encoding,
            seed=args.seed,
            max_batch=args.in_flight,
            threads=args.threads,
            prefix_cache_tokens=args.prefix_cache_tokens,
            **sampling,
        )
        try:
            if not args.skip_batch1:
                rows.append(
                    measure("in-process dense, batch 1", corpus, local.fork, out / "b1", args, local.engine)
                )
            rows.append(
                measure(
                    f"in-process dense, {args.in_flight} in flight",
                    corpus,
                    local.fork,
                    out / "local",
                    args,
                    local.engine,
                )
            )
        finally:
            local.close()
        del local
        if not args.skip_vllm:
            proc, base = start_vllm(model_dir, args, out / "vllm.log")
            try:
                client = CompletionsClient(
                    base,
                    model_dir.name,
                    encoding=args.encoding,
                    max_concurrency=args.in_flight,
                    timeout_s=600,
                )
                rows.append(
                    measure(
                        f"vLLM CPU, {args.in_flight} in flight",
                        corpus,
                        lambda: LLMPolicy(client, thinking=False, **sampling),
                        out / "vllm",
                        args,
                    )
                )
            finally:
                stop_vllm(proc)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
