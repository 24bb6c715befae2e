"""The model-in-the-loop task filter: K episodes of a policy on every task through the rollout runner, each task's
pass@k measured, and the tasks whose pass@k passes a keep expression ("0<pass@k<1") written out as a corpus.

DeepSeek-V3.2 keeps a synthesized task only when a strong policy solves it at least sometimes; "0<pass@k<1" also
drops what the policy always solves. The episodes live in `OUT/rollout/`, a rollout run folder (its lock, atomic
commits and resume): a killed filter run started again with the same arguments picks up where it stopped and
writes the same corpus; other arguments are refused there (`FilterRunMismatch`), never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from toolgym.agent.runstore import RunBusy, RunFolderError, TrajectoryStore, atomic_write_text, is_run_dir
from toolgym.envs.corpus import Corpus
from toolgym.envs.shards import task_row, write_task_shards
from toolgym.envs.spec import TaskSpec, load_env_spec

RUN = "rollout"
"""The rollout run folder inside OUT: the filter's episodes, readable by `toolgym eval` and the exporters."""
RECORD = "filter.json"
"""In the run folder: the arguments its episodes were run with (a resume must bring the same ones)."""
RULE = "pass@k = 1 - C(n-c, k) / C(n, k) over n episodes with c successes (unbiased; 1 if c > 0 when n == k)"

_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "=": "=="}
_NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!="}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "=="}
_TOKEN = re.compile(r"\s*(?:(?P<num>\d+(?:\.\d*)?|\.\d+)|(?P<var>pass@(?:k|\d+))|(?P<op><=|>=|==|<|>|=))")


class KeepError(ValueError):
    """A keep expression that cannot be read; the message shows the forms that can."""


class FilterRunMismatch(RunFolderError):
    """The run folder holds episodes run with other arguments (policy, k, seed, tasks, ...)."""


@dataclass(frozen=True)
class Keep:
    """A parsed keep expression: comparisons of pass@k with constants, all of which must hold."""

    text: str
    """The expression, normalized ("0<pass@k<1")."""
    clauses: tuple[tuple[str, Fraction], ...]
    """(operator, constant) with pass@k on the left: "0<pass@k<1" is ((">", 0), ("<", 1))."""

    def failing(self, value: Fraction) -> str | None:
        """None when `value` passes; else the first clause it fails, negated ("pass@k>=1"): the drop reason."""
        for op, const in self.clauses:
            holds = {
                "<": value < const,
                "<=": value <= const,
                ">": value > const,
                ">=": value >= const,
                "==": value == const,
            }[op]
            if not holds:
                return f"pass@k{_NEGATED[op]}{_number(const)}"
        return None

    def __call__(self, value: Fraction) -> bool:
        return self.failing(value) is None


def _number(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else format(float(x), "g")


def parse_keep(text: str, k: int | None = None) -> Keep:
    """Read a keep expression: one `pass@k` (or `pass@K` with the filter's K) compared with constants in [0, 1],
    e.g. "0<pass@k<1", "pass@k>0", "pass@k<=0.5", "0.25<=pass@k". A small parser, never `eval`."""
    forms = 'write it like "0<pass@k<1", "pass@k>0" or "pass@k<=0.5"'
    tokens: list[tuple[str, str]] = []
    pos = 0
    stripped = text.strip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if not m or m.end() == pos:
            raise KeepError(f"cannot read the keep expression {text!r} at {stripped[pos:]!r}: {forms}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    kinds = [kind for kind, _ in tokens]
    if kinds not in (["var", "op", "num"], ["num", "op", "var"], ["num", "op", "var", "op", "num"]):
        raise KeepError(f"the keep expression {text!r} is not a comparison of pass@k with numbers: {forms}")
    var = next(v for kind, v in tokens if kind == "var")
    if var != "pass@k" and (k is None or var != f"pass@{k}"):
        raise KeepError(
            f"the keep expression {text!r} names {var}, but this filter measures pass@{k}: use pass@k"
        )
    if len(tokens) == 5 and "==" in (_OPS[tokens[1][1]], _OPS[tokens[3][1]]):
        raise KeepError(f"the keep expression {text!r} chains '==': {forms}")
    clauses = []
    for i in range(1, len(tokens), 2):
        (lk, lv), (_, op), (_, rv) = tokens[i - 1], tokens[i], tokens[i + 1]
        op = _OPS[op]
        const = Fraction(rv if lk == "var" else lv)
        if const > 1:
            raise KeepError(
                f"the keep expression {text!r} compares pass@k with {const}; pass@k lies in [0, 1]"
            )
        clauses.append((op, const) if lk == "var" else (_FLIPPED[op], const))
    shown = {"num": lambda v: _number(Fraction(v)), "var": lambda v: "pass@k", "op": lambda v: _OPS[v]}
    normal = "".join(shown[kind](v) for kind, v in tokens)
    return Keep(normal, tuple(clauses))


def pass_at_k(n: int, c: int, k: int) -> Fraction:
    """The unbiased pass@k estimate from n episodes with c successes, exactly: 1 - C(n-c, k) / C(n, k)."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@{k} needs 0 <= c <= n and 1 <= k <= n (got n={n}, c={c})")
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _env_hash(env_dir: Path) -> str:
    return json.loads((env_dir / "env.json").read_text()).get("content_hash", "")


def _check_run(run_dir: Path, record: dict) -> None:
    """Refuse a run folder whose episodes were run with other arguments (or by something else than a filter)."""
    store = TrajectoryStore(run_dir)
    if store.busy():
        raise RunBusy(
            f"the run folder {run_dir} is being written by another filter or rollout; wait for it to end"
        )
    path = run_dir / RECORD
    if path.exists():
        old = json.loads(path.read_text())
        if old != record:
            differ = sorted(key for key in {*old, *record} if old.get(key) != record.get(key))
            raise FilterRunMismatch(
                f"{run_dir} holds episodes of a filter run with other arguments ({', '.join(differ)} differ); "
                "run the same command as before to resume it, or give this one another --out"
            )
    elif is_run_dir(run_dir):
        raise FilterRunMismatch(
            f"{run_dir} holds episodes that no filter run recorded; give this filter another --out"
        )


def measure(rows: list[dict], tasks: list[TaskSpec], n: int) -> dict[str, tuple[int, int, int]]:
    """task id -> (episodes measured, successes, infrastructure failures) over samples 0..n-1 of each task."""
    out = {t.id: [0, 0, 0] for t in tasks}
    for r in rows:
        counts = out.get(r["task_id"])
        if counts is None or r["sample"] >= n:
            continue
        if r["status"] == "infra_error":
            counts[2] += 1
        else:  # a timeout is the policy's failure, measured like any other
            counts[0] += 1
            counts[1] += r["status"] == "ok" and bool(r["success"])
    return {tid: (a, b, c) for tid, (a, b, c) in out.items()}


def filter_corpus(
    corpus: Corpus,
    policy_factory: Callable[[], Any],
    out: str | Path,
    *,
    k: int,
    keep: str | Keep,
    policy: dict,
    samples: int | None = None,
    seed: int = 0,
    source: dict | None = None,
    in_flight: int = 8,
    backend="auto",
    budgets=None,
    episode_timeout_s: float = 600.0,
    progress: bool = True,
) -> dict:
    """Run `samples` (default `k`) episodes of `policy_factory()` on every task of `corpus` into `out/rollout/`,
    and write the tasks whose pass@k passes `keep` to `out` (`envs/`, `tasks/*.parquet`, `manifest.json`): a
    corpus `load_corpus` reads, each task's `features["filter"]` holding its k, n, c and pass@k. Returns the
    manifest.

    `policy` describes what made the episodes (policy, model, encoding, sampling): it is recorded in the
    manifest and, with the tasks, k, samples, seed and budgets, in the run folder, where a resume must match it.
    """
    import asyncio

    from toolgym.agent.loop import Budgets
    from toolgym.agent.rollout import rollout

    n = samples or k
    if k < 1 or n < k:
        raise ValueError(f"--k must be at least 1 and --samples at least --k (got k={k}, samples={n})")
    rule = keep if isinstance(keep, Keep) else parse_keep(keep, k)
    budgets = budgets or Budgets()
    out = Path(out)
    if corpus.root.resolve().is_relative_to(out.resolve()):
        raise ValueError(
            f"--out {out} holds the corpus being filtered; write the filtered corpus to another --out"
        )
    run_dir = out / RUN
    record = {
        "policy": policy,
        "k": k,
        "samples_per_task": n,
        "seed": seed,
        "budgets": vars(budgets),
        "episode_timeout_s": episode_timeout_s,
        "tasks": _digest([task_row(t) for t in corpus.tasks]),
        "envs": _digest({e: _env_hash(d) for e, d in sorted(corpus.env_dirs.items())}),
    }
    _check_run(run_dir, record)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / RECORD).exists():
        atomic_write_text(run_dir / RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")
    if progress and n == k and any(op == "<" or (op == "<=" and c < 1) for op, c in rule.clauses):
        # With n == k the estimator is 1 for any success: an upper bound only separates never from ever solved.
        print(
            f"filter: note: with --samples equal to --k every pass@k is 0 or 1, so {rule.text} cannot keep a "
            f"task solved in some episodes only; pass --samples above --k (e.g. {2 * k}) to find those",
            file=sys.stderr,
        )
    if progress:
        print(
            f"filter: {len(corpus.tasks)} tasks x {n} episodes of {policy.get('policy')}"
            f"{' ' + str(policy['model']) if policy.get('model') else ''}, keeping {rule.text} -> {run_dir}",
            file=sys.stderr,
        )
    stats = asyncio.run(
        rollout(
            corpus,
            policy_factory,
            run_dir,
            samples_per_task=n,
            in_flight=in_flight,
            backend=backend,
            budgets=budgets,
            episode_timeout_s=episode_timeout_s,
            seed=seed,
            # Model episodes are dear: commit them in small parts so a kill loses few.
            commit_every=max(1, min(16, in_flight)),
            progress=progress,
        )
    )
    counts = measure(TrajectoryStore(run_dir).rows(), corpus.tasks, n)
    kept: list[TaskSpec] = []
    drops: Counter = Counter()
    by_correct: Counter = Counter()
    for task in corpus.tasks:
        measured, correct, infra = counts[task.id]
        if infra or measured < n:
            drops["infra_error"] += 1  # unmeasured: the next run of the same command retries its episodes
            continue
        by_correct[str(correct)] += 1
        value = pass_at_k(n, correct, k)
        reason = rule.failing(value)
        if reason:
            drops[reason] += 1
            continue
        measured_row = {"k": k, "n": n, "c": correct, "pass_at_k": float(value)}
        # Tasks without features (hand-written) keep what difficulty levels assume of them.
        features = dict(task.features or {"reference_calls": len(task.solution)})
        features["filter"] = measured_row
        kept.append(task.model_copy(update={"features": features}))
    filt = {
        "policy": policy,
        "k": k,
        "samples_per_task": n,
        "keep": rule.text,
        "seed": seed,
        "budgets": vars(budgets),
        "rule": RULE,
        "source": source or {"corpus": str(corpus.root)},
        "tasks": len(corpus.tasks),
        "kept": len(kept),
        "dropped": dict(sorted(drops.items())),
        "tasks_by_successes": dict(sorted(by_correct.items(), key=lambda kv: int(kv[0]))),
        "episodes": len(corpus.tasks) * n,
    }
    manifest = write_filtered(out, corpus, kept, filt)
    manifest["run"] = {"episodes": stats.episodes, "skipped": stats.skipped, "wall_s": stats.wall_s}
    return manifest


def write_filtered(out: Path, corpus: Corpus, kept: list[TaskSpec], filt: dict) -> dict:
    """`out/envs/` (the kept tasks' environments), `out/tasks/*.parquet` and `out/manifest.json`: a corpus, the
    same bytes for the same kept tasks. Staged beside and swapped in, so a kill leaves the old output or the new."""
    staging = out / f".staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        used = sorted({t.env_id for t in kept})
        for env_id in used:
            shutil.copytree(
                corpus.env_dirs[env_id],
                staging / "envs" / env_id,
                ignore=shutil.ignore_patterns("tasks.jsonl", "__pycache__", "*.pyc"),
            )
        (staging / "envs").mkdir(exist_ok=True)
        shards = write_task_shards(kept, staging / "tasks")
        domains = {e: load_env_spec(staging / "envs" / e).domain for e in used}
        earlier, made = [], {}
        previous = corpus.root / "manifest.json"
        if previous.is_file():
            old = json.loads(previous.read_text())
            earlier = [*old.get("earlier_filters", []), *([old["filter"]] if "filter" in old else [])]
            # What made the kept tasks stays true of them: the synthesis seed, scale and family versions.
            made = {key: old[key] for key in ("seed", "scale", "versions") if key in old}
        manifest = {
            **made,
            "filter": filt,
            "earlier_filters": earlier,
            "tasks": len(kept),
            "envs": len(used),
            "envs_by_category": dict(sorted(Counter(_category(staging, e) for e in used).items())),
            "by_category": dict(sorted(Counter(t.category for t in kept).items())),
            "by_difficulty": dict(sorted(Counter(str(t.difficulty) for t in kept).items())),
            "by_category_difficulty": dict(
                sorted(Counter(f"{t.category}/{t.difficulty}" for t in kept).items())
            ),
            "by_domain": dict(sorted(Counter(f"{t.category}/{domains[t.env_id]}" for t in kept).items())),
            "drop_reasons": filt["dropped"],
            "env_hashes": {e: _env_hash(staging / "envs" / e) for e in used},
            "shards": {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in shards},
        }
        for name in ("envs", "tasks"):
            if (out / name).exists():
                shutil.rmtree(out / name)
            (staging / name).rename(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _category(root: Path, env_id: str) -> str:
    return json.loads((root / "envs" / env_id / "env.json").read_text())["category"]


__all__ = [
    "RULE",
    "FilterRunMismatch",
    "Keep",
    "KeepError",
    "filter_corpus",
    "measure",
    "parse_keep",
    "pass_at_k",
    "write_filtered",
]
