"""`toolgym synth envs|tasks|report|filter`: template-synthesized environments, validated task shards, their
report, and the model-in-the-loop filter (tasks kept by a policy's measured pass@k)."""

from __future__ import annotations

import hashlib
import json
import os
import sys


def _on_ray(args, run):
    """`run()`, on the Ray cluster `--ray` names when given (Ray is imported only then); a cluster that cannot
    be joined is one sentence and exit 2."""
    if not args.ray:
        return run()
    from toolgym.agent.cluster import ClusterError, disconnect

    try:
        return run()
    except ClusterError as exc:
        if os.environ.get("TOOLGYM_DEBUG"):
            raise
        print(f"toolgym: {exc}", file=sys.stderr)
        return 2
    finally:
        disconnect()


def _envs(args) -> int:
    from toolgym.synth.pipeline import synth_envs

    ids = _on_ray(
        args,
        lambda: synth_envs(
            args.out,
            seed=args.seed,
            scale=args.scale,
            workers=args.workers,
            only=args.only,
            progress=args.progress,
            ray=args.ray,
        ),
    )
    if isinstance(ids, int):
        return ids
    print(f"{len(ids)} environments in {args.out}/envs")
    return 0


def _tasks(args) -> int:
    from toolgym.synth.pipeline import synth_tasks

    m = _on_ray(
        args,
        lambda: synth_tasks(
            args.out,
            seed=args.seed,
            scale=args.scale,
            workers=args.workers,
            sandbox_fraction=args.sandbox_fraction,
            runtime_check=args.runtime_check,
            only=args.only,
            progress=args.progress,
            ray=args.ray,
        ),
    )
    if isinstance(m, int):
        return m
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


def _filter_source(args, corpus) -> dict:
    """What the filter read: the corpus as named, the subset asked for, and the source manifest's hash."""
    source = {"corpus": args.corpus, "only": args.only, "sample": args.sample}
    manifest = corpus.root / "manifest.json"
    if manifest.is_file():
        source["manifest_sha256"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
        made = json.loads(manifest.read_text())
        source["synthesis"] = {key: made[key] for key in ("seed", "scale") if key in made}
    return source


def _filter_policy(args) -> dict:
    """The policy as recorded (manifest and run folder): what decides its episodes, not where it is served."""
    policy: dict = {"policy": args.policy}
    if args.policy in ("llm", "local"):
        encoding = args.encoding or ("chat" if args.policy == "llm" else "hermes")
        policy.update(
            model=args.model,
            encoding=encoding,
            thinking=args.thinking,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
        )
        if args.policy == "local":
            policy["top_p"] = args.top_p
    return policy


def _filter(args) -> int:
    from toolgym.agent.loop import Budgets
    from toolgym.agent.runstore import RunFolderError
    from toolgym.commands.rollout import policy_factory
    from toolgym.envs import IN_PROCESS
    from toolgym.envs.corpus import CorpusError, load_corpus
    from toolgym.synth.filter import KeepError, filter_corpus, parse_keep

    factory = None
    try:
        keep = parse_keep(args.keep, args.k)
        if args.k < 1 or (args.samples is not None and args.samples < args.k):
            raise ValueError("--k must be at least 1, and --samples (when given) at least --k.")
        corpus = load_corpus(args.corpus)
        if args.only:
            from toolgym.envs.corpus import Corpus

            tasks = [t for t in corpus.tasks if t.category in args.only]
            corpus = Corpus(corpus.root, corpus.env_dirs, tasks).select()
        if args.sample is not None:
            corpus = corpus.select(sample=args.sample, seed=args.seed)
        if not corpus.tasks:
            raise CorpusError(f"{args.corpus} holds no tasks of {', '.join(args.only or [])}; check --only.")
        factory = policy_factory(args)
        manifest = filter_corpus(
            corpus,
            factory,
            args.out,
            k=args.k,
            keep=keep,
            policy=_filter_policy(args),
            samples=args.samples,
            seed=args.seed,
            source=_filter_source(args, corpus),
            in_flight=args.in_flight,
            backend=IN_PROCESS if args.backend == "inprocess" else args.backend,
            budgets=Budgets(max_steps=args.max_steps),
            episode_timeout_s=args.episode_timeout,
            progress=False if args.progress == "none" else args.progress,  # False: the filter's notes too
        )
    except (KeepError, CorpusError, RunFolderError, ValueError, FileNotFoundError) as exc:
        if os.environ.get("TOOLGYM_DEBUG"):
            raise
        print(f"toolgym: {exc}", file=sys.stderr)
        return 2
    finally:
        close = getattr(getattr(factory, "__self__", None), "close", None)
        if close is not None:  # the local engine's worker thread
            close()
    f = manifest["filter"]
    dropped = ", ".join(f"{n} {why}" for why, n in f["dropped"].items()) or "none"
    print(
        f"kept {f['kept']} of {f['tasks']} tasks ({f['keep']}, pass@{f['k']} over {f['samples_per_task']} "
        f"episodes each); dropped: {dropped} -> {args.out}"
    )
    if f["dropped"].get("infra_error"):
        print(
            "toolgym: some tasks were not measured (infrastructure failures); run the same command again to "
            "retry their episodes",
            file=sys.stderr,
        )
        return 1
    return 0


def _split(args) -> int:
    from toolgym.envs.corpus import load_corpus
    from toolgym.synth.split import PARTS, split_corpus

    summary = split_corpus(load_corpus(args.corpus), args.out, held_out=args.held_out, seed=args.seed)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "units"}, indent=2, sort_keys=True))
        return 0
    categories = sorted({c for p in PARTS for c in summary["parts"][p]["by_category"]})
    print(f"{'part':<10} {'units':>6} {'envs':>6} {'tasks':>7}  " + "  ".join(f"{c:>16}" for c in categories))
    for part in PARTS:
        info = summary["parts"][part]
        cells = "  ".join(f"{info['by_category'].get(c, 0):>16}" for c in categories)
        print(f"{part:<10} {info['units']:>6} {info['envs']:>6} {info['tasks']:>7}  {cells}")
    for category in summary["alone"]:
        print(f"note: {category} has a single environment (or shape); all of it is in train")
    print(f"wrote {args.out}/train, {args.out}/held_out and {args.out}/split.json")
    return 0


def _add_split(s) -> None:
    from toolgym.cli import add_command

    p = add_command(
        s,
        "split",
        "Split a corpus into train and held-out by whole environments (general: by whole schema shapes), so a "
        "held-out score measures transfer; deterministic for a seed.",
        "toolgym synth split ./corpus --out ./split --held-out 0.2 --seed 0\n"
        "toolgym rollout ./split/held_out --policy oracle --out runs/held-out",
        _split,
    )
    p.add_argument("corpus", help="a synthesis output, an env store, or 'reference'")
    p.add_argument("--out", required=True, help="where train/, held_out/ and split.json go")
    p.add_argument("--held-out", type=float, default=0.2, help="the share of each category's units held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _add_filter(s) -> None:
    from toolgym.cli import add_command

    p = add_command(
        s,
        "filter",
        "Keep the tasks a policy solves sometimes: K episodes per task, pass@k measured, a filtered corpus "
        "written to OUT (resumable: run the same command again).",
        "toolgym synth filter ./corpus --out ./corpus-hard --policy llm --base-url http://127.0.0.1:8000 \\\n"
        "    --model SmolLM2-135M-Instruct --encoding hermes --k 2 --samples 8 --keep '0<pass@k<1'\n"
        "toolgym synth filter reference --out ./solvable --policy local --model default --k 2 --keep 'pass@k>0' \\\n"
        "    --sample 2 --max-steps 2 --max-tokens 64\n"
        "toolgym synth filter ./corpus --out ./o --policy oracle --k 1 --keep 'pass@k>0' --only search --sample 50",
        _filter,
    )
    p.add_argument("corpus", help="a synthesis output, an env store, or 'reference'")
    p.add_argument(
        "--out",
        required=True,
        help="the filtered corpus (envs/, tasks/, manifest.json) and its episodes (OUT/rollout/, the run folder)",
    )
    p.add_argument(
        "--policy",
        choices=["oracle", "random", "llm", "local"],
        required=True,
        help="llm: a model behind a server; local: a model in this process; oracle and random: baselines",
    )
    p.add_argument(
        "--k", type=int, required=True, help="the k of pass@k (episodes per task, unless --samples)"
    )
    p.add_argument(
        "--keep",
        required=True,
        help='which tasks to keep: "0<pass@k<1" (solved sometimes), "pass@k>0", "pass@k<=0.5", ...',
    )
    p.add_argument("--samples", type=int, help="episodes per task, at least --k (default: --k)")
    p.add_argument(
        "--only",
        nargs="+",
        metavar="CATEGORY",
        choices=["general", "search", "code_interpreter", "code"],
        help="only the tasks of these categories",
    )
    p.add_argument("--sample", type=int, help="only a seeded random sample of N tasks (after --only)")
    p.add_argument("--seed", type=int, default=0, help="episode seeds and the --sample draw")
    from toolgym.commands.rollout import add_policy_arguments, add_progress_argument

    add_policy_arguments(p, inprocess="inprocess: no sandbox (oracle and random only)")
    add_progress_argument(p)


def add_parser(sub) -> None:
    from toolgym.cli import add_command
    from toolgym.commands.rollout import add_progress_argument
    from toolgym.synth import pipeline

    p = sub.add_parser(
        "synth", help="Synthesize environments and tasks.", description="Synthesize environments and tasks."
    )
    s = p.add_subparsers(dest="synth_command", metavar="SUBCOMMAND", required=True)
    e = add_command(
        s,
        "envs",
        "Build template environments into OUT/envs.",
        "toolgym synth envs --out ./corpus --scale demo\n"
        "toolgym synth envs --out ./corpus-ray --scale tiny --ray local   # --ray auto joins a running cluster",
        _envs,
    )
    t = add_command(
        s,
        "tasks",
        "Generate, validate and dedupe tasks; write OUT/tasks/*.parquet and OUT/manifest.json.",
        "toolgym synth tasks --out ./corpus --scale demo\n"
        "toolgym synth tasks --out ./corpus-ray --scale tiny --ray local   # same files as without --ray",
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
        q.add_argument(
            "--workers",
            type=int,
            default=None,
            help="processes (default: all cores); with --ray, Ray actors (default: one per CPU of the cluster)",
        )
        q.add_argument(
            "--ray",
            metavar="auto|local|ADDRESS",
            help="run the jobs on Ray: auto joins the running cluster, local starts one here, or HOST:PORT; "
            "the files written are the same as without it (needs the ray extra)",
        )
        q.add_argument(
            "--only",
            nargs="+",
            metavar="FAMILY",
            choices=["general", "search", "code_interpreter", "code"],
            help="build only these families (default: all four)",
        )
        add_progress_argument(q)
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
    _add_filter(s)
    _add_split(s)
    t.add_argument(
        "--runtime-check",
        type=float,
        default=0.01,
        help="share of admitted tasks run again through the rollout runner in Docker (0 to skip)",
    )
