"""`toolgym rollout`: a policy over a task set in sandboxes, into sharded parquet trajectories (resumable)."""

from __future__ import annotations

import asyncio
import functools
import os
import sys


def policy_factory(args):
    """A zero-argument factory of fresh policies (each in-flight worker gets its own)."""
    from toolgym.agent.policies import GiveUpPolicy, OraclePolicy, RandomPolicy

    if args.policy == "oracle":
        return OraclePolicy
    if args.policy == "give_up":
        return GiveUpPolicy
    if args.policy == "random":
        return functools.partial(RandomPolicy, seed=args.seed)
    if args.policy == "local":
        return local_policy(args).fork
    if not (args.base_url and args.model):
        raise ValueError("--policy llm needs --base-url and --model (start a server with `toolgym serve`).")
    from toolgym.agent.served_policy import ServedPolicy

    if (args.encoding or "chat") == "chat":
        from toolgym.agent.template_check import require_tools_in_chat_template

        # a chat template that drops `tools` would hide them from the model, and nothing would say so
        require_tools_in_chat_template(args.base_url, args.model, timeout_s=args.request_timeout)
    # picklable, so Ray actors on other machines build the same policy (each process its own HTTP client)
    return ServedPolicy(
        args.base_url,
        args.model,
        encoding=args.encoding or "chat",
        thinking=args.thinking,
        max_concurrency=args.in_flight,
        timeout_s=args.request_timeout,
        sampling={"max_tokens": args.max_tokens, "temperature": args.temperature},
    )


def local_policy(args):
    """The in-process model of `--policy local` (its engine is shared by every worker's fork)."""
    from toolgym.agent.local import LocalPolicy

    if not args.model:
        raise ValueError(
            "--policy local needs --model: a checkpoint folder, or 'default' for the embedded model."
        )
    encoding = args.encoding or "hermes"
    if encoding == "chat":
        raise ValueError(
            "--policy local renders prompts itself: use --encoding hermes or --encoding deepseek_v32."
        )
    return LocalPolicy.from_pretrained(
        args.model,
        encoding=encoding,
        thinking=args.thinking,
        seed=args.seed,
        max_batch=getattr(args, "max_batch", None) or args.in_flight,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        top_p=getattr(args, "top_p", 1.0),
    )


def run(args) -> int:
    from toolgym.agent.loop import Budgets
    from toolgym.agent.rollout import rollout
    from toolgym.agent.runstore import RunFolderError
    from toolgym.envs.corpus import load_corpus

    corpus = load_corpus(args.corpus).select(env_ids=args.env, category=args.category, limit=args.limit)
    budgets = Budgets(max_steps=args.max_steps)
    if args.ray and args.policy == "local":
        print(
            "toolgym: --policy local runs the model inside this process, which Ray actors on other nodes cannot "
            "share; serve it (`toolgym serve`) and use --policy llm --base-url URL with --ray",
            file=sys.stderr,
        )
        return 2
    try:
        factory = policy_factory(args)
    except (ValueError, FileNotFoundError) as exc:
        if os.environ.get("TOOLGYM_DEBUG"):
            raise
        print(f"toolgym: {exc}", file=sys.stderr)
        return 2
    if args.ray:
        return run_on_ray(args, corpus, factory, budgets)
    try:
        stats = asyncio.run(
            rollout(
                corpus,
                factory,
                args.out,
                **run_settings(args, budgets),
            )
        )
    except RunFolderError as exc:
        # another rollout holds --out, or it cannot be written: one sentence; what was committed stays
        if os.environ.get("TOOLGYM_DEBUG"):
            raise
        print(f"toolgym: {exc}", file=sys.stderr)
        return 2
    finally:
        close = getattr(getattr(factory, "__self__", None), "close", None)
        if close is not None:  # the local engine's worker thread
            close()
    print_stats(stats, args.out)
    return 0


def run_settings(args, budgets) -> dict:
    """What a local and a Ray rollout take alike from the command line."""
    from toolgym.envs import IN_PROCESS

    return {
        "samples_per_task": args.samples_per_task,
        "in_flight": args.in_flight,
        "backend": IN_PROCESS if args.backend == "inprocess" else args.backend,
        "budgets": budgets,
        "episode_timeout_s": args.episode_timeout,
        "seed": args.seed,
        "progress": args.progress,
        "retry_infra": not args.no_retry_infra,
    }


def print_stats(stats, out, extra: str = "") -> None:
    print(
        f"{stats.episodes} episodes ({stats.skipped} already done) in {stats.wall_s:.1f} s "
        f"({stats.episodes_per_s:.1f}/s): {stats.successes} succeeded, {stats.timeouts} timed out, "
        f"{stats.infra_errors} infrastructure failures after {stats.infra_retries} retries{extra} -> {out}"
    )


def run_on_ray(args, corpus, factory, budgets) -> int:
    """The same rollout on a Ray cluster (`--ray`); Ray is imported only here."""
    from toolgym.agent.cluster import ClusterError
    from toolgym.agent.ray_rollout import ray_rollout
    from toolgym.agent.runstore import RunFolderError

    try:
        stats = ray_rollout(
            corpus,
            factory,
            args.out,
            address=args.ray,
            cpus_per_actor=args.ray_cpus_per_actor,
            **run_settings(args, budgets),
        )
    except (RunFolderError, ClusterError) as exc:
        if os.environ.get("TOOLGYM_DEBUG"):
            raise
        print(f"toolgym: {exc}", file=sys.stderr)
        return 2
    ray = stats.ray
    print_stats(
        stats,
        args.out,
        f"; Ray: {ray['actors_started']} actors ({ray['actors_lost']} lost), {ray['ray_retries']} chunks re-run",
    )
    return 0


def add_parser(sub) -> None:
    from toolgym.cli import add_command

    p = add_command(
        sub,
        "rollout",
        "Run a policy over a task set in sandboxes; write trajectories (resumable: run it again).",
        "toolgym rollout reference --policy oracle --out runs/oracle\n"
        "toolgym rollout ./corpus --policy llm --base-url http://127.0.0.1:8000 --model DeepSeek-V3.2 \\\n"
        "    --encoding deepseek_v32 --thinking --samples-per-task 4 --limit 20 --out runs/v32\n"
        "toolgym rollout reference --policy local --model default --limit 4 --max-steps 2 --max-tokens 64 "
        "--out runs/local\n"
        "toolgym rollout ./corpus --policy oracle --ray local --in-flight 4 --limit 40 --out runs/oracle-ray"
        "   # --ray auto joins a running cluster",
        run,
    )
    p.add_argument("corpus", help="a synthesis output, an env store, or 'reference'")
    p.add_argument(
        "--out", required=True, help="the run folder (re-running resumes it; one rollout at a time writes it)"
    )
    p.add_argument(
        "--policy",
        choices=["oracle", "random", "give_up", "llm", "local"],
        default="oracle",
        help="oracle: the reference solutions; random: random tools; give_up: answers with no tool call; "
        "llm: a model behind a server; local: a model run in this process (in sandboxes like any model)",
    )
    add_policy_arguments(
        p,
        inprocess="inprocess: no sandbox, tools on this host: refused for --policy llm (trusted policies only)",
    )
    p.add_argument("--samples-per-task", type=int, default=1, help="G rollouts per task (GRPO groups)")
    p.add_argument("--env", action="append", help="only these environment ids (repeatable)")
    p.add_argument("--category", choices=["general", "code_interpreter", "search", "code"])
    p.add_argument("--limit", type=int, help="only the first N tasks")
    p.add_argument("--seed", type=int, default=0)
    add_progress_argument(p)
    p.add_argument(
        "--ray",
        metavar="auto|local|ADDRESS",
        help="run the episodes on Ray actors (one per node, each with its own sandbox pool of --in-flight): "
        "auto joins the running cluster (RAY_ADDRESS or `ray start`), local starts a one-node cluster here, "
        "or a cluster address; needs pip install -e '.[ray]'",
    )
    p.add_argument(
        "--ray-cpus-per-actor",
        type=int,
        metavar="N",
        help="with --ray: one actor per N CPUs of each node (default: one actor per node)",
    )
    p.add_argument(
        "--no-retry-infra",
        action="store_true",
        help="on resume, keep episodes recorded as infrastructure failures (default: run them again)",
    )


def add_progress_argument(p) -> None:
    """`--progress auto|bar|lines|none` (args.progress), with `--no-progress` kept as `--progress none`."""
    from toolgym.agent.progress import MODES

    p.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="auto (default): a bar on a terminal, else a line every 10 s on stderr (counts, rate, success, "
        "ETA); bar; lines; none",
    )
    p.add_argument(
        "--no-progress",
        dest="progress",
        action="store_const",
        const="none",
        help="the same as --progress none",
    )


def add_policy_arguments(p, *, inprocess: str) -> None:
    """The model and episode options a command that runs a policy takes (`rollout`, `synth filter`);
    `policy_factory(args)` reads them."""
    p.add_argument(
        "--base-url",
        help="OpenAI-compatible server for --policy llm, or several: URL[=CAP],URL[=CAP] (per-server "
        "concurrency caps, failover); with --ray every node must reach them",
    )
    p.add_argument(
        "--model",
        help="--policy llm: the served model name; --policy local: a checkpoint folder (Hugging Face or "
        "toolgym DSALM) or 'default' (the embedded model)",
    )
    p.add_argument(
        "--encoding",
        choices=["chat", "deepseek_v32", "hermes"],
        help="chat (the default for --policy llm): the server's chat template; otherwise raw completions "
        "rendered by us (hermes is the default for --policy local)",
    )
    p.add_argument("--thinking", action="store_true", help="thinking mode (reasoning kept across tool calls)")
    p.add_argument("--max-tokens", type=int, default=4096)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling, for --policy local")
    p.add_argument(
        "--max-batch", type=int, help="--policy local: sequences decoded together (default: --in-flight)"
    )
    p.add_argument("--in-flight", type=int, default=8, help="episodes at once (and sandboxes in the pool)")
    p.add_argument(
        "--backend", default="auto", choices=["auto", "docker", "namespace", "inprocess"], help=inprocess
    )
    p.add_argument("--max-steps", type=int, default=30)
    p.add_argument("--episode-timeout", type=float, default=600.0, help="seconds per episode")
    p.add_argument(
        "--request-timeout",
        type=float,
        default=120.0,
        help="seconds one model request may take; past it the server counts as hung (an infrastructure failure)",
    )
