"""reasoning-gym as a task source: each chosen generator becomes one environment (a Python session and a submit
tool) with `size` tasks made from seed `seed`, scored inside the sandbox by the generator's own `score_answer`.

    from toolgym.synth.importers.reasoning_gym import import_generators
    import_generators(["leg_counting", "basic_arithmetic"], "./store", size=20, seed=0)

The same arguments give the same bytes (entries are made in a child Python with string hashing fixed). Every
task's gold answer is scored through the environment's verify.py at import time; an entry whose own answer does
not score 1.0 (or that an empty answer passes) is dropped and counted. Episodes need env.json's requirement set
prepared (`toolgym sandbox build-image --with STORE`).
"""

from __future__ import annotations

import difflib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from toolgym.agent.progress import resolve_mode, track
from toolgym.envs.schema import load_tools_module, tools_from_module
from toolgym.envs.spec import EnvLimits, EnvSpec, Provenance, TaskSpec, ToolCall, write_env_spec, write_tasks

from ..family import jinja

PACKAGE = "reasoning-gym"
VERSION = "0.1.25"
REQUIREMENT = f"{PACKAGE}=={VERSION}"
"""The one version the environments are written for: the sandbox prepares exactly this (env.json requirements),
so tasks made on the host are scored by the same code inside."""
IMPORTER_VERSION = "1"
"""Bumped when the files this importer writes change for the same arguments."""
MAX_SIZE = 100_000
"""Task ids number entries with five digits, so they sort in order."""
LIMITS = EnvLimits(call_timeout_s=130.0, max_result_chars=30000, max_steps=30)
"""The code-interpreter reference's: a Python cell may run 120 s."""
ANSWER_LINE = (
    "You may use the python tool to work it out. Then call submit_answer with your final answer alone, in the "
    "form the question asks for."
)


class ReasoningGymError(ValueError):
    """A problem the user can fix (reasoning-gym missing or of another version, an unknown generator, a bad size);
    the message is one sentence naming the fix."""


@dataclass
class GeneratorImport:
    """What importing one generator did."""

    name: str
    """The reasoning-gym generator (dataset) name."""
    env_id: str
    path: Path | None
    """The environment folder written; None when no entry was kept."""
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    """Why entries were dropped -> how many."""
    seconds: float = 0.0


def env_id_of(name: str) -> str:
    """`rg-<name>` with `_` as `-`, lower-case: the environment's id and folder name."""
    return "rg-" + name.lower().replace("_", "-")


def _package():
    """The installed reasoning_gym module, checked to be the pinned version."""
    from importlib import metadata

    try:
        installed = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        raise ReasoningGymError(
            f"{PACKAGE} is not installed; run `pip install 'toolgym[reasoning]'` (or `pip install {REQUIREMENT}`)."
        ) from None
    if installed != VERSION:
        raise ReasoningGymError(
            f"{PACKAGE} {installed} is installed but the environments pin {VERSION} (the sandbox scores with it); "
            f"run `pip install {REQUIREMENT}`."
        )
    import reasoning_gym

    return reasoning_gym


def generators() -> dict[str, str]:
    """Every generator reasoning-gym registers that makes entries on its own -> its area (arithmetic, games, ...).
    `composite` is left out: it only mixes other generators."""
    _package()
    from reasoning_gym.factory import DATASETS

    return {
        name: cls.__module__.split(".")[1] if cls.__module__.count(".") >= 2 else "other"
        for name, (cls, _) in sorted(DATASETS.items())
        if name != "composite"
    }


def check_names(names: list[str]) -> None:
    known = generators()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ReasoningGymError(
                f"reasoning-gym has no generator {name!r}; {hint}`toolgym envs import-reasoning-gym --list` "
                f"shows the {len(known)} there are."
            )


TAGS = ("__tuple__", "__set__", "__dict__", "__fraction__")


def check_size(size: int) -> None:
    if not 1 <= size <= MAX_SIZE:
        raise ReasoningGymError(
            f"--size must be between 1 and {MAX_SIZE}, not {size}; pick a size in that range."
        )


def encode(value: Any) -> Any:
    """An entry as JSON data that `decode` in verify.py turns back into the same Python values: tuples, sets,
    fractions and dicts with non-string keys are tagged (a scorer may compare with them, e.g. ARC's grids are
    tuples).
    Anything else without a JSON form raises TypeError."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"the float {value!r} has no JSON form")
        return value
    if isinstance(value, list):
        return [encode(x) for x in value]
    if isinstance(value, tuple):
        return {"__tuple__": [encode(x) for x in value]}
    if isinstance(value, Fraction):
        return {"__fraction__": [value.numerator, value.denominator]}
    if isinstance(value, set | frozenset):
        items = [encode(x) for x in value]
        return {"__set__": sorted(items, key=lambda x: json.dumps(x, sort_keys=True))}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            if len(value) == 1 and next(iter(value)) in TAGS:
                return {"__dict__": [[k, encode(v)] for k, v in value.items()]}  # not read back as a tag
            return {k: encode(v) for k, v in value.items()}
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    raise TypeError(f"a {type(value).__name__} value has no JSON form")


def write_env_files(out: Path, name: str, seed: int) -> EnvSpec:
    """tools.py, verify.py and env.json of generator `name`'s environment in folder `out`."""
    out.mkdir(parents=True, exist_ok=True)
    folder = "importers/reasoning_gym"
    (out / "tools.py").write_text(jinja(True).get_template(f"{folder}/tools.py.j2").render())
    (out / "verify.py").write_text(
        jinja(True).get_template(f"{folder}/verify.py.j2").render(requirement=REQUIREMENT)
    )
    spec = EnvSpec(
        id=env_id_of(name),
        category="code_interpreter",
        domain="reasoning_gym",
        description=(
            f"You solve problems from reasoning-gym's {name} generator. You may run Python code with the python "
            "tool (a stateful session: variables persist between calls). When you know the answer, call "
            "submit_answer with the final answer alone, exactly in the form the question asks for: the first "
            "submission ends the episode, and the generator's own checker scores it."
        ),
        tools=tools_from_module(load_tools_module(out / "tools.py")),
        limits=LIMITS,
        provenance=provenance(name, seed),
        format_version=2,
        requirements=[REQUIREMENT],
    )
    return write_env_spec(out, spec)


def provenance(name: str, seed: int) -> Provenance:
    return Provenance(producer="import", family=f"reasoning_gym:{name}", seed=seed, version=IMPORTER_VERSION)


HASH_SEED = "0"
"""Some generators iterate sets of strings (isomorphic_strings, ransom_note, word_ladder, knight_swap, ...), so
their entries change with Python's string hashing: entries are made in a child process with this hash seed."""


class EntryChild:
    """A child Python, started with PYTHONHASHSEED fixed, that makes generators' entries on request, so the same
    arguments give the same entries whatever process asks. One child serves a whole import (its start imports
    reasoning_gym: 1.5 s)."""

    def __init__(self) -> None:
        import os
        import subprocess
        import sys

        self._errors = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            env={**os.environ, "PYTHONHASHSEED": HASH_SEED},
            text=True,
        )

    def entries(self, name: str, size: int, seed: int):
        """(index, entry encoded for JSON or None, why not) for entries 0..size-1 of generator `name` at `seed`."""
        self._proc.stdin.write(json.dumps({"name": name, "size": size, "seed": seed}) + "\n")
        self._proc.stdin.flush()
        ended = False
        try:
            while True:
                line = self._proc.stdout.readline()
                if not line:
                    self._errors.seek(0)
                    text = self._errors.read().decode(errors="replace").strip()
                    raise RuntimeError(f"the entry maker of {name} died: {(text.splitlines() or ['?'])[-1]}")
                row = json.loads(line)
                if "end" in row:
                    ended = True
                    if row["end"]:
                        raise RuntimeError(f"reasoning-gym could not make {name}'s entries: {row['end']}")
                    return
                yield row["i"], row.get("entry"), row.get("error")
        finally:
            if not ended:  # left mid-stream: its remaining lines would answer the next request
                self._proc.kill()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
        self._proc.wait()
        self._proc.stdout.close()
        self._errors.close()

    def __enter__(self) -> EntryChild:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve_entries() -> None:
    """The child's side of EntryChild: per request line, one JSON line per entry then an end line, on the stdout
    it was started with (what the generators print goes to stderr instead)."""
    import os
    import sys
    import warnings

    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")  # the generators' own deprecation noise
    import reasoning_gym

    for line in sys.stdin:
        req = json.loads(line)
        try:
            dataset = reasoning_gym.create_dataset(req["name"], size=req["size"], seed=req["seed"])
        except Exception as exc:  # noqa: BLE001 - reported to the parent in one line
            out.write(json.dumps({"end": f"{type(exc).__name__}: {exc}"}) + "\n")
            out.flush()
            continue
        for i in range(req["size"]):
            try:
                text = json.dumps({"i": i, "entry": encode(dataset[i])}, allow_nan=False)
            except (TypeError, ValueError) as exc:
                text = json.dumps({"i": i, "error": f"the entry has no JSON form ({exc})"})
            out.write(text + "\n")
        out.write(json.dumps({"end": None}) + "\n")
        out.flush()


def make_tasks(
    name: str,
    env_id: str,
    seed: int,
    size: int,
    verify,
    child: EntryChild,
    progress: str | bool = False,
) -> tuple[list[TaskSpec], dict[str, int]]:
    """Entries 0..size-1 of generator `name` at `seed` as tasks, each kept only where verify.py's `score` gives
    its gold answer 1.0 and an empty answer less; (tasks, drop reasons -> counts). `progress`: auto, bar, lines
    or none (True: auto, False: none), on stderr."""
    from toolgym.envs.inside.toolgym_env import Context

    tasks: list[TaskSpec] = []
    dropped: dict[str, int] = {}
    rows: Any = child.entries(name, size, seed)
    if resolve_mode(progress) != "none":
        rows = track(rows, size, name, "task", progress, leave=False)
    with tempfile.TemporaryDirectory(prefix="toolgym-rg-") as scratch:
        ctx = Context(scratch, env_id)
        for i, entry, reason in rows:
            # the params exactly as verify.py reads them in the sandbox (JSON)
            params = {"dataset": name, "entry": entry}
            gold = entry.get("answer") if entry is not None else None
            if reason is None and not (isinstance(gold, str) and gold.strip()):
                reason = "the entry has no gold answer"
            if reason is None:
                right, _ = verify.score(ctx, gold, [], **json.loads(json.dumps(params)))
                empty, _ = verify.score(ctx, "", [], **json.loads(json.dumps(params)))
                if right != 1.0:
                    reason = "its own answer scores below 1.0"
                elif empty >= 1.0:
                    reason = "an empty answer scores 1.0"
            if reason is not None:
                dropped[reason] = dropped.get(reason, 0) + 1
                continue
            tasks.append(
                TaskSpec(
                    id=f"{env_id}-{seed}-{i:05d}",
                    env_id=env_id,
                    category="code_interpreter",
                    difficulty=1,
                    prompt=[f"{entry['question'].rstrip()}\n\n{ANSWER_LINE}"],
                    verifier="score",
                    params=params,
                    solution=[ToolCall(name="submit_answer", arguments={"answer": gold})],
                    provenance=provenance(name, seed),
                )
            )
    return tasks, dropped


def _replace(target: Path, built: Path, name: str) -> None:
    """Put the freshly built folder where the environment goes; an earlier import of the same generator there is
    replaced, anything else is left alone."""
    if target.exists():
        try:
            family = json.loads((target / "env.json").read_text())["provenance"]["family"]
        except (OSError, ValueError, KeyError, TypeError):
            family = None
        if family != f"reasoning_gym:{name}":
            raise ReasoningGymError(
                f"{target} exists and is not an import of reasoning-gym's {name}; choose another --out or "
                "remove that folder."
            )
        shutil.rmtree(target)
    built.rename(target)


def import_generator(
    name: str,
    store: str | Path,
    size: int,
    seed: int = 0,
    progress: str | bool = False,
    child: EntryChild | None = None,
) -> GeneratorImport:
    """Write `<store>/rg-<name>/` (env.json, tools.py, verify.py, tasks.jsonl) from generator `name`: entries
    0..size-1 at `seed`. Its path is None (and nothing is written) when no entry passed the gold-answer check.
    `child`: an EntryChild to reuse (one is started otherwise)."""
    _package()
    check_names([name])
    check_size(size)
    if child is None:
        with EntryChild() as own:
            return import_generator(name, store, size, seed, progress, own)
    started = time.perf_counter()
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    env_id = env_id_of(name)
    result = GeneratorImport(name=name, env_id=env_id, path=None)
    built = Path(tempfile.mkdtemp(prefix=f".{env_id}.", dir=store))
    built.chmod(0o755)  # mkdtemp's 0700 would hide the environment from a sandbox's other uid
    try:
        write_env_files(built, name, seed)
        verify = load_tools_module(built / "verify.py", "verify")
        tasks, result.dropped = make_tasks(name, env_id, seed, size, verify, child, progress)
        result.kept = len(tasks)
        if tasks:
            write_tasks(built, tasks)
            _replace(store / env_id, built, name)
            result.path = store / env_id
    finally:
        if built.exists():
            shutil.rmtree(built)
    result.seconds = time.perf_counter() - started
    return result


def import_generators(
    names: list[str],
    store: str | Path,
    size: int,
    seed: int = 0,
    progress: str | bool = False,
    on_result: Callable[[GeneratorImport], None] | None = None,
) -> list[GeneratorImport]:
    """`import_generator` for each name in the order given, with one EntryChild; every name is checked before
    anything is written. `on_result` hears of each generator as it is done."""
    _package()
    check_names(names)
    check_size(size)
    results = []
    with EntryChild() as child:
        for name in names:
            results.append(import_generator(name, store, size, seed, progress, child))
            if on_result is not None:
                on_result(results[-1])
    return results


if __name__ == "__main__":  # the child of EntryChild
    _serve_entries()
