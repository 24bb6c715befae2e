"""Any MCP server (stdio) as a toolgym environment: its tools are what its `tools/list` says, and every episode
runs the server, inside the sandbox, as a process of its own (`toolgym_mcp.McpToolset`).

    from toolgym.synth.importers.mcp import import_mcp
    import_mcp("python3 -m notes_server", "notes", "./store", lib="./servers", state_tool="list_notes")

The importer starts the server once on the host with the MCP Python SDK's stdio client, reads its tools, and
writes env.json (category "general", schema_check "lenient": the server's inputSchema as each tool's
parameters, its outputSchema as `returns`), tools.py (the toolset), lib/ (the server's source, from `lib`) and
the requirements the sandbox image needs. Tasks are the user's: a tasks.jsonl beside env.json.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolgym.envs.inside.toolgym_mcp import python_program
from toolgym.envs.spec import EnvLimits, EnvSpec, Provenance, ToolSchema, load_tasks, write_env_spec

IMPORTER_VERSION = "1"
"""Bumped when the files this importer writes change for the same server and arguments."""
PRELOAD_MODULE = "_toolgym_mcp_preload"
"""The module in lib/ that imports what the server imported by the end of its handshake (the zygote loads it)."""
START_TIMEOUT_S = 60.0
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ENV_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")

RECORDER = r"""
import atexit, runpy, signal, sys
_out, _kind, _target = sys.argv[1:4]
_before = set(sys.modules)


def _record():
    with open(_out, "w") as f:
        f.write("\n".join(name for name in list(sys.modules) if name not in _before))


atexit.register(_record)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
sys.argv = [_target, *sys.argv[4:]]
if _kind == "m":
    runpy.run_module(_target, run_name="__main__", alter_sys=True)
else:
    exec(compile(_target, "<string>", "exec"), {"__name__": "__main__"})
"""
"""Runs a Python server as `python -m`/`-c` would, and writes the modules it imported when it exits."""

VERIFY_PY = '''"""Verifiers of an imported MCP environment. A task names one with its params (`verifier`, `params`).

`ctx.turns[-1]["state"]["mcp"]` is the MCP server's state at the episode's end: the result of the import's state
tool (None without one). The built-in `toolgym:ground_truth` verifier (no verify.py needed) replays a task's
reference calls on a fresh server and compares states and results.
"""


def final_state(ctx):
    return ctx.turns[-1]["state"].get("mcp") if ctx.turns else None


def state_equals(ctx, answer, calls, expected):
    """The server's state at the end equals `expected` (what the state tool returns)."""
    state = final_state(ctx)
    return (1.0, "the state is as expected") if state == expected else (0.0, "the state differs from the expected")


def answer_contains(ctx, answer, calls, text):
    """The final answer contains `text` (case and spacing do not count)."""
    norm = lambda s: " ".join(str(s or "").split()).casefold()  # noqa: E731
    return (1.0, "the answer gives it") if norm(text) in norm(answer) else (0.0, f"the answer does not give {text!r}")
'''


class McpImportError(ValueError):
    """A problem the user can fix (a server that does not start, an unknown state tool, a bad id); one sentence
    naming the fix."""


@dataclass
class McpServerListing:
    """What the server said about itself at import."""

    tools: list[dict]
    """Its tools as `tools/list` gives them (camelCase keys, as on the wire)."""
    server_info: dict
    instructions: str | None
    protocol_version: str
    modules: list[str]
    """The modules a Python server had imported by the end of its handshake (empty for other programs)."""


def _record_modules(path: Path) -> list[str]:
    """The modules worth preloading: what the server imported, in the order it imported them (so importing
    each in turn replays its imports as they happened: an extension module loaded before the package that
    loads it can break it), without the program itself."""
    if not path.exists():
        return []
    names = [n for n in path.read_text().split("\n") if n]
    return [n for n in names if n not in ("__main__", "__mp_main__") and not n.endswith(".__main__")]


def list_server(
    command: list[str],
    *,
    lib: Path | None = None,
    env: dict | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> McpServerListing:
    """Start the server on the host with the MCP SDK's stdio client, do the handshake, list its tools, stop it."""
    import anyio

    try:
        from mcp import ClientSession, StdioServerParameters, stdio_client
    except ModuleNotFoundError:
        raise McpImportError(
            "the MCP Python SDK is not installed; run `pip install 'toolgym[mcp]'` (or `pip install mcp==2.3.0`)."
        ) from None
    program = python_program(command)
    with tempfile.TemporaryDirectory(prefix="toolgym-mcp-import-") as tmp:
        record = Path(tmp, "modules.txt")
        if program is not None:  # the host's interpreter (it has the SDK), under the recorder
            flags, kind, target, args = program
            executable, argv = sys.executable, [*flags, "-c", RECORDER, str(record), kind, target, *args]
        else:
            executable, argv = command[0], command[1:]
        server_env = {"PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        if lib is not None:
            server_env["PYTHONPATH"] = os.pathsep.join(
                [str(lib.resolve()), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
        params = StdioServerParameters(command=executable, args=argv, env=server_env, cwd=tmp)

        async def talk() -> tuple:
            with anyio.fail_after(timeout_s):
                async with stdio_client(params, errlog=errlog) as (read, write):
                    async with ClientSession(read, write) as session:
                        init = await session.initialize()
                        tools, cursor = [], None
                        while True:
                            from mcp.types import PaginatedRequestParams

                            page = await session.list_tools(
                                params=PaginatedRequestParams(cursor=cursor) if cursor else None
                            )
                            tools += [
                                t.model_dump(mode="json", by_alias=True, exclude_none=True)
                                for t in page.tools
                            ]
                            cursor = page.next_cursor
                            if not cursor:
                                break
            return init, tools

        with open(Path(tmp, "stderr.txt"), "w+") as errlog:
            try:
                init, tools = anyio.run(talk)
            except Exception as exc:  # noqa: BLE001 - any failure to start or talk is the user's to fix
                errlog.seek(0)
                lines = errlog.read().strip().splitlines()
                last = f" (its last words: {lines[-1][:300]})" if lines else ""
                why = str(exc) or type(exc).__name__
                raise McpImportError(
                    f"the MCP server {shlex.join(command)!r} did not answer initialize and tools/list: {why}{last}; "
                    "check that the command runs an MCP server on stdio (pass --lib for a local one)."
                ) from None
        modules = _record_modules(record) if program is not None else []
    return McpServerListing(
        tools=tools,
        server_info=init.server_info.model_dump(mode="json", by_alias=True, exclude_none=True),
        instructions=init.instructions,
        protocol_version=init.protocol_version,
        modules=modules,
    )


def tool_names(tools: list[dict]) -> dict[str, str]:
    """toolgym name -> MCP name. An MCP name that is not a valid function name (dashes, dots, too long) gets one
    with those characters as `_`, numbered where two would collide."""
    out: dict[str, str] = {}
    for tool in tools:
        name = tool["name"]
        ours = name if _NAME.match(name) else re.sub(r"[^A-Za-z0-9_]", "_", name)[:60]
        if not re.match(r"^[A-Za-z_]", ours):
            ours = "t_" + ours
        base, n = ours, 2
        while ours in out:
            ours, n = f"{base[:58]}_{n}", n + 1
        out[ours] = name
    return out


def tool_schema(name: str, tool: dict) -> ToolSchema:
    """One MCP tool as a toolgym tool: inputSchema as parameters, outputSchema as returns; "read" only where the
    server marks it readOnlyHint."""
    annotations = tool.get("annotations") or {}
    parameters = dict(tool.get("inputSchema") or {})
    parameters.setdefault("type", "object")
    parameters.setdefault("properties", {})
    description = tool.get("description") or tool.get("title") or annotations.get("title") or name
    mcp = {"name": tool["name"]}
    for key in ("title", "annotations", "_meta"):
        if tool.get(key):
            mcp[key] = tool[key]
    return ToolSchema.model_validate(
        {
            "function": {"name": name, "description": description, "parameters": parameters},
            "access": "read" if annotations.get("readOnlyHint") is True else "write",
            "returns": tool.get("outputSchema"),
            "metadata": {"mcp": mcp},
        }
    )


def tools_py(
    command: list[str],
    schemas: list[ToolSchema],
    names: dict[str, str],
    *,
    server: str,
    preload: tuple,
    state_tool: str | None,
    state_arguments: dict | None,
    env: dict | None,
) -> str:
    """The environment's tools.py: the toolset, every argument spelled out (so a reader sees what runs)."""
    tools = "".join(f"        {t.name!r}: {t.access!r},\n" for t in schemas)
    lines = [
        f'"""The tools of the MCP server {server}, imported by `toolgym envs import-mcp`: one server process per',
        'episode, started inside the sandbox (toolgym_mcp.McpToolset)."""',
        "",
        "from toolgym_mcp import McpToolset",
        "",
        "SERVER = McpToolset(",
        f"    {command!r},",
        "    tools={",
        tools + "    },",
    ]
    renamed = {ours: theirs for ours, theirs in names.items() if ours != theirs}
    if renamed:
        lines.append(f"    names={renamed!r},")
    if preload:
        lines.append(f"    preload={preload!r},")
    if state_tool:
        lines.append(f"    state_tool={state_tool!r},")
    if state_arguments:
        lines.append(f"    state_arguments={state_arguments!r},")
    if env:
        lines.append(f"    env={env!r},")
    lines.append(")")
    return "\n".join(lines) + "\n"


def _preload_py(modules: list[str]) -> str:
    names = "".join(f"    {m!r},\n" for m in modules)
    return (
        '"""What the MCP server had imported by the end of its handshake at import (`toolgym envs import-mcp`):\n'
        "loaded once in the zygote every episode's server is forked from, so none of them is imported again per\n"
        'episode. A module this sandbox lacks is skipped."""\n\n'
        f"NAMES = (\n{names})\n\n"
        "for _name in NAMES:\n"
        "    try:\n"
        "        __import__(_name)\n"
        "    except Exception:  # noqa: BLE001 - the server imports what it needs itself\n"
        "        pass\n"
    )


def import_mcp(
    command: str | list[str],
    env_id: str,
    out: str | Path,
    *,
    lib: str | Path | None = None,
    requirements: list[str] = (),
    state_tool: str | None = None,
    state_arguments: dict | None = None,
    description: str | None = None,
    domain: str | None = None,
    env: dict | None = None,
    preload: bool = True,
    verify: str | Path | None = None,
    tasks: str | Path | None = None,
    limits: EnvLimits | None = None,
    category: str = "general",
) -> Path:
    """Write `<out>/<env_id>/` for the MCP server `command` (a string is split as a shell would); the folder.

    `category`: "general" for a server whose tools act on data; "code_interpreter" or "code" for one whose tools
    run what the agent writes (a shell, a Python runner): its sandbox is then one where agent code runs (pushed,
    never mounted, reset after each episode, every agent process stopped before verification, the server
    included, so verify answers or files, not the server's own account of its state).
    `lib`: a folder copied to the env's lib/ (the server's own source; on PYTHONPATH). `requirements`: pip lines
    the sandbox image must hold (the SDK, the server's package). `state_tool`: a read-only tool whose result is
    the server's state (verifiers compare it). `preload`: record the modules a Python server imports and preload
    them in the sandbox's zygote (per-episode starts in milliseconds instead of a second). `verify`, `tasks`:
    files copied in as verify.py and tasks.jsonl (default verify.py: `state_equals`, `answer_contains`)."""
    command = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    if not command:
        raise McpImportError("the server command is empty; pass --command 'python3 -m my_server'.")
    if not _ENV_ID.match(env_id):
        raise McpImportError(
            f"{env_id!r} is not a valid environment id; use lower-case letters, digits, '_', '.' and '-'."
        )
    lib = Path(lib) if lib is not None else None
    if lib is not None and not lib.is_dir():
        raise McpImportError(f"--lib {lib} is not a folder; pass the folder that holds the server's package.")
    listing = list_server(command, lib=lib, env=env)
    if not listing.tools:
        raise McpImportError(
            f"the MCP server {shlex.join(command)!r} lists no tools; there is nothing to import."
        )
    names = tool_names(listing.tools)
    by_mcp = {t["name"]: t for t in listing.tools}
    schemas = [tool_schema(ours, by_mcp[theirs]) for ours, theirs in names.items()]
    if state_tool is not None:
        state = next((s for s in schemas if state_tool in (s.name, names[s.name])), None)
        if state is None:
            raise McpImportError(
                f"the state tool {state_tool!r} is not one of the server's tools ({', '.join(names)})."
            )
        if state.access != "read":
            raise McpImportError(
                f"the state tool {state_tool!r} is not marked read-only (readOnlyHint) by the server; a snapshot "
                "must not change the state: name a read-only tool."
            )
        state_tool = state.name
    env_dir = Path(out) / env_id
    if env_dir.exists():
        shutil.rmtree(env_dir)
    env_dir.mkdir(parents=True)
    if lib is not None:
        shutil.copytree(lib, env_dir / "lib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    modules = listing.modules if preload else []
    if modules:
        (env_dir / "lib").mkdir(exist_ok=True)
        (env_dir / "lib" / f"{PRELOAD_MODULE}.py").write_text(_preload_py(modules))
    info = listing.server_info
    server = f"{info.get('name', command[-1])} {info.get('version', '')}".strip()
    (env_dir / "tools.py").write_text(
        tools_py(
            command,
            schemas,
            names,
            server=server,
            preload=(PRELOAD_MODULE,) if modules else (),
            state_tool=state_tool,
            state_arguments=state_arguments,
            env=env,
        )
    )
    (env_dir / "verify.py").write_text(Path(verify).read_text() if verify is not None else VERIFY_PY)
    text = (
        description
        or listing.instructions
        or info.get("description")
        or f"The tools of the MCP server {server}."
    )
    spec = EnvSpec(
        id=env_id,
        category=category,
        domain=domain
        or re.sub(r"[^a-z0-9_]+", "_", str(info.get("name", "mcp")).lower()).strip("_")
        or "mcp",
        description=text,
        tools=schemas,
        limits=limits or EnvLimits(),
        provenance=Provenance(producer="import", family="mcp", seed=0, version=IMPORTER_VERSION),
        format_version=2,
        requirements=list(requirements),
        schema_check="lenient",
        metadata={
            "mcp": {
                "command": command,
                "server_info": info,
                "protocol_version": listing.protocol_version,
                **({"instructions": listing.instructions} if listing.instructions else {}),
            }
        },
    )
    write_env_spec(env_dir, spec)
    if tasks is not None:
        shutil.copyfile(tasks, env_dir / "tasks.jsonl")
        wrong = [t.id for t in load_tasks(env_dir) if t.env_id != env_id]
        if wrong:
            raise McpImportError(
                f"task {wrong[0]} of {tasks} names another env_id; set its env_id to {env_id!r}."
            )
    return env_dir


def parse_env(pairs: list[str]) -> dict[str, str]:
    """KEY=VALUE strings as a dict (the --env option)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise McpImportError(f"--env {pair!r} is not KEY=VALUE; write it as --env TZ=UTC.")
        out[key] = value
    return out


def summary(env_dir: Path) -> dict[str, Any]:
    """What an import wrote, for the command line."""
    spec = json.loads((env_dir / "env.json").read_text())
    return {
        "env": str(env_dir),
        "tools": [t["function"]["name"] for t in spec["tools"]],
        "read_only": [t["function"]["name"] for t in spec["tools"] if t.get("access") == "read"],
        "preload": (env_dir / "lib" / f"{PRELOAD_MODULE}.py").exists(),
    }
