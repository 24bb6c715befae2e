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
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from .messages import ToolCall

Category = Literal["general", "code_interpreter", "search", "code"]
CATEGORIES: tuple[str, ...] = ("general", "code_interpreter", "search", "code")
FORMAT_VERSION = 2
ENV_FILES = ("env.json", "tools.py", "verify.py", "state", "lib")
"""What an environment folder holds: `lib/` (modules, packages and data files tools.py imports) is optional."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _OPTIONAL: ClassVar[tuple[str, ...]] = ()
    """Fields added in format 2: left out of the serialized form while they hold their default, so every file of
    format 1 (and its content hash) stays byte for byte what it was."""

    @model_serializer(mode="wrap")
    def _drop_defaults(self, handler):
        data = handler(self)
        for name in self._OPTIONAL:
            if name in data and data[name] == type(self).model_fields[name].get_default(
                call_default_factory=True
            ):
                del data[name]
        return data


class FunctionSchema(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    """The tool's name, as the model calls it."""
    description: str
    """What the tool does, written for the model (the first paragraph of its docstring)."""
    parameters: dict[str, Any]
    """JSON Schema of the arguments object (type object, properties, required, additionalProperties false)."""
    strict: bool | None = None
    """OpenAI's strict-mode flag, kept as a foreign schema sends it."""

    _OPTIONAL: ClassVar[tuple[str, ...]] = ("strict",)


class ToolSchema(_Model):
    """One tool in the OpenAI function format, plus whether it only reads or also changes the state."""

    type: Literal["function"] = "function"
    function: FunctionSchema
    access: Literal["read", "write"] = "read"
    """"write" tools change the state; a verifier or a policy can reason about side effects with it."""
    submit: bool = False
    """Calling it ends the episode; its argument is the submitted answer."""
    returns: dict[str, Any] | None = None
    """JSON Schema of the result, where the tool's author gave one (an MCP outputSchema, a benchmark's doc)."""
    check_arguments: bool = True
    """Check the arguments against `parameters` before the tool runs (the default). False hands them to the tool
    as the model wrote them: for foreign tools whose own code (or ground truth) accepts more than their doc says."""
    metadata: dict[str, Any] = {}
    """Free-form data of the tool's author or importer; toolgym never reads it."""

    _OPTIONAL: ClassVar[tuple[str, ...]] = ("returns", "check_arguments", "metadata")

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
    format_version: int = 1
    """1 for environments that use nothing of format 2 (requirements, metadata, lenient schemas, lib/, turns)."""
    content_hash: str = ""
    """sha256 over env.json without this field, tools.py, verify.py, state/ and lib/ (sorted paths)."""
    requirements: list[str] = []
    """pip requirement lines (pin them: `name==version`) installed into a derived sandbox image ahead of time
    (`toolgym sandbox build-image --with ENV_DIR`), never at episode time; tools.py and verify.py import them."""
    schema_check: Literal["strict", "lenient"] = "strict"
    """"strict": every tool's schema equals the one its signature and docstring give (toolgym's own envs).
    "lenient": the env ships its own schemas (an imported benchmark, an MCP server's list_tools) and validation
    checks they are compatible with the code: the same tools and parameters, required ones required."""
    metadata: dict[str, Any] = {}
    """Free-form data of the author or importer (the benchmark's name and version, a source URL, ...)."""

    _OPTIONAL: ClassVar[tuple[str, ...]] = ("requirements", "schema_check", "metadata")

    def tool(self, name: str) -> ToolSchema | None:
        return next((t for t in self.tools if t.function.name == name), None)

    @property
    def submit_tool(self) -> str | None:
        return next((t.function.name for t in self.tools if t.submit), None)

    def openai_tools(self) -> list[dict]:
        """The tools as an OpenAI `tools=` list (without toolgym's access/submit tags)."""
        return [{"type": "function", "function": t.function.model_dump()} for t in self.tools]


TURN_ROLES = ("system", "developer", "user")


class TurnSpec(_Model):
    """One user turn of a multi-turn task: what the user says, what the agent may use, and the ground truth."""

    prompt: str | list[dict[str, Any]]
    """The user's message, or a list of messages (roles system, developer, user) that open the turn."""
    tools: list[str] | None = None
    """The tools the agent has in this turn (None: all of the environment's); a call of another is refused."""
    max_steps: int | None = Field(None, gt=0)
    """Assistant turns this user turn may take; past it the next user turn begins (the episode's own limit stays)."""
    solution: list[ToolCall] = []
    """The reference calls of this turn (empty: the right reply makes no call, e.g. a request it cannot do)."""
    answer: str | None = None
    """The reference solution's final text of this turn."""

    @model_validator(mode="after")
    def _check_messages(self) -> TurnSpec:
        if isinstance(self.prompt, list):
            if not self.prompt:
                raise ValueError("a turn's message list is empty; give at least one user message")
            for i, m in enumerate(self.prompt):
                if m.get("role") not in TURN_ROLES or not isinstance(m.get("content"), str):
                    raise ValueError(
                        f"message {i} of a turn must have a role of {', '.join(TURN_ROLES)} and a string content"
                    )
        return self

    def messages(self) -> list[dict]:
        """The turn's opening messages, in the chat format."""
        if isinstance(self.prompt, str):
            return [{"role": "user", "content": self.prompt}]
        return [{"role": m["role"], "content": m["content"]} for m in self.prompt]

    def text(self) -> str:
        """What the user says in this turn (the last user message of a list)."""
        users = [m["content"] for m in self.messages() if m["role"] == "user"]
        return users[-1] if users else self.messages()[-1]["content"]


class TaskSpec(_Model):
    """One task row: what the model is asked, how it is checked, and a reference solution that passes.

    A multi-turn task gives `turns` (each with its messages, tools, step budget and ground truth); `prompt`,
    `solution` and `answer` are then derived from them. A single-turn task gives `prompt` and `solution`."""

    id: str
    env_id: str
    category: Category
    difficulty: int = Field(1, ge=1, le=10)
    prompt: list[str] = []
    """User turns; the first opens the episode, each later one follows an answer without tool calls."""
    verifier: str
    """A function in the environment's verify.py, or a built-in one (`toolgym:ground_truth`)."""
    params: dict[str, Any] = {}
    """Keyword arguments of the verifier (the expected answer, ids to check, ...)."""
    solution: list[ToolCall] = []
    """Tool calls only (never direct reads of the state); replaying them must score 1.0."""
    answer: str | None = None
    """The final assistant text of the reference solution when it ends without a submit tool."""
    turns: list[TurnSpec] | None = None
    """The task's user turns with per-turn tools, budgets and ground truth (multi-turn tasks)."""
    config: dict[str, Any] | None = None
    """The episode's initial configuration, handed to the environment's toolsets when the episode starts (a
    benchmark's `initial_config`). Not shown to the agent."""
    metadata: dict[str, Any] = {}
    """Free-form data of the author or importer (the source benchmark's id, its category, ...)."""
    user_instructions: str | None = None
    """Who the user is and what they want, for a simulated user who talks on after the scripted turns."""
    provenance: Provenance
    features: dict[str, Any] | None = None
    """What was measured of a synthesized task (reference calls, writes, constraints, shortcuts tried, hardening
    steps; `toolgym.synth.difficulty`): its difficulty is computed from these. None for hand-written tasks."""

    _OPTIONAL: ClassVar[tuple[str, ...]] = ("turns", "config", "metadata")

    @model_validator(mode="after")
    def _derive_from_turns(self) -> TaskSpec:
        if self.turns is not None:
            if not self.turns:
                raise ValueError("turns is empty; give at least one turn (or leave turns out)")
            # The single-turn view every older reader uses: the user texts, all reference calls, the last answer.
            object.__setattr__(self, "prompt", [t.text() for t in self.turns])
            object.__setattr__(self, "solution", [c for t in self.turns for c in t.solution])
            object.__setattr__(self, "answer", self.turns[-1].answer)
        elif not self.prompt:
            raise ValueError("a task needs a prompt (its user turns) or turns")
        return self

    def turn_list(self) -> list[TurnSpec]:
        """The task as turns: its own, or (single-turn form) the first prompt with the whole solution and answer,
        then each later prompt with none."""
        if self.turns is not None:
            return list(self.turns)
        first = TurnSpec(prompt=self.prompt[0], solution=self.solution, answer=self.answer)
        return [first] + [TurnSpec(prompt=p) for p in self.prompt[1:]]

    def verify_params(self) -> dict[str, Any]:
        """What the verifier is called with: `params`, plus for a built-in verifier the ground truth by turn."""
        if not self.verifier.startswith(BUILTIN_PREFIX):
            return dict(self.params)
        return {**self.params, "turns": ground_truth_turns(self)}


BUILTIN_PREFIX = "toolgym:"
"""Verifier names that start with it are toolgym's own (`toolgym_env.BUILTIN_VERIFIERS`), not verify.py's."""


def ground_truth_turns(task: TaskSpec) -> list[list[dict]]:
    """The reference calls of each turn as plain {"name", "arguments"} dicts (what a built-in verifier replays)."""
    return [[{"name": c.name, "arguments": c.arguments} for c in t.solution] for t in task.turn_list()]


def env_schema() -> dict:
    """The JSON Schema of env.json (`toolgym envs schema`)."""
    return EnvSpec.model_json_schema()


def task_schema() -> dict:
    return TaskSpec.model_json_schema()


def _env_files(env_dir: Path) -> list[Path]:
    files = [env_dir / "tools.py", env_dir / "verify.py"]
    for folder in ("state", "lib"):
        if (env_dir / folder).is_dir():
            files += sorted(
                (p for p in (env_dir / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts),
                key=lambda p: p.relative_to(env_dir).as_posix(),
            )
    return [p for p in files if p.is_file()]


def content_hash(env_dir: str | Path, spec: dict | EnvSpec | None = None) -> str:
    """sha256 over env.json (minus content_hash, canonical JSON) + tools.py + verify.py + state/ and lib/ files."""
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
    env.json, tools.py, verify.py, state/ and lib/ (each could make the host or the sandbox read or write a file
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

    for name in ENV_FILES:
        if os.path.lexists(env_dir / name):
            check(env_dir / name)
    for folder in ("state", "lib"):
        top = env_dir / folder
        if top.is_dir() and not top.is_symlink():
            for root, dirs, files in os.walk(top):  # never follows a symlinked folder
                for name in sorted(dirs + files):
                    check(Path(root, name))
    return problems


def uses_format_2(env_dir: Path, spec: EnvSpec) -> bool:
    """Whether an environment needs a reader of format 2: a lib/ folder, or a format-2 field of env.json set."""
    data = spec.model_dump(mode="json")
    tool_fields = set(ToolSchema._OPTIONAL) | set(FunctionSchema._OPTIONAL)
    used = any(k in data for k in EnvSpec._OPTIONAL) or any(
        k in t or k in t["function"] for t in data["tools"] for k in tool_fields
    )
    return used or (env_dir / "lib").is_dir()


def write_env_spec(env_dir: str | Path, spec: EnvSpec) -> EnvSpec:
    """Write env.json with its content hash filled in (tools.py, verify.py, state/ and lib/ must be written first).
    An environment that uses anything of format 2 is marked `format_version` 2."""
    env_dir = Path(env_dir)
    if spec.format_version < 2 and uses_format_2(env_dir, spec):
        spec = spec.model_copy(update={"format_version": 2})
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
