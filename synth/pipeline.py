"""Synthesis runs: environments into `<out>/envs/`, validated tasks into `<out>/tasks/*.parquet` and
`<out>/manifest.json`. Deterministic for a seed whatever the worker count, and the same bytes on a Ray cluster
(`ray=`) as in local processes; resumable through per-env markers in `<out>/.work/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

from toolgym.agent.progress import resolve_mode, track
from toolgym.envs.runtime import EnvRuntimeError
from toolgym.envs.shards import write_task_shards
from toolgym.envs.shipping import pack_folder, unpack_folder
from toolgym.envs.spec import Provenance, TaskSpec
from toolgym.sandbox import SandboxError

from .admission import RANDOM_EPISODES, admit
from .difficulty import RULE as DIFFICULTY_RULE
from .difficulty import assign_levels
from .difficulty import features as task_features
from .family import dedupe_key, distinctness_parts, families
from .report import diversity
from .shortcuts import MAX_ATTEMPTS, MAX_PROBES
from .shortcuts import NAMES as SHORTCUT_NAMES

SCALES = ("tiny", "demo", "small", "full")
NEAR_DUP_THRESHOLD = 0.9
SANDBOX_FRACTION = 1.0
"""The default share of environments admitted in sandboxes: all, so no candidate's tools run on the host (and
it measured faster than in-process here; see the README's Admission section)."""


def plan(scale: str, only: list[str] | None = None) -> list[tuple[str, tuple]]:
    """(family name, environment key) for every environment of the scale, family by family."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
    return [(name, tuple(k)) for name, family in families(only).items() for k in family.plan(scale)]


def _progress(it, total: int, desc: str, mode="auto"):
    """`it` counted on stderr: a bar on a terminal, else a line every 10 s (`mode`: auto, bar, lines, none)."""
    return track(it, total, desc, "env", mode)


def _env_job(job) -> str:
    out, name, key, seed = job
    family = families([name])[name]
    eid = family.env_id(key)
    marker = Path(out) / ".work" / "envs" / f"{eid}.done"
    if marker.exists():
        return eid
    family.build_env(Path(out) / "envs", key, seed)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("done\n")
    return eid


def _map(fn, jobs, workers: int | None, desc: str, progress="auto", ray: str | None = None) -> list:
    """`fn` over `jobs`, results in job order: in this process, a process pool, or (`ray`) Ray actors."""
    if ray:
        return _ray_map(fn, jobs, workers, desc, progress, ray)
    workers = workers or os.cpu_count() or 1
    if workers <= 1:
        return [fn(j) for j in _progress(jobs, len(jobs), desc, progress)]
    # Slow environments first (code, then code-interpreter) so no worker is left with a long tail at the end.
    order = sorted(range(len(jobs)), key=lambda i: (-_COST.get(jobs[i][1], 1), i))
    pool = Pool(workers)
    try:
        done = list(
            _progress(pool.imap(fn, [jobs[i] for i in order], chunksize=1), len(jobs), desc, progress)
        )
        pool.close()  # workers exit normally and run their finalizers (a worker's sandbox lease is closed)
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
    out = [None] * len(jobs)
    for i, r in zip(order, done, strict=True):
        out[i] = r
    return out


_COST = {"code": 30, "code_interpreter": 10}
"""Relative validation cost per environment, for scheduling only."""


def synth_envs(
    out: str | Path,
    seed: int = 0,
    scale: str = "demo",
    workers: int | None = None,
    only: list[str] | None = None,
    progress: str | bool = "auto",
    ray: str | None = None,
) -> list[str]:
    """Build every environment of the plan; returns their ids (sorted). Raises on a distinctness clash.
    `progress`: auto (a bar on a terminal, else lines on stderr), bar, lines or none. `ray`: "auto", "local" or
    a cluster address to build on Ray actors (`workers` of them; default: one per CPU of the cluster)."""
    resolve_mode(progress)
    jobs = [(str(out), fam, key, seed) for fam, key in plan(scale, only)]
    ids = _map(_env_job, jobs, workers, "envs", progress, ray)
    if len(set(ids)) != len(ids):
        raise ValueError("two environments of the plan share an id")
    distinctness(out, ids)
    return sorted(ids)


def distinctness(out: str | Path, env_ids: list[str]) -> dict:
    """Prove the environments distinct: no two share tool set + rules + data (raises on a clash). Returns, per
    category, how many different tool sets, rule sets and data sets it holds, so a reader sees how far apart
    the variants are, not only that no two are identical."""
    owner: dict[tuple, str] = {}
    by_cat: dict[str, dict] = {}
    for eid in sorted(env_ids):
        env_dir = Path(out) / "envs" / eid
        key = distinctness_parts(env_dir)
        if key in owner:
            raise ValueError(
                f"environments {owner[key]} and {eid} share tool set, rules and data; change a seed"
            )
        owner[key] = eid
        category = json.loads((env_dir / "env.json").read_text())["category"]
        seen = by_cat.setdefault(
            category, {"environments": 0, "tool_sets": set(), "rule_sets": set(), "data_sets": set()}
        )
        seen["environments"] += 1
        for name, part in zip(("tool_sets", "rule_sets", "data_sets"), key, strict=True):
            seen[name].add(part)
    return {
        cat: {k: v if isinstance(v, int) else len(v) for k, v in seen.items()}
        for cat, seen in sorted(by_cat.items())
    }


def _shingles(text: str) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


_LSH: dict = {}


def near_duplicates(prompts: list[str], threshold: float = NEAR_DUP_THRESHOLD) -> set[int]:
    """Indices of prompts that are near-duplicates (MinHash LSH, Jaccard >= threshold on word 3-shingles) of an
    earlier one; the first of each group is kept."""
    from datasketch import MinHash, MinHashLSH

    if threshold not in _LSH:
        # datasketch finds the bands for a threshold by numeric integration (~16 ms) and draws a MinHash's
        # permutations anew for each one: both the same every time, so made once per process
        lsh = MinHashLSH(threshold=threshold, num_perm=64)
        first = MinHash(num_perm=64, seed=1)
        _LSH[threshold] = ((lsh.b, lsh.r), first.permutations, first.scheme)
    params, permutations, scheme = _LSH[threshold]
    lsh = MinHashLSH(threshold=threshold, num_perm=64, params=params)
    dropped = set()
    for i, p in enumerate(prompts):
        m = MinHash(num_perm=64, seed=1, permutations=permutations, scheme=scheme)
        m.update_batch([s.encode() for s in sorted(_shingles(p))])
        if lsh.query(m):
            dropped.add(i)
            continue
        lsh.insert(str(i), m)
    return dropped


def sandboxed(env_id: str, seed: int, fraction: float) -> bool:
    """Whether an environment's admission runs in a sandbox: a seeded share `fraction` of the environments
    (all at 1.0), the same whatever the worker count or order."""
    if fraction >= 1:
        return True
    digest = hashlib.sha256(f"{seed}:{env_id}:sandbox".encode()).digest()
    return int.from_bytes(digest[:4], "big") < fraction * 2**32


_LEASE = None
"""This worker process's sandbox lease for sandboxed admission (one sandbox, reused across environments)."""


def _close_lease() -> None:
    global _LEASE
    if _LEASE is not None:
        _LEASE.close()
        _LEASE = None


def _admission_ops(env_dir: Path, in_sandbox: bool, backend):
    """The env server that replays an environment's candidates: in a sandbox (this worker's lease, files
    pushed) or in this process."""
    from toolgym.envs import EnvLease, load_env_spec
    from toolgym.envs.runtime import LocalEnvServer

    spec = load_env_spec(env_dir)
    if not in_sandbox:
        return LocalEnvServer(env_dir, spec.limits.call_timeout_s), True
    global _LEASE
    if _LEASE is None:
        from multiprocessing import util

        _LEASE = EnvLease(backend=backend, transport="push")
        util.Finalize(None, _close_lease, exitpriority=10)  # a pool worker's sandbox goes when it exits
    return _LEASE.open(env_dir, spec), False


def _task_job(job) -> dict:
    out, fam, key, seed, n_tasks, in_sandbox, backend, gate = job
    m = families([fam])[fam]
    eid = m.env_id(key)
    marker = Path(out) / ".work" / "tasks" / f"{eid}.json"
    if marker.exists():
        return json.loads(marker.read_text())
    env_dir = Path(out) / "envs" / eid
    for attempt in (1, 2):
        cands = m.make_tasks(env_dir, key, seed, n_tasks)  # admission fills their params: fresh each try
        ops, close = _admission_ops(env_dir, in_sandbox, backend)
        try:
            got = admit_env(
                m, env_dir, key, seed, ops, [(f"{eid}-{i:03d}", c) for i, c in enumerate(cands)], gate
            )
            break
        except (EnvRuntimeError, SandboxError) as exc:
            # The worker's sandbox failed (its session died or stopped answering): infrastructure, not the
            # candidates. Admission is deterministic, so one retry in a fresh sandbox gives the same tasks.
            if attempt == 2 or not in_sandbox:
                raise EnvRuntimeError(f"admitting {eid} failed twice: {exc}") from exc
            print(f"toolgym synth: {eid}: {exc}; retrying in a fresh sandbox", file=sys.stderr)
            _close_lease()
        finally:
            if close:
                ops.close()
    drops = got["drops"]
    seen, unique = set(), []
    for tid, c, feats in got["kept"]:
        key_text = dedupe_key(c.prompt)
        if key_text in seen:
            drops["exact_duplicate"] += 1
            continue
        seen.add(key_text)
        unique.append((tid, c, feats))
    near = near_duplicates([c.prompt[0] for _, c, _ in unique])
    drops["near_duplicate"] += len(near)
    unique = [u for i, u in enumerate(unique) if i not in near]
    rows = [
        c.task(
            tid,
            eid,
            m.CATEGORY,
            Provenance(producer="template", family=f"{fam}/{m.domain(key)}", seed=seed, version=c.template),
        )
        .model_copy(update={"features": feats})
        .model_dump(mode="json")
        for tid, c, feats in unique
    ]
    result = {
        "env_id": eid,
        "family": fam,
        "category": m.CATEGORY,
        "domain": m.domain(key),
        "candidates": len(cands),
        "tasks": rows,
        "drops": dict(drops),
        "random_wins": {str(k): v for k, v in got["random_wins"].items()},
        "gate": got["gate"],
        "hardening": got["hardening"],
    }
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(result, sort_keys=True))
    return result


def admit_env(family, env_dir: Path, key, seed: int, ops, cands: list, gate: bool = True) -> dict:
    """Admit one environment's candidates ((task id, Candidate) pairs) through `ops`; a candidate dropped as too
    easy is offered once to `family.harden`, and what it returns goes through the whole admission again.
    Returns the kept (task id, candidate, features) in task-id order, drop counts, random wins, the shortcut
    solve counts before the gate per "<family>/<family level>", and what hardening did."""
    spec = json.loads((Path(env_dir) / "env.json").read_text())
    tools = spec["tools"]
    submit = next((t["function"]["name"] for t in tools if t.get("submit")), None)
    outcome = admit(ops, cands, submit, tools, gate=gate)
    steps: dict[str, list[str]] = {}
    hardened = []
    for tid, c, reason in outcome.too_easy:
        h = family.harden(Path(env_dir), key, seed, c, reason)
        if h is not None:
            steps[tid] = [reason]
            hardened.append((tid, h))
    again = admit(ops, hardened, submit, tools, gate=gate) if hardened else None
    kept = sorted(outcome.kept + (again.kept if again else []), key=lambda x: x[0])
    tried = list(SHORTCUT_NAMES) if gate else []
    by_level: dict[str, dict] = {}
    for tid, c in cands:
        if tid not in outcome.solved_by:
            continue
        row = by_level.setdefault(
            f"{family.NAME}/{c.difficulty}", {"candidates": 0, "any": 0, **dict.fromkeys(SHORTCUT_NAMES, 0)}
        )
        row["candidates"] += 1
        row["any"] += bool(outcome.solved_by[tid])
        for name in outcome.solved_by[tid]:
            row[name] += 1
    return {
        "kept": [(tid, c, task_features(c, tools, submit, tried, steps.get(tid, []))) for tid, c in kept],
        "drops": outcome.drops,
        "random_wins": outcome.random_wins,
        "gate": by_level,
        "hardening": {
            "too_easy": len(outcome.too_easy),
            "returned": len(hardened),
            "kept": len(again.kept) if again else 0,
            "drops": dict(again.drops) if again else {},
        },
    }


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def synth_tasks(
    out: str | Path,
    seed: int = 0,
    scale: str = "demo",
    workers: int | None = None,
    shard_size: int = 10_000,
    sandbox_fraction: float = SANDBOX_FRACTION,
    runtime_check: float = 0.0,
    backend="auto",
    only: list[str] | None = None,
    timings: dict | None = None,
    gate: bool = True,
    progress: str | bool = "auto",
    ray: str | None = None,
) -> dict:
    """Generate, admit and dedupe the tasks of every environment, compute their levels; write shards and the
    manifest.

    `sandbox_fraction`: the seeded share of environments whose admission replays run in a sandbox on `backend`
    (1.0: every tool of every candidate runs sandboxed); the rest replay in this process. `runtime_check`: the
    seeded share of admitted tasks run again through the rollout runner (oracle 1.0, giving up 0.0).
    `timings`, when given, receives the seconds of each stage (kept out of the manifest: same seed, same bytes).
    `gate=False` admits without the shortcut solvers (only to measure what they cost). `progress`: auto (a bar
    on a terminal, else lines on stderr), bar, lines or none. `ray`: "auto", "local" or a cluster address to
    admit on Ray actors, each environment on one actor, sandboxes on that actor's node; the files are the same."""
    import time

    resolve_mode(progress)

    started = time.perf_counter()
    out = Path(out)
    fams = families(only)
    jobs = [
        (
            str(out),
            fam,
            key,
            seed,
            fams[fam].SCALES[scale][1],
            sandboxed(fams[fam].env_id(key), seed, sandbox_fraction),
            backend,
            gate,
        )
        for fam, key in plan(scale, only)
    ]
    results = sorted(_map(_task_job, jobs, workers, "tasks", progress, ray), key=lambda r: r["env_id"])
    _close_lease()
    tasks, drops, random_wins, envs_by_cat, by_domain = [], Counter(), Counter(), Counter(), Counter()
    gate_rows: dict[str, Counter] = {}
    hardening = {"too_easy": 0, "returned": 0, "kept": 0, "drops": Counter()}
    seen = set()
    for r in results:
        drops.update(r["drops"])
        random_wins.update(r["random_wins"])
        envs_by_cat[r["category"]] += 1
        for level, row in r.get("gate", {}).items():
            gate_rows.setdefault(level, Counter()).update(row)
        for k, v in r.get("hardening", {}).items():
            hardening[k] += Counter(v) if k == "drops" else v
        for row in r["tasks"]:
            key = dedupe_key(row["prompt"])
            if key in seen:  # exact duplicates across environments
                drops["exact_duplicate"] += 1
                continue
            seen.add(key)
            tasks.append(TaskSpec.model_validate(row))
            by_domain[f"{r['category']}/{r['domain']}"] += 1
    # Levels depend on every admitted task of a category, so they are computed here, after all admission.
    tasks, levels = assign_levels(tasks)
    by_cat = Counter(t.category for t in tasks)
    by_diff = Counter(str(t.difficulty) for t in tasks)
    by_cat_diff = Counter(f"{t.category}/{t.difficulty}" for t in tasks)
    validated = time.perf_counter()
    check = {"fraction": float(runtime_check), "checked": 0, "disagreements": []}  # 0 and 0.0: one manifest
    if runtime_check > 0:
        sample = sandbox_sample(tasks, runtime_check, seed)
        check.update(
            checked=len(sample), disagreements=sandbox_check(out, sample, backend, progress=progress)
        )
    if timings is not None:
        timings.update(validate_s=validated - started, runtime_check_s=time.perf_counter() - validated)
    if (out / "tasks").exists():
        shutil.rmtree(out / "tasks")
    shards = write_task_shards(tasks, out / "tasks", shard_size=shard_size)
    env_hashes = {
        r["env_id"]: json.loads((out / "envs" / r["env_id"] / "env.json").read_text())["content_hash"]
        for r in results
    }
    distinct = distinctness(out, [r["env_id"] for r in results])
    manifest = {
        "seed": seed,
        "scale": scale,
        "versions": {name: m.VERSION for name, m in fams.items()},
        "envs": len(results),
        "tasks": len(tasks),
        "candidates": sum(r["candidates"] for r in results),
        "envs_by_category": dict(sorted(envs_by_cat.items())),
        "by_category": dict(sorted(by_cat.items())),
        "by_category_difficulty": dict(sorted(by_cat_diff.items())),
        "by_domain": dict(sorted(by_domain.items())),
        "by_difficulty": dict(sorted(by_diff.items())),
        "drop_reasons": dict(sorted(drops.items())),
        "near_duplicate": {
            "threshold": NEAR_DUP_THRESHOLD,
            "shingles": "word 3-grams",
            "scope": "environment",
        },
        "distinctness": {
            "rule": "no two environments share tool set + rules + data (hash of each)",
            "by_category": distinct,
        },
        "env_hashes": env_hashes,
        "admission": {
            "sandbox_fraction": float(sandbox_fraction),
            "sandboxed_envs": sum(j[5] for j in jobs),
            "replay": "every check is a scripted episode through the env server (toolgym.envs.replay)",
        },
        "runtime_check": check,
        "shortcuts": {
            "names": list(SHORTCUT_NAMES),
            "enabled": gate,
            "max_probes": MAX_PROBES,
            "max_attempts": MAX_ATTEMPTS,
            "rule": "dropped when any shortcut solver scores 1.0; counts are of candidates reaching the gate "
            "(past every other check), by family and the family's own level",
            "by_family_level": {k: dict(sorted(v.items())) for k, v in sorted(gate_rows.items())},
        },
        "hardening": {**hardening, "drops": dict(sorted(hardening["drops"].items()))},
        "difficulty": {"rule": DIFFICULTY_RULE, "by_category": levels},
        "diversity": diversity(out, tasks),
        "random_policy": {
            "episodes_per_task": RANDOM_EPISODES,
            "tasks_by_wins": dict(sorted(random_wins.items())),
            "rule": "dropped when any random episode scores 1.0",
        },
        "shards": {p.name: {"sha256": _sha(p)} for p in shards},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


# -- Ray: the same jobs on a cluster ----------------------------------------------------------------------------
# Nodes share no filesystem, so an actor builds or admits in a scratch folder on its own node and hands the
# files back; the driver alone writes `out` (an env folder appears whole, then its marker), so the corpus is
# byte for byte the local one and an interrupted run resumes from the same markers.


class _RayWorker:
    """A Ray actor: runs `_env_job` and `_task_job` in scratch folders on its node (sandboxed admission on that
    node's Docker engine, through this process's lease) and returns what they made."""

    def __init__(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="toolgym-synth-"))

    def env(self, job) -> tuple[str, list]:
        work = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            eid = _env_job((str(work), *job[1:]))
            return eid, pack_folder(work / "envs" / eid)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def tasks(self, job, env_files: bytes) -> dict:
        work = Path(tempfile.mkdtemp(dir=self.scratch))
        try:
            unpack_folder(env_files, work / "envs")
            return _task_job((str(work), *job[1:]))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def close(self) -> None:
        _close_lease()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _ray_done(fn, job):
    """A job's result from its marker in `out` (a resumed run), else None."""
    out, name, key = Path(job[0]), job[1], job[2]
    eid = families([name])[name].env_id(key)
    if fn is _env_job:
        return eid if (out / ".work" / "envs" / f"{eid}.done").exists() else None
    marker = out / ".work" / "tasks" / f"{eid}.json"
    return json.loads(marker.read_text()) if marker.exists() else None


def _ray_submit(fn, actor, job):
    if fn is _env_job:
        return actor.env.remote(job)
    eid = families([job[1]])[job[1]].env_id(job[2])
    return actor.tasks.remote(job, pack_folder(Path(job[0]) / "envs" / eid))


def _ray_keep(fn, job, got):
    """Write what an actor returned into `out`, as the local job would have; returns the job's result."""
    out = Path(job[0])
    if fn is _env_job:
        eid, files = got
        staging = out / ".work" / "staging" / eid
        shutil.rmtree(staging, ignore_errors=True)
        unpack_folder(files, staging.parent)
        final = out / "envs" / eid
        shutil.rmtree(final, ignore_errors=True)  # a folder left half-written by an interrupted local run
        final.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(final)
        marker = out / ".work" / "envs" / f"{eid}.done"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("done\n")
        return eid
    marker = out / ".work" / "tasks" / f"{got['env_id']}.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(got, sort_keys=True))
    return got


def _ray_map(fn, jobs, workers: int | None, desc: str, progress, address: str) -> list:
    """`_map` on Ray: one actor per worker (default: per CPU of the cluster), slow environments first, each
    actor given its next job as it hands one back."""
    from toolgym.agent.cluster import connect

    resources = connect(address, num_cpus=workers)
    import ray

    results: list = [None] * len(jobs)
    todo = []
    for i, job in enumerate(jobs):
        results[i] = _ray_done(fn, job)
        if results[i] is None:
            todo.append(i)
    todo.sort(key=lambda i: (-_COST.get(jobs[i][1], 1), i))
    n = max(1, min(workers or int(resources.get("CPU", 1)), len(todo)))
    # A restarted actor (its node died) runs the job again from scratch: jobs are deterministic and only the
    # driver writes, so a retry cannot leave half a result behind.
    worker = ray.remote(num_cpus=1, max_restarts=2, max_task_retries=2)(_RayWorker)
    actors = [worker.remote() for _ in range(n)] if todo else []

    def finished():
        yield from range(len(jobs) - len(todo))  # resumed jobs count as done
        queue = list(todo)
        running = {}
        for actor in actors:
            if queue:
                i = queue.pop(0)
                running[_ray_submit(fn, actor, jobs[i])] = (i, actor)
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            i, actor = running.pop(ready[0])
            results[i] = _ray_keep(fn, jobs[i], ray.get(ready[0]))
            if queue:
                j = queue.pop(0)
                running[_ray_submit(fn, actor, jobs[j])] = (j, actor)
            yield i

    try:
        for _ in _progress(finished(), len(jobs), desc, progress):
            pass
    finally:
        # Each actor stops its node's sandbox before it goes, so no container outlives the run.
        try:
            ray.get([a.close.remote() for a in actors], timeout=60)
        except Exception as exc:  # an actor already dead has nothing left to close
            print(f"toolgym synth: closing Ray workers: {type(exc).__name__}", file=sys.stderr)
        for a in actors:
            ray.kill(a)
        if jobs:
            shutil.rmtree(Path(jobs[0][0]) / ".work" / "staging", ignore_errors=True)
    return results


# -- the sandboxed sample ----------------------------------------------------------------------------------------
def sandbox_check(
    out: str | Path,
    tasks: list[TaskSpec],
    backend="docker",
    in_flight: int = 4,
    progress: str | bool = "auto",
) -> list[dict]:
    """Run `tasks` through the full sandboxed path, the rollout runner's (a sandbox pool, the env server in each
    sandbox, files pushed): the oracle must score 1.0 and an answer without tools 0.0, as in-process. Returns one
    row per disagreement."""
    import asyncio

    from toolgym.agent.policies import GiveUpPolicy, OraclePolicy
    from toolgym.agent.rollout import load_trajectories, rollout
    from toolgym.envs.corpus import Corpus

    out = Path(out)
    corpus = Corpus(
        out, {t.env_id: out / "envs" / t.env_id for t in tasks}, sorted(tasks, key=lambda t: t.id)
    )
    rewards: dict[str, dict[str, float]] = {t.id: {} for t in tasks}
    with tempfile.TemporaryDirectory() as runs:
        for name, factory in (
            ("oracle", lambda: OraclePolicy(reasoning=False)),
            ("do_nothing", GiveUpPolicy),
        ):
            run_dir = Path(runs) / name
            asyncio.run(
                rollout(corpus, factory, run_dir, in_flight=in_flight, backend=backend, progress=progress)
            )
            for row in load_trajectories(run_dir):
                rewards[row["task_id"]][name] = row["reward"] if row["status"] == "ok" else None
    return [
        {"task": tid, **r}
        for tid, r in sorted(rewards.items())
        if r.get("oracle") != 1.0 or r.get("do_nothing") != 0.0
    ]


def sandbox_sample(tasks: list[TaskSpec], fraction: float, seed: int) -> list[TaskSpec]:
    """A seeded random sample of at least `fraction` of the tasks (at least one)."""
    import random

    k = max(1, -(-int(len(tasks) * fraction * 1000) // 1000)) if tasks else 0
    return sorted(random.Random(f"{seed}:sandbox").sample(tasks, min(k, len(tasks))), key=lambda t: t.id)
