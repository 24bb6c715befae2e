"""`toolgym envs ...`: list the known environments, show one, validate a folder, print the env.json schema."""

from __future__ import annotations

import json
import sys


def _list(args) -> int:
    from toolgym.envs import list_envs, load_tasks

    rows = []
    for entry, spec in list_envs(category=args.category, domain=args.domain):
        rows.append(
            {
                "id": spec.id,
                "category": spec.category,
                "domain": spec.domain,
                "tools": len(spec.tools),
                "tasks": len(load_tasks(entry.path)),
                "path": str(entry.path),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no environments match; `toolgym envs list` without filters shows all")
        return 0
    print(f"{'id':<28} {'category':<17} {'domain':<16} {'tools':>5} {'tasks':>5}")
    for r in rows:
        print(f"{r['id']:<28} {r['category']:<17} {r['domain']:<16} {r['tools']:>5} {r['tasks']:>5}")
    return 0


def _show(args) -> int:
    from toolgym.envs import EnvNotFound, find_env, load_env_spec, load_tasks

    try:
        path = find_env(args.id)
    except EnvNotFound as exc:
        print(f"toolgym: {exc}", file=sys.stderr)
        return 2
    spec = load_env_spec(path)
    tasks = load_tasks(path)
    if args.json:
        print(
            json.dumps(
                {
                    "env": spec.model_dump(mode="json"),
                    "path": str(path),
                    "example_task": tasks[0].model_dump(mode="json") if tasks else None,
                },
                indent=2,
            )
        )
        return 0
    print(f"{spec.id}  ({spec.category} / {spec.domain})  {path}")
    print(spec.description)
    p = spec.provenance
    print(
        f"provenance: {p.producer}, family {p.family}, seed {p.seed}, version {p.version}; "
        f"hash {spec.content_hash[:16]}"
    )
    print(
        f"limits: {spec.limits.call_timeout_s:g} s per call, {spec.limits.max_result_chars} result chars, "
        f"{spec.limits.max_steps} steps"
    )
    print(f"\ntools ({len(spec.tools)}):")
    for t in spec.tools:
        params = t.function.parameters.get("properties", {})
        required = set(t.function.parameters.get("required", []))
        sig = ", ".join(p + ("" if p in required else "?") for p in params)
        tag = t.access + (", submit" if t.submit else "")
        print(f"  [{tag:<12}] {t.function.name}({sig}): {t.function.description}")
    print(f"\ntasks: {len(tasks)}")
    if tasks:
        t = tasks[0]
        print(f"example {t.id} (difficulty {t.difficulty}, verifier {t.verifier}):")
        for turn in t.prompt:
            print(f"  user: {turn}")
        print(f"  reference solution: {len(t.solution)} calls: " + ", ".join(c.name for c in t.solution))
    return 0


def _validate(args) -> int:
    from toolgym.envs import validate_env

    failed = 0
    for path in args.paths:
        problems = validate_env(path)
        if problems:
            failed += 1
            print(f"{path}: {len(problems)} problem(s)")
            for p in problems:
                print(f"  - {p}")
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def _schema(args) -> int:
    from toolgym.envs.spec import env_schema, task_schema

    print(json.dumps(task_schema() if args.task else env_schema(), indent=2))
    return 0


def _build_reference(args) -> int:
    from toolgym.envs import validate_env
    from toolgym.synth.reference import build_all

    for path in build_all(args.out, seed=args.seed):
        problems = validate_env(path)
        print(f"{path}: " + ("ok" if not problems else f"{len(problems)} problem(s): " + " ".join(problems)))
    return 0


def add_parser(sub) -> None:
    from toolgym.cli import add_command

    p = sub.add_parser(
        "envs",
        help="List, show, validate and import tool environments; serve one over MCP.",
        description="List, show, validate and import tool environments; serve one over MCP.",
    )
    s = p.add_subparsers(dest="envs_command", metavar="SUBCOMMAND", required=True)
    ls = add_command(
        s,
        "list",
        "List the environments of every store (user paths, default store, reference).",
        "toolgym envs list\ntoolgym envs list --category general --json",
        _list,
    )
    ls.add_argument("--category", choices=["general", "code_interpreter", "search", "code"])
    ls.add_argument("--domain")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    sh = add_command(
        s,
        "show",
        "Show one environment: its tools with read/write tags and an example task.",
        "toolgym envs show trip_planning",
        _show,
    )
    sh.add_argument("id", help="an environment id (or toolgym/<id>, or a folder path)")
    sh.add_argument("--json", action="store_true", help="machine-readable output")
    v = add_command(
        s,
        "validate",
        "Check environment folders; prints one sentence per problem, exits 1 on any.",
        "toolgym envs validate ./store/trip_planning ./store/notes",
        _validate,
    )
    v.add_argument("paths", nargs="+", metavar="PATH", help="environment folder(s), each holding env.json")
    br = add_command(
        s,
        "build-reference",
        "Build the reference environments into a store, deterministically from a seed.",
        "toolgym envs build-reference ./store --seed 1\nTOOLGYM_ENV_STORE=./store toolgym envs list",
        _build_reference,
    )
    br.add_argument("out", help="the store folder to write")
    br.add_argument("--seed", type=int, default=0)
    sc = add_command(
        s,
        "schema",
        "Print the JSON Schema of env.json (or of a task row with --task).",
        "toolgym envs schema > env.schema.json",
        _schema,
    )
    sc.add_argument("--task", action="store_true", help="the schema of a task row instead")
    # Importers and MCP: environments from the field (toolgym/commands/importers.py, toolgym/commands/mcp.py)
    from .importers import add_reasoning_gym_parser
    from .mcp import add_mcp_parsers

    add_reasoning_gym_parser(s)
    add_mcp_parsers(s)
