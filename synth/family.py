"""What a synthesis family is: a producer of environments of one category and candidate tasks over them.

The pipeline (`pipeline.py`) knows families only through `Family`, so a new family is a new subclass registered
in `NAMES`. A family fixes everything about a variant from `variant_config(key, seed)` alone, writes its
environment with `build_env`, and proposes `Candidate` tasks with `make_tasks`; the pipeline's admission
(`admission.py`) then replays every candidate through the env server and keeps the ones that pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import jinja2
from toolgym.envs.schema import load_tools_module, tools_from_module
from toolgym.envs.spec import EnvLimits, EnvSpec, Provenance, TaskSpec, ToolCall, write_env_spec

TEMPLATES = Path(__file__).resolve().parent / "templates"

NAMES = ("general", "search", "code_interpreter", "code")

Key = tuple
"""An environment key: a JSON-able tuple, e.g. ("retail", 3); the family's `plan` lists them in order."""


@dataclass
class Candidate:
    """A task a family proposes; admission decides whether it is kept."""

    template: str
    """"search/two_hop/1": family/kind/prompt-variant (kept as the task's provenance version)."""
    difficulty: int
    """1..5, the family's ladder."""
    prompt: list[str]
    """User turns."""
    verifier: str
    """A function of the environment's verify.py."""
    params: dict[str, Any]
    """Its keyword arguments."""
    solution: list[ToolCall]
    """Tool calls only; replaying them must score 1.0."""
    answer: str | None
    """The final assistant text (None when a submit tool ends the episode)."""
    guess: str = ""
    """A plausible wrong answer, for the submit-a-guess check."""
    user_instructions: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Family-private working data (e.g. the computed value behind an answer); never written to a task."""

    def task(self, id: str, env_id: str, category: str, provenance: Provenance) -> TaskSpec:
        """The task row of a kept candidate (the pipeline's admitted ones, a reference builder's fixed ones)."""
        return TaskSpec(
            id=id,
            env_id=env_id,
            category=category,
            difficulty=self.difficulty,
            prompt=self.prompt,
            verifier=self.verifier,
            params=self.params,
            solution=self.solution,
            answer=self.answer,
            user_instructions=self.user_instructions,
            provenance=provenance,
        )


class Family:
    """The contract every family implements (class attributes and methods; instances hold no state)."""

    NAME: ClassVar[str]
    """The family's name, used in env ids and provenance ("search")."""
    CATEGORY: ClassVar[str]
    """One of envs.spec.CATEGORIES."""
    VERSION: ClassVar[str]
    """Bumped when its output changes for the same seed."""
    SCALES: ClassVar[dict[str, tuple[int, int]]]
    """scale ("tiny" | "demo" | "small" | "full") -> (environments, candidate tasks per environment)."""

    def plan(self, scale: str) -> list[Key]:
        """The environment keys of a scale, in a fixed order; len == SCALES[scale][0]."""
        raise NotImplementedError

    def env_id(self, key: Key) -> str:
        """The environment's id (and folder name); unique across all families."""
        raise NotImplementedError

    def domain(self, key: Key) -> str:
        """The domain it counts under in the manifest."""
        raise NotImplementedError

    def variant_config(self, key: Key, seed: int) -> dict:
        """Everything a variant fixes (tool shape, rules, data parameters), from (key, seed) alone."""
        raise NotImplementedError

    def build_env(self, store: Path, key: Key, seed: int) -> Path:
        """Write `<store>/<env_id>/` (env.json, tools.py, verify.py, state/) deterministically from (key, seed)."""
        raise NotImplementedError

    def make_tasks(self, env_dir: Path, key: Key, seed: int, n_tasks: int) -> list[Candidate]:
        """At most n_tasks candidates over the built environment."""
        raise NotImplementedError

    def harden(
        self, env_dir: Path, key: Key, seed: int, candidate: Candidate, reason: str
    ) -> Candidate | None:
        """A harder version of `candidate`, which admission dropped as too easy for `reason` ("too_easy_random",
        "shortcut_<name>"): more constraints, distractors or steps. It goes through the whole admission again
        and, if kept, records the step. None (the default): this family does not harden."""
        return None

    def candidate(self, kind: str, variant: int, **fields: Any) -> Candidate:
        """A candidate of this family; its template is "<NAME>/<kind>/<prompt variant>"."""
        return Candidate(template=f"{self.NAME}/{kind}/{variant}", **fields)

    def write_spec(
        self, out: Path, key: Key, seed: int, description: str, limits: EnvLimits | None = None
    ) -> Path:
        """The last step of `build_env`: env.json of the environment written into `out`, with this family's
        provenance."""
        domain = self.domain(key)
        provenance = Provenance(
            producer="template", family=f"{self.NAME}/{domain}", seed=seed, version=self.VERSION
        )
        write_spec(out, self.env_id(key), self.CATEGORY, domain, description, provenance, limits)
        return out


def write_spec(
    out: Path,
    env_id: str,
    category: str,
    domain: str,
    description: str,
    provenance: Provenance,
    limits: EnvLimits | None = None,
) -> EnvSpec:
    """Write `<out>/env.json` (tools.py, verify.py and state/ already written): the tool schemas come from the
    tool functions themselves, the content hash from every file. Families and reference builders alike."""
    spec = EnvSpec(
        id=env_id,
        category=category,
        domain=domain,
        description=description,
        tools=tools_from_module(load_tools_module(Path(out) / "tools.py")),
        limits=limits or EnvLimits(),
        provenance=provenance,
    )
    return write_env_spec(out, spec)


def asked(candidates: list[Candidate], prompt: list[str]) -> bool:
    """Whether one of `candidates` already asks `prompt` (the same `dedupe_key`): no producer proposes a question
    twice for one environment."""
    key = dedupe_key(prompt)
    return any(dedupe_key(c.prompt) == key for c in candidates)


def dedupe_key(prompt: list[str]) -> str:
    """The exact-duplicate key of a task: its first user turn, lower-cased, whitespace collapsed."""
    return " ".join(prompt[0].lower().split())


@cache
def jinja(trim: bool = False) -> jinja2.Environment:
    """The jinja2 environment over every family's templates (`synth/templates/<family>/`). Strict: a missing
    variable is an error, never an empty string. `trim=True` lets block tags take their own line with them, so
    rendered code reads as if written by hand."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=trim,
        lstrip_blocks=trim,
    )


@cache
def prompt_template(text: str, trim: bool = False) -> jinja2.Template:
    """A prompt template from its text (compiled once)."""
    return jinja(trim).from_string(text)


def render_prompt(text: str, **slots: Any) -> str:
    """The one way a family turns a prompt template (jinja2 syntax) and its slots into text."""
    return prompt_template(text).render(**slots)


def families(only: list[str] | tuple[str, ...] | None = None) -> dict[str, Family]:
    """name -> family (all, or the ones in `only`), in the order the pipeline runs them."""
    import importlib

    unknown = sorted(set(only or ()) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown family {', '.join(unknown)}; the families are {', '.join(NAMES)}")
    return {n: importlib.import_module(f"{__package__}.{n}").FAMILY for n in NAMES if not only or n in only}


def distinctness_key(env_dir) -> str:
    """hash(tool signatures) + hash(rules: the description and verify.py) + hash(data: every state/ file):
    no two environments of a corpus may share it."""
    return "-".join(distinctness_parts(env_dir))


def distinctness_parts(env_dir) -> tuple[str, str, str]:
    """(tool set, rules, data) hashes of an environment: the three parts of its distinctness key."""
    import hashlib
    import json
    from pathlib import Path

    env_dir = Path(env_dir)
    spec = json.loads((env_dir / "env.json").read_text())
    sig = json.dumps([t["function"] for t in spec["tools"]], sort_keys=True).encode()
    verify = env_dir / "verify.py"
    rules = spec["description"].encode() + b"\0" + (verify.read_bytes() if verify.exists() else b"")
    data = hashlib.sha256()
    state = env_dir / "state"
    for p in sorted(state.rglob("*")) if state.is_dir() else []:
        if p.is_file():
            data.update(p.relative_to(state).as_posix().encode() + b"\0" + p.read_bytes())
    return hashlib.sha256(sig).hexdigest()[:16], hashlib.sha256(rules).hexdigest()[:16], data.hexdigest()[:16]
