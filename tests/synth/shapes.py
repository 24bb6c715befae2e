"""Test helpers for general-family shapes: build a shape's environments alone, admit its candidates through a
real env server (in this process: trusted, fast), and check what every shape must show."""

from __future__ import annotations

import json
import re
from pathlib import Path

from toolgym.envs import replay
from toolgym.envs.runtime import LocalEnvServer
from toolgym.synth.admission import admit
from toolgym.synth.general import FAMILY, shapes

SNAKE = re.compile(r"\b[a-z]+_[a-z_]+\b")
BAD_ARTICLE = re.compile(r"\b[aA] (?=[aeiouAEIOU])|\b[aA]n (?=[bcdfgjklmnpqrstvwxyzBCDFGJKLMNPQRSTVWXYZ])")


def build(shape: str, tmp_path: Path, indexes=(0, 1, 2), seed: int = 0) -> list[tuple[tuple, Path]]:
    """(key, env dir) of a shape's variants `indexes`, built into tmp_path."""
    assert shape in shapes(), f"no shape {shape!r}; have {sorted(shapes())}"
    return [((shape, i), FAMILY.build_env(tmp_path, (shape, i), seed)) for i in indexes]


def tools_of(env_dir: Path) -> tuple[str | None, list[dict]]:
    spec = json.loads((env_dir / "env.json").read_text())
    submit = next((t["function"]["name"] for t in spec["tools"] if t.get("submit")), None)
    return submit, [{"type": "function", "function": t["function"]} for t in spec["tools"]]


def admitted(key: tuple, env_dir: Path, n: int = 30, seed: int = 0):
    """(candidates proposed, admission Outcome) for one environment, replayed in this process."""
    cands = FAMILY.make_tasks(env_dir, key, seed, n)
    submit, tools = tools_of(env_dir)
    ops = LocalEnvServer(env_dir)
    try:
        outcome = admit(
            ops, [(f"{FAMILY.env_id(key)}-{i:03d}", c) for i, c in enumerate(cands)], submit, tools
        )
    finally:
        ops.close()
    return cands, outcome


def score(env_dir: Path, task: dict, calls, answer=None) -> float:
    """The reward of one scripted episode (calls: ToolCalls or {"name", "arguments"} dicts)."""
    ops = LocalEnvServer(env_dir)
    try:
        return replay(ops, task, calls, answer)["reward"]
    finally:
        ops.close()


def prompt_problems(text: str) -> list[str]:
    """What reads as generated in a prompt: snake_case identifiers, a/an before the wrong sound."""
    bare = re.sub(r"\S+@\S+", " ", text)  # emails may hold underscores
    out = [f"snake_case {m!r}" for m in SNAKE.findall(bare)]
    out += [f"article before {text[m.end() : m.end() + 12]!r}" for m in BAD_ARTICLE.finditer(text)]
    return out
