"""`toolgym envs import-reasoning-gym`: environments and tasks from reasoning-gym's generators (one environment
per generator, scored by the generator's own checker). `add_reasoning_gym_parser` hangs it under `toolgym envs`."""

from __future__ import annotations

import sys

EXAMPLE = """\
toolgym envs import-reasoning-gym --list
toolgym envs import-reasoning-gym --datasets leg_counting,basic_arithmetic --size 20 --seed 0 --out ./store
TOOLGYM_ENV_STORE=./store toolgym envs show rg-leg-counting"""


def _import_reasoning_gym(args) -> int:
    from toolgym.envs import default_store
    from toolgym.synth.importers.reasoning_gym import (
        REQUIREMENT,
        ReasoningGymError,
        generators,
        import_generators,
    )

    try:
        if args.list:
            found = generators()
            for name, area in found.items():
                print(f"{name:<28} {area}")
            print(
                f"{len(found)} generators; entries without a gold answer that scores 1.0 are dropped at import"
            )
            return 0
        if not args.datasets:
            print("toolgym: name the generators with --datasets a,b (see --list).", file=sys.stderr)
            return 2
        names = [n.strip() for n in args.datasets.split(",") if n.strip()]
        out = args.out or default_store()
        print(
            f"importing {len(names)} reasoning-gym generator(s), {args.size} entries each, seed {args.seed}"
        )

        def done(r) -> None:
            drops = ", ".join(f"{n}: {why}" for why, n in sorted(r.dropped.items()))
            where = str(r.path) if r.path else "nothing written"
            print(
                f"{r.name}: {r.kept} task(s)" + (f", {sum(r.dropped.values())} dropped ({drops})" if drops else "")
                + f" in {r.seconds:.1f} s -> {where}", flush=True
            )  # fmt: skip

        results = import_generators(
            names, out, size=args.size, seed=args.seed, progress=not args.quiet, on_result=done
        )
    except ReasoningGymError as exc:
        print(f"toolgym: {exc}", file=sys.stderr)
        return 2
    empty = [r.name for r in results if r.path is None]
    if empty:
        print(
            f"toolgym: {', '.join(empty)} gave no task whose gold answer scores 1.0; import other generators.",
            file=sys.stderr,
        )
        return 1
    print(f"before episodes, prepare {REQUIREMENT} for the sandbox: toolgym sandbox build-image --with {out}")
    return 0


def add_reasoning_gym_parser(envs_subparsers) -> None:
    """Add `import-reasoning-gym` to the subparsers of `toolgym envs`."""
    from toolgym.cli import add_command

    p = add_command(
        envs_subparsers,
        "import-reasoning-gym",
        "Turn reasoning-gym generators into environments (a Python tool and submit_answer) with tasks scored by "
        "each generator's own checker; deterministic for a seed. Needs `pip install 'toolgym[reasoning]'`.",
        EXAMPLE,
        _import_reasoning_gym,
    )
    p.add_argument("--list", action="store_true", help="print the available generators and exit")
    p.add_argument("--datasets", metavar="A,B", help="comma-separated generator names (see --list)")
    p.add_argument(
        "--size", type=int, default=100, help="tasks per generator (entries 0..size-1; default 100)"
    )
    p.add_argument("--seed", type=int, default=0, help="the generators' seed (default 0)")
    p.add_argument("--out", help="the env store to write (default: the default store, $TOOLGYM_ENV_STORE)")
    p.add_argument("--quiet", action="store_true", help="no per-task progress bar")
