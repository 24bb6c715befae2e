"""`toolgym envs import-mcp` and `toolgym envs serve-mcp`: MCP both ways. `add_mcp_parsers(envs_subparsers)` adds
both to the `envs` command."""

from __future__ import annotations

import json


def _import(args) -> int:
    from toolgym.synth.importers.mcp import import_mcp, parse_env, summary

    env_dir = import_mcp(
        args.command,
        args.id,
        args.out,
        lib=args.lib,
        requirements=args.requirement,
        state_tool=args.state_tool,
        state_arguments=json.loads(args.state_arguments) if args.state_arguments else None,
        description=args.description,
        domain=args.domain,
        env=parse_env(args.env),
        preload=not args.no_preload,
        verify=args.verify,
        tasks=args.tasks,
        category=args.category,
    )
    info = summary(env_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    read = set(info["read_only"])
    print(f"{env_dir}: {len(info['tools'])} tools from the MCP server")
    for name in info["tools"]:
        print(f"  [{'read' if name in read else 'write':<5}] {name}")
    if not (env_dir / "tasks.jsonl").exists():
        print(
            f"add tasks in {env_dir / 'tasks.jsonl'} (with reference solutions), then `toolgym envs validate`"
        )
    if args.requirement:
        print(f"prepare the sandbox image once: toolgym sandbox build-image --with {env_dir}")
    return 0


def _serve(args) -> int:
    import sys

    from toolgym.envs.mcp_serve import serve_mcp

    verdict = serve_mcp(args.env, args.task, backend=args.backend)
    if verdict is not None:  # stdout is the MCP channel: the verdict goes to stderr
        print(f"toolgym: reward {verdict['reward']:g} ({verdict['reason']})", file=sys.stderr)
    return 0


def add_mcp_parsers(sub) -> None:
    """Add `import-mcp` and `serve-mcp` to the subparsers of `toolgym envs`."""
    from toolgym.cli import add_command

    im = add_command(
        sub,
        "import-mcp",
        "Wrap an MCP server (stdio) as an environment: its tools from tools/list, one server process per "
        "episode inside the sandbox.",
        "toolgym envs import-mcp --command 'python3 -m mcp_server_time --local-timezone UTC' --id mcp-time \\\n"
        "    --out ./store --requirement mcp==2.3.0 --requirement mcp-server-time==2026.10.19\n"
        "toolgym envs import-mcp --command 'python3 -m notes_server' --id notes --out ./store \\\n"
        "    --lib ./servers --requirement mcp==2.3.0 --state-tool list_notes \\\n"
        "    --tasks notes_tasks.jsonl --verify notes_verify.py",
        _import,
    )
    im.add_argument("--command", required=True, help="the server's command line (split as a shell would)")
    im.add_argument("--id", required=True, help="the environment id (its folder name in the store)")
    im.add_argument("--out", required=True, help="the env store to write into")
    im.add_argument(
        "--lib", help="a folder copied to the env's lib/ (the server's own source, on PYTHONPATH)"
    )
    im.add_argument(
        "--requirement",
        action="append",
        default=[],
        metavar="REQ",
        help="a pip line the sandbox image needs (repeat; pin them: name==version)",
    )
    im.add_argument(
        "--state-tool", help="a read-only tool whose result is the server's state (for verifiers)"
    )
    im.add_argument("--state-arguments", help="the state tool's arguments, as a JSON object")
    im.add_argument("--description", help="the system prompt (default: the server's instructions)")
    im.add_argument("--domain", help="the environment's domain (default: the server's name)")
    im.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="a variable of the server"
    )
    im.add_argument(
        "--no-preload",
        action="store_true",
        help="do not record and preload the modules a Python server imports (each episode then imports them)",
    )
    im.add_argument("--verify", help="a verify.py to copy in (default: state_equals and answer_contains)")
    im.add_argument("--tasks", help="a tasks.jsonl to copy in")
    im.add_argument(
        "--category",
        default="general",
        choices=["general", "code_interpreter", "code"],
        help="general (the default) for tools that act on data; code_interpreter or code for a server whose tools "
        "run what the agent writes (a shell, a Python runner): its sandbox then counts as running agent code",
    )
    im.add_argument("--json", action="store_true", help="machine-readable output")
    sv = add_command(
        sub,
        "serve-mcp",
        "Serve one episode of an environment as an MCP server on stdio: its tools, the task as instructions, "
        "toolgym_submit for the verdict. Tools run in a sandbox.",
        "toolgym envs serve-mcp order_desk --task order_desk-001 --backend docker\n"
        '# an MCP client config: {"command": "toolgym", "args": ["envs", "serve-mcp", "order_desk"]}',
        _serve,
    )
    sv.add_argument("env", help="an environment id (or toolgym/<id>, or a folder path)")
    sv.add_argument("--task", help="the task id (default: the environment's first task)")
    sv.add_argument("--backend", default="auto", choices=["auto", "docker", "namespace"])
