"""`toolgym demo`: the end-to-end job on an embedded default: the doctor, a sandboxed smoke run, then a small
corpus of all four categories synthesized, rolled out (oracle and random) in sandboxes, evaluated and exported."""

from __future__ import annotations

import time


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
    from toolgym.envs.corpus import load_corpus
    from toolgym.synth.pipeline import synth_envs, synth_tasks
    from toolgym.synth.report import write_report

    out = Path(args.out)
    print(f"\n== synthesis (demo scale) -> {out / 'corpus'}")
    synth_envs(out / "corpus", seed=0, scale="demo")
    manifest = synth_tasks(out / "corpus", seed=0, scale="demo")
    print(f"  {manifest['envs']} environments, {manifest['tasks']} verified tasks")
    write_report(out / "corpus", md=out / "corpus" / "report.md", html_out=out / "corpus" / "report.html")
    print(f"  by category: {manifest['by_category']}; report {out / 'corpus' / 'report.html'}")
    for name, corpus_path in (("synth", out / "corpus"), ("reference", "reference")):
        corpus = load_corpus(corpus_path)
        for policy, factory in (("oracle", OraclePolicy), ("random", lambda: RandomPolicy(seed=0))):
            run = out / "runs" / f"{name}-{policy}"
            print(f"\n== rollout: {policy} over {len(corpus.tasks)} {name} tasks in {args.backend} sandboxes")
            stats = asyncio.run(rollout(corpus, factory, run, in_flight=8, backend=args.backend))
            rows = load_trajectories(run)
            report = evaluate(rows, ks=(1,))
            md, page = write_reports(report, rows, run / "eval")
            by_cat = ", ".join(
                f"{c} {100 * m['success_rate']:.0f}%" for c, m in report["by_category"].items()
            )
            print(
                f"  {stats.episodes} episodes at {stats.episodes_per_s:.1f}/s; success {by_cat}; report {page}"
            )
            if policy == "oracle":
                sft = export_sft(rows, out / "data" / f"{name}-sft", system_prompt="tools")
                rl = export_rl(out / "data" / f"{name}-rl", corpus=corpus, rows=rows)
                print(
                    f"  exports: {sft['samples']} SFT samples ({sft['rendered']} DeepSeek-V3.2 texts), "
                    f"{rl['prompts']} RL prompts, {rl['groups']} GRPO groups -> {out / 'data'}"
                )
    print(
        "\n"
        + json.dumps(
            {"corpus": str(out / "corpus"), "runs": str(out / "runs"), "data": str(out / "data")}, indent=2
        )
    )


def add_parser(sub) -> None:
    from toolgym.cli import add_command

    p = add_command(sub, "demo", "Run the end-to-end demo on an embedded default.", "toolgym demo", run)
    p.add_argument("--backend", default="auto", choices=["auto", "docker", "namespace"])
    p.add_argument("--out", default="out/demo", help="where the corpus, runs and datasets go")
