"""What a synthesis family is: a module that builds environments of one category and candidate tasks over them.

The pipeline (`pipeline.py`) knows families only through this contract, so a new family is a new module added to
`FAMILIES`. Every family module defines:

    NAME: str                 the family's name, used in env ids' prefixes and provenance ("search")
    CATEGORY: str             one of envs.spec.CATEGORIES
    VERSION: str              bumped when its output changes for the same seed
    SCALES: dict[str, tuple[int, int]]
                              scale ("tiny" | "demo" | "small" | "full") -> (environments, candidate tasks per environment)
    plan(scale) -> list[tuple]
                              the family's environment keys (JSON-able tuples), in a fixed order; len == SCALES[0]
    env_id(key) -> str        the environment's id (and folder name); unique across all families
    domain(key) -> str        the domain it counts under in the manifest
    build_env(store, key, seed) -> Path
                              write `<store>/<env_id>/` (env.json with this CATEGORY, tools.py, verify.py, state/)
                              deterministically from (key, seed)
    make_tasks(env_dir, key, seed, n_tasks) -> list[dict]
                              at most n_tasks candidate tasks, each a dict with:
                                template: str      "search/two_hop/1": family/kind/prompt-variant
                                difficulty: int    1..5, the ladder (>= 3 levels per family)
                                prompt: list[str]  user turns
                                verifier: str      a function of the env's verify.py
                                params: dict       its keyword arguments
                                solution: list[ToolCall]   tool calls only; replaying them must score 1.0
                                answer: str | None the final assistant text (None when a submit tool ends it)
                                guess: str         a plausible wrong answer for the submit-a-guess check

Every candidate then goes through the same validation in the pipeline: reference 1.0, do-nothing 0, guess 0,
random-tool policy recorded (any win drops the task), exact and near-duplicate prompts removed.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from types import ModuleType

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"

NAMES = ("general", "search", "code_interpreter", "code")


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


def families(only: list[str] | tuple[str, ...] | None = None) -> dict[str, ModuleType]:
    """name -> family module (all, or the ones in `only`), in the order the pipeline runs them."""
    import importlib

    unknown = sorted(set(only or ()) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown family {', '.join(unknown)}; the families are {', '.join(NAMES)}")
    return {n: importlib.import_module(f"{__package__}.{n}") for n in NAMES if not only or n in only}


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
