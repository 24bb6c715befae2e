"""Static validation of an environment folder: one sentence per problem, each naming the fix.

Checks env.json against the format, tools.py against env.json's schemas, that verify.py has every verifier a
task names, that state/ loads (SQLite files open and pass an integrity check), that reference solutions call
known tools with valid arguments, and that the content hash is current.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from pydantic import ValidationError

from .inside.envserver import validate_arguments
from .schema import check_tools, load_tools_module
from .spec import BUILTIN_PREFIX, FORMAT_VERSION, EnvSpec, TaskSpec, content_hash, unsafe_files


def _pydantic_sentences(where: str, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        if err["type"] == "missing":
            out.append(f"{where}: the required field '{loc}' is missing; add it.")
        elif err["type"] == "extra_forbidden":
            out.append(f"{where}: '{loc}' is not a field of the format; remove it.")
        else:
            out.append(f"{where}: field '{loc}' is invalid ({err['msg']}); fix its value.")
    return out


def _check_state(env_dir: Path) -> list[str]:
    problems = []
    state = env_dir / "state"
    if not state.exists():
        return problems
    for path in sorted(state.rglob("*")):
        if path.suffix not in (".sqlite", ".db") or not path.is_file():
            continue
        rel = path.relative_to(env_dir)
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                conn.close()
            if ok != "ok":
                problems.append(f"state file {rel} fails SQLite's integrity check ({ok}); rebuild it.")
        except sqlite3.Error as exc:
            problems.append(f"state file {rel} is not a loadable SQLite database ({exc}); rebuild it.")
    return problems


def _load_module(path: Path, name: str, problems: list[str], env_dir: Path):
    if not path.exists():
        problems.append(f"{path.name} is missing; every environment needs one.")
        return None
    try:
        return load_tools_module(path, name)
    except ModuleNotFoundError as exc:
        where = "lib/" if (env_dir / "lib").is_dir() else "a lib/ folder"
        problems.append(
            f"{path.name} does not import: no module named {exc.name!r}; put it in {where}, or list its package "
            "in env.json's requirements and install them on this host."
        )
    except Exception as exc:  # noqa: BLE001 - any import failure is one sentence for the author
        problems.append(f"{path.name} does not import ({type(exc).__name__}: {exc}); fix the module.")
    return None


def check_task(task: TaskSpec, spec: EnvSpec, verify_module) -> list[str]:
    """Problems of one task row against its environment."""
    problems = []
    where = f"task {task.id}"
    if task.env_id != spec.id:
        problems.append(f"{where}: env_id is {task.env_id!r} but the environment is {spec.id!r}; fix env_id.")
    if task.category != spec.category:
        problems.append(
            f"{where}: category {task.category!r} differs from the environment's {spec.category!r}."
        )
    if task.verifier.startswith(BUILTIN_PREFIX):
        from .inside.envserver import BUILTIN_VERIFIERS

        if task.verifier[len(BUILTIN_PREFIX) :] not in BUILTIN_VERIFIERS:
            known = ", ".join(BUILTIN_PREFIX + k for k in BUILTIN_VERIFIERS)
            problems.append(f"{where}: there is no built-in verifier {task.verifier!r}; use one of {known}.")
    elif verify_module is None:
        problems.append(f"{where}: names verifier {task.verifier!r}, but there is no verify.py; add one.")
    elif not callable(getattr(verify_module, task.verifier, None)):
        problems.append(
            f"{where}: names verifier {task.verifier!r}, which verify.py does not define; "
            "add it to verify.py or fix the name."
        )
    step = 0
    for t, turn in enumerate(task.turn_list()):
        for name in turn.tools or []:
            if spec.tool(name) is None:
                problems.append(
                    f"{where}: turn {t + 1} offers unknown tool {name!r}; use the environment's tools."
                )
        for call in turn.solution:
            step += 1
            tool = spec.tool(call.name)
            if tool is None:
                problems.append(
                    f"{where}: reference solution step {step} calls unknown tool {call.name!r}; "
                    "use one of the environment's tools."
                )
                continue
            if turn.tools is not None and call.name not in turn.tools:
                problems.append(
                    f"{where}: reference solution step {step} calls {call.name!r}, which turn {t + 1} does not "
                    "offer; add it to that turn's tools."
                )
            if not tool.check_arguments:
                continue
            err = validate_arguments(call.name, tool.function.parameters, call.arguments)
            if err:
                problems.append(f"{where}: reference solution step {step}: {err}.")
    return problems


def validate_env(env_dir: str | Path, tasks: list[TaskSpec] | None = None) -> list[str]:
    """Every problem of the environment at `env_dir` (and its tasks.jsonl or `tasks`); empty when it is valid."""
    env_dir = Path(env_dir)
    if not env_dir.is_dir():
        return [f"{env_dir} is not a folder; pass the path of an environment folder (it holds env.json)."]
    problems: list[str] = unsafe_files(env_dir)
    if problems:  # nothing else is read from a folder that could point outside itself
        return problems
    spec = None
    try:
        raw = json.loads((env_dir / "env.json").read_text())
        spec = EnvSpec.model_validate(raw)
    except FileNotFoundError:
        problems.append("env.json is missing; every environment needs one.")
    except json.JSONDecodeError as exc:
        problems.append(f"env.json is not valid JSON ({exc.msg} at line {exc.lineno}); fix the file.")
    except ValidationError as exc:
        problems += _pydantic_sentences("env.json", exc)
    tools_module = _load_module(env_dir / "tools.py", "tools", problems, env_dir)
    verify_module = None
    if (env_dir / "verify.py").exists():  # optional where every task uses a built-in verifier
        verify_module = _load_module(env_dir / "verify.py", "verify", problems, env_dir)
    problems += _check_state(env_dir)
    if spec is not None:
        if spec.format_version > FORMAT_VERSION:
            problems.append(
                f"env.json has format_version {spec.format_version}, newer than this toolgym reads "
                f"({FORMAT_VERSION}); upgrade toolgym."
            )
        for line in spec.requirements:
            if not line.strip() or "\n" in line or line.strip().startswith(("-", "#")):
                problems.append(
                    f"requirement {line!r} is not a requirement line; write one package per entry, e.g. "
                    "'mpmath==1.3.0'."
                )
        if spec.id != env_dir.name:
            problems.append(
                f"env.json's id {spec.id!r} differs from the folder name {env_dir.name!r}; rename one."
            )
        if sum(t.submit for t in spec.tools) > 1:
            problems.append("more than one tool is marked submit; keep exactly one submit tool or none.")
        if tools_module is not None:
            problems += check_tools(spec, tools_module)
        if spec.content_hash and spec.content_hash != content_hash(env_dir, spec):
            problems.append(
                "the content hash in env.json is out of date; rewrite env.json with write_env_spec()."
            )
    task_file = env_dir / "tasks.jsonl"
    if tasks is None and task_file.exists():
        tasks = []
        for n, line in enumerate(task_file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                tasks.append(TaskSpec.model_validate_json(line))
            except ValidationError as exc:
                problems += _pydantic_sentences(f"tasks.jsonl line {n}", exc)
    if spec is not None:
        for task in tasks or []:
            problems += check_task(task, spec, verify_module)
    return problems
