"""The environment format: pydantic models for env.json and for task rows, the content hash, load and save.

An environment is `<store>/<env_id>/{env.json, tools.py, verify.py, state/}`; tasks of hand-built environments
live beside it in `tasks.jsonl` (synthesized ones go to parquet shards).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .messages import ToolCall

Category = Literal["general", "code_interpreter", "search", "code"]
CATEGORIES: tuple[str, ...] = ("general", "code_interpreter", "search", "code")
FORMAT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionSchema(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    """The tool's name, as the model calls it."""
    description: str
    """What the tool does, written for the model (the first paragraph of its docstring)."""
    parameters: dict[str, Any]
    """JSON Schema of the arguments object (type object, properties, required, additionalProperties false)."""


class ToolSchema(_Model):
    """One tool in the OpenAI function format, plus whether it only reads or also changes the state."""

    type: Literal["function"] = "function"
    function: FunctionSchema
    access: Literal["read", "write"] = "read"
    """"write" tools change the state; a verifier or a policy can reason about side effects with it."""
    submit: bool = False
    """Calling it ends the episode; its argument is the submitted answer."""

    @property
    def name(self) -> str:
        return self.function.name


class EnvLimits(_Model):
    call_timeout_s: float = Field(10.0, gt=0)
    """Wall-clock limit of one tool call inside the sandbox."""
    max_result_chars: int = Field(20000, gt=0)
    """A tool result longer than this is returned as a tool error asking for less."""
    max_steps: int = Field(30, gt=0)
    """Assistant turns per episode before it is truncated."""


class Provenance(_Model):
    producer: str
    """Who made it: "reference", "template", "llm", "import"."""
    family: str
    """The family or builder that made it (e.g. "trip_planning")."""
    seed: int = 0
    version: str = "1"


class EnvSpec(_Model):
    """The contents of env.json."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,127}$")
    """Unique in its store; also the folder's name and the gymnasium id's suffix (`toolgym/<id>`)."""
    category: Category
    domain: str
    description: str
    """What the environment is, shown to the model as the system prompt."""
    tools: list[ToolSchema]
    limits: EnvLimits = EnvLimits()
    provenance: Provenance
    format_version: int = FORMAT_VERSION
    content_hash: str = ""
    """sha256 over env.json without this field, tools.py, verify.py and state/ (sorted paths)."""

    def tool(self, name: str) -> ToolSchema | None:
        return next((t for t in self.tools if t.function.name == name), None)

    @property
    def submit_tool(self) -> str | None:
        return next((t.function.name for t in self.tools if t.submit), None)

    def openai_tools(self) -> list[dict]:
        """The tools as an OpenAI `tools=` list (without toolgym's access/submit tags)."""
        return [{"type": "function", "function": t.function.model_dump()} for t in self.tools]


class TaskSpec(_Model):
    """One task row: what the model is asked, how it is checked, and a reference solution that passes."""

    id: str
    env_id: str
    category: Category
    difficulty: int = Field(1, ge=1, le=10)
    prompt: list[str] = Field(min_length=1)
    """User turns; the first opens the episode, each later one follows an answer without tool calls."""
    verifier: str
    """A function in the environment's verify.py."""
    params: dict[str, Any] = {}
    """Keyword arguments of the verifier (the expected answer, ids to check, ...)."""
    solution: list[ToolCall]
    """Tool calls only (never direct reads of the state); replaying them must score 1.0."""
    answer: str | None = None
    """The final assistant text of the reference solution when it ends without a submit tool."""
    user_instructions: str | None = None
    """Who the user is and what they want, for a simulated user who talks on after the scripted turns."""
    provenance: Provenance
    features: dict[str, Any] | None = None
    """What was measured of a synthesized task (reference calls, writes, constraints, shortcuts tried, hardening
    steps; `toolgym.synth.difficulty`): its difficulty is computed from these. None for hand-written tasks."""


def env_schema() -> dict:
    """The JSON Schema of env.json (`toolgym envs schema`)."""
    return EnvSpec.model_json_schema()


def task_schema() -> dict:
    return TaskSpec.model_json_schema()


def _env_files(env_dir: Path) -> list[Path]:
    files = [env_dir / "tools.py", env_dir / "verify.py"]
    state = env_dir / "state"
    if state.is_dir():
        files += sorted(
            (p for p in state.rglob("*") if p.is_file() and "__pycache__" not in p.parts),
            key=lambda p: p.relative_to(env_dir).as_posix(),
        )
    return [p for p in files if p.is_file()]


def content_hash(env_dir: str | Path, spec: dict | EnvSpec | None = None) -> str:
    """sha256 over env.json (minus content_hash, canonical JSON) + tools.py + verify.py + state/ files."""
    env_dir = Path(env_dir)
    if spec is None:
        spec = json.loads((env_dir / "env.json").read_text())
    data = spec.model_dump(mode="json") if isinstance(spec, EnvSpec) else dict(spec)
    data.pop("content_hash", None)
    h = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    for path in _env_files(env_dir):
        h.update(b"\0" + path.relative_to(env_dir).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


class EnvFormatError(ValueError):
    """An environment folder that cannot be loaded or trusted; the message names the file and the fix."""


def load_env_spec(env_dir: str | Path) -> EnvSpec:
    """Parse `<env_dir>/env.json`; a malformed one raises EnvFormatError naming the file (OSError when missing)."""
    path = Path(env_dir, "env.json")
    try:
        return EnvSpec.model_validate_json(path.read_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise EnvFormatError(
            f"{path} is not a valid env.json ({where}: {first['msg']}); run `toolgym envs validate {env_dir}`."
        ) from None


def unsafe_files(env_dir: str | Path) -> list[str]:
    """What makes an environment folder unsafe to load: a symlink, a hard link, a device, FIFO or socket among
    env.json, tools.py, verify.py and state/ (each could make the host or the sandbox read or write a file
    outside the folder). One sentence per file; empty when it is safe."""
    env_dir = Path(env_dir)
    problems = []

    def check(path: Path) -> None:
        st = os.lstat(path)
        rel = path.relative_to(env_dir)
        if stat.S_ISLNK(st.st_mode):
            problems.append(
                f"{rel} is a symlink; environments hold plain files only: replace it with a copy."
            )
        elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            problems.append(f"{rel} is a hard link ({st.st_nlink} names); replace it with a copy.")
        elif not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            problems.append(f"{rel} is not a plain file or folder (a device, FIFO or socket); remove it.")

    for name in ("env.json", "tools.py", "verify.py", "state"):
        if os.path.lexists(env_dir / name):
            check(env_dir / name)
    state = env_dir / "state"
    if state.is_dir() and not state.is_symlink():
        for root, dirs, files in os.walk(state):  # never follows a symlinked folder
            for name in sorted(dirs + files):
                check(Path(root, name))
    return problems


def write_env_spec(env_dir: str | Path, spec: EnvSpec) -> EnvSpec:
    """Write env.json with its content hash filled in (tools.py, verify.py and state/ must be written first)."""
    env_dir = Path(env_dir)
    spec = spec.model_copy(update={"content_hash": content_hash(env_dir, spec)})
    (env_dir / "env.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2) + "\n")
    return spec


def load_tasks(env_dir: str | Path) -> list[TaskSpec]:
    """The tasks in `<env_dir>/tasks.jsonl`, sorted by id (empty when there is no such file)."""
    path = Path(env_dir, "tasks.jsonl")
    if not path.exists():
        return []
    tasks = [TaskSpec.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(tasks, key=lambda t: t.id)


def write_tasks(env_dir: str | Path, tasks: list[TaskSpec]) -> None:
    lines = [json.dumps(t.model_dump(mode="json"), sort_keys=True) for t in sorted(tasks, key=lambda t: t.id)]
    Path(env_dir, "tasks.jsonl").write_text("".join(line + "\n" for line in lines))
