"""`toolgym demo`: the end-to-end job on an embedded default: the doctor, a sandboxed smoke run, then a small
corpus of all four categories synthesized, rolled out (oracle and random) in sandboxes, evaluated and exported."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def run(args) -> int:
    import asyncio

    from toolgym.commands import doctor
    from toolgym.sandbox import Limits, SandboxPool, open_sandbox

    print("== toolgym doctor")
    if doctor.run(args) != 0:
        return 1
    print("\n== sandboxed smoke run")
    started = time.perf_counter()
    with open_sandbox(args.backend, Limits(memory_mb=256, timeout_s=5)) as sb:
        print(f"sandbox {sb} up in {time.perf_counter() - started:.2f} s")
        r = sb.run("id -un; uname -n; python3 --version")
        print(
            "  $ id -un; uname -n; python3 --version\n"
            + "".join(f"    {line}\n" for line in r.stdout.splitlines())
        )
        sb.write_file("/workspace/hello.txt", "hello from the host\n")
        print(f"  file round trip: {sb.read_file('hello.txt')!r}")
        py = sb.python()
        py.run("import math\nxs = [math.factorial(n) for n in range(10)]")
        print(f"  python cell, state kept across cells: sum(xs) = {py.run('sum(xs)').result}")
        t = sb.run("sleep 30", timeout_s=1)
        print(f"  'sleep 30' with a 1 s timeout: timed_out={t.timed_out} after {t.duration_s:.2f} s")
        n = sb.run("python3 -c \"import urllib.request as u; u.urlopen('http://1.1.1.1', timeout=2)\"")
        print(
            f"  network off: outbound request exit code {n.exit_code} ({n.stderr.strip().splitlines()[-1]})"
        )

    async def pool_episodes(n: int) -> float:
        async with SandboxPool(4, backend=args.backend) as pool:
            t0 = time.perf_counter()

            async def episode() -> None:
                async with pool.lease() as sb:
                    py = await asyncio.to_thread(sb.python)
                    for i in range(5):
                        await py.arun(f"x = {i} ** 2")

            sem = asyncio.Semaphore(4)

            async def bounded() -> None:
                async with sem:
                    await episode()

            await asyncio.gather(*(bounded() for _ in range(n)))
            return n / (time.perf_counter() - t0)

    rate = asyncio.run(pool_episodes(40))
    print(f"  warm pool of 4: 40 episodes (acquire, 5 Python cells, release) at {rate:.1f} episodes/s")
    pipeline(args)
    print("\ndemo done")
    return 0


def pipeline(args) -> None:
    """Synthesize a small corpus, roll out the oracle and the random policy in sandboxes, evaluate, export."""
    import asyncio
    import json
    from pathlib import Path

    from toolgym.agent.evaluate import evaluate, write_reports
    from toolgym.agent.export import export_rl, export_sft
    from toolgym.agent.policies import OraclePolicy, RandomPolicy
    from toolgym.agent.rollout import load_trajectories, rollout
    from toolgym.agent.viewer import build_view
    from toolgym.envs.corpus import load_corpus
    from toolgym.synth.pipeline import synth_envs, synth_tasks
    from toolgym.synth.report import write_report

    out = Path(args.out)
    print(f"\n== synthesis (demo scale) -> {out / 'corpus'}")
    synth_envs(out / "corpus", seed=0, scale="demo", progress=args.progress)
    manifest = synth_tasks(out / "corpus", seed=0, scale="demo", progress=args.progress)
    print(f"  {manifest['envs']} environments, {manifest['tasks']} verified tasks")
    write_report(out / "corpus", md=out / "corpus" / "report.md", html_out=out / "corpus" / "report.html")
    print(f"  by category: {manifest['by_category']}; report {out / 'corpus' / 'report.html'}")
    for name, corpus_path in (("synth", out / "corpus"), ("reference", "reference")):
        corpus = load_corpus(corpus_path)
        for policy, factory in (("oracle", OraclePolicy), ("random", lambda: RandomPolicy(seed=0))):
            run = out / "runs" / f"{name}-{policy}"
            print(f"\n== rollout: {policy} over {len(corpus.tasks)} {name} tasks in {args.backend} sandboxes")
            stats = asyncio.run(
                rollout(corpus, factory, run, in_flight=8, backend=args.backend, progress=args.progress)
            )
            rows = load_trajectories(run)
            report = evaluate(rows, ks=(1,))
            view = build_view(run, rows=rows)  # the report's rows open it, filtered
            md, page = write_reports(report, rows, run / "eval", view=view)
            by_cat = ", ".join(
                f"{c} {100 * m['success_rate']:.0f}%" for c, m in report["by_category"].items()
            )
            print(
                f"  {stats.episodes} episodes at {stats.episodes_per_s:.1f}/s; success {by_cat}; report {page}; "
                f"episodes {view}"
            )
            if policy == "oracle":
                sft = export_sft(rows, out / "data" / f"{name}-sft", system_prompt="tools")
                rl = export_rl(out / "data" / f"{name}-rl", corpus=corpus, rows=rows)
                print(
                    f"  exports: {sft['samples']} SFT samples ({sft['rendered']} DeepSeek-V3.2 texts), "
                    f"{rl['prompts']} RL prompts, {rl['groups']} GRPO groups -> {out / 'data'}"
                )
    if args.model_tasks > 0:
        model_stage(args, out, load_corpus(out / "corpus"))
    print(
        "\n"
        + json.dumps(
            {"corpus": str(out / "corpus"), "runs": str(out / "runs"), "data": str(out / "data")}, indent=2
        )
    )


SPARSE_PLAN = {"corpus_docs": 200, "seq_len": 256, "top_k": 64, "warmup_steps": 12, "sparse_steps": 6}
"""The demo's retrofit of the embedded model: sized to train in about a minute here (the README's numbers come
from `toolgym model retrofit default` with its defaults)."""


def sparse_default(log, progress: str = "auto") -> Path:
    """The embedded model with DSA indexers (warm-up by KL to its dense attention, then a sparse stage, on the
    bundled text), made once and cached beside the converted model, named by the dense checkpoint and the plan.
    `progress`: auto, bar, lines or none (its stages' progress on stderr)."""
    import hashlib
    import os
    import shutil

    from toolgym.agent.progress import Progress
    from toolgym.model.default import ensure_default_model
    from toolgym.model.retrofit_run import RetrofitPlan, run_retrofit

    dense = ensure_default_model(progress=log)
    key = hashlib.sha256(json.dumps([dense.name, SPARSE_PLAN], sort_keys=True).encode()).hexdigest()[:12]
    folder = dense.parent / f"{dense.name}-sparse-{key}"
    if (folder / "retrofit.json").is_file():
        return folder
    staging = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)

    def bar(name: str, total: int) -> Progress:
        return Progress(total, f"  {name}", "step", mode=progress)

    run_retrofit(RetrofitPlan(model="default", out=str(staging), **SPARSE_PLAN), bar, log)
    try:
        os.replace(staging, folder)
    except OSError:  # another demo made it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def per_category(corpus, n: int):
    """`n` tasks of every category (seeded, the same each run), with their environments."""
    return corpus.per_category(n)


def model_stage(args, out: Path, corpus) -> None:
    """The embedded real model as an agent, in this process, dense and with DSA sparse attention, on a bounded
    sample of every category: success with intervals, its trajectories' reports, and SFT/RL exports of them."""
    import asyncio

    from toolgym.agent.evaluate import bootstrap, evaluate, write_reports
    from toolgym.agent.export import export_rl, export_sft
    from toolgym.agent.local import LocalPolicy
    from toolgym.agent.loop import Budgets
    from toolgym.agent.rollout import load_trajectories, rollout
    from toolgym.agent.viewer import build_view
    from toolgym.model.retrofit import load_sparse_model

    def log(line: str) -> None:
        print(f"  {line}", flush=True)

    sample = per_category(corpus, args.model_tasks)
    print(
        f"\n== the embedded model (SmolLM2-135M-Instruct) in process: {len(sample.tasks)} tasks, dense and sparse"
    )
    sparse_dir = sparse_default(log, args.progress)
    sampling = {"max_tokens": args.model_max_tokens, "temperature": 0.0}
    # every core: here the sandboxes mostly wait on the model (a rollout's default leaves them one)
    engine = {"threads": os.cpu_count() or 1}
    success: dict[str, dict[str, float]] = {}
    for name in ("dense", "sparse"):
        if name == "dense":
            policy = LocalPolicy.from_pretrained("default", encoding="hermes", seed=0, **engine, **sampling)
        else:
            model, tokenizer = load_sparse_model(sparse_dir)
            policy = LocalPolicy(model, tokenizer, encoding="hermes", seed=0, **engine, **sampling)
        run = out / "runs" / f"model-{name}"
        try:
            stats = asyncio.run(
                rollout(
                    sample,
                    policy.fork,
                    run,
                    in_flight=len(sample.tasks),
                    backend=args.backend,
                    budgets=Budgets(max_steps=args.model_max_steps),
                    progress=args.progress,
                )
            )
        finally:
            policy.close()
        rows = load_trajectories(run)
        report = evaluate(rows, ks=(1,))
        md, page = write_reports(report, rows, run / "eval", view=build_view(run, rows=rows))
        calls = sum(1 for r in rows for m in r["messages"] if m.get("role") == "tool")
        if "overall" not in report:  # every episode failed outside the agent's reach
            failed = {str(r.get("error"))[:200] for r in rows}
            raise RuntimeError(f"the {name} model's episodes all failed as infrastructure errors: {failed}")
        overall = report["overall"]
        low, high = overall["success_ci"]
        print(
            f"  {name}: {stats.episodes} episodes in {stats.wall_s:.0f} s; success "
            f"{100 * overall['success_rate']:.0f}% (95% CI {100 * low:.0f}-{100 * high:.0f}%), {calls} tool "
            f"results; report {page}"
        )
        success[name] = {r["key"]: float(r["success"]) for r in rows}
        sft = export_sft(rows, out / "data" / f"model-{name}-sft", system_prompt="tools")  # successes only
        rl = export_rl(out / "data" / f"model-{name}-rl", corpus=sample, rows=rows)
        print(
            f"  exports: {sft['samples']} SFT samples (successful episodes), {rl['prompts']} RL prompts, "
            f"{rl['groups']} GRPO groups -> {out / 'data'}"
        )
    # the same tasks and seeds: the paired difference, with a bootstrap interval over tasks
    keys = sorted(success["dense"].keys() & success["sparse"].keys())
    diffs = [success["sparse"][k] - success["dense"][k] for k in keys]
    low, high = bootstrap(diffs)
    mean = sum(diffs) / len(diffs) if diffs else 0.0
    print(
        f"  sparse - dense success on the same {len(keys)} tasks and seeds: {100 * mean:+.0f} points "
        f"(95% bootstrap CI {100 * low:+.0f} to {100 * high:+.0f})"
    )


def add_parser(sub) -> None:
    from toolgym.cli import add_command
    from toolgym.commands.rollout import add_progress_argument

    p = add_command(
        sub,
        "demo",
        "Run the end-to-end demo on an embedded default.",
        "toolgym demo --out out/demo --model-tasks 0   # without the embedded-model stage; plain `toolgym demo` runs it",
        run,
    )
    p.add_argument("--backend", default="auto", choices=["auto", "docker", "namespace"])
    p.add_argument("--out", default="out/demo", help="where the corpus, runs and datasets go")
    p.add_argument(
        "--model-tasks",
        type=int,
        default=2,
        help="tasks per category for the embedded real model, dense and sparse (0: skip that stage)",
    )
    p.add_argument("--model-max-steps", type=int, default=2, help="model turns per episode of that stage")
    p.add_argument("--model-max-tokens", type=int, default=96, help="tokens per model turn of that stage")
    add_progress_argument(p)
