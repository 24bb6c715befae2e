"""Rollouts: a policy over a task set, N episodes in flight on a sandbox pool, into sharded parquet.

Crash-safe and resumable: finished episodes are committed in small parquet parts (written to a temporary
name, then renamed), so a run killed at any instant (SIGKILL included) loses only the episodes in flight; the
next run skips every committed (task, sample) (and runs again those recorded as infrastructure failures, unless
`retry_infra=False`) and `finalize` merges the parts into sorted shards. The same command therefore ends with
the same rows, none twice and none lost. Infrastructure failures (a sandbox that died, a model server still
failing after its own retries) are retried and kept apart from agent failures. One rollout at a time writes a
run folder (`agent/runstore.py`: its lock, plan, atomic commits and finalize).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .encodings._safe import clean_text
from .loop import Budgets, run_episode
from .policies import Policy
from .progress import Progress, resolve_mode
from .runstore import (  # noqa: F401 - the run folder's API, re-exported
    JSON_COLUMNS,
    RunBusy,
    RunWriteError,
    TrajectoryStore,
    decode_row,
    load_trajectories,
)
from .trajectory import Trajectory

STATUS = ("ok", "timeout", "infra_error")


def episode_seed(seed: int, task_id: str, sample: int) -> int:
    """The seed of one (task, sample): fixed by the run's seed, whatever order episodes run in."""
    digest = hashlib.sha256(f"{seed}:{task_id}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def trajectory_row(
    traj: Trajectory,
    task,
    domain: str,
    sample: int,
    *,
    status: str = "ok",
    infra_retries: int = 0,
    error: str = "",
) -> dict:
    return {
        "key": f"{task.id}#{sample}",
        "task_id": task.id,
        "env_id": task.env_id,
        "category": task.category,
        "domain": domain,
        "difficulty": task.difficulty,
        "sample": sample,
        "seed": traj.seed or 0,
        "policy": traj.policy,
        "status": status,
        "reward": traj.reward,
        "success": traj.success,
        "terminated": traj.terminated,
        "truncated": traj.truncated,
        "stop_reason": traj.stop_reason,
        "infra_retries": infra_retries,
        "n_steps": len(traj.steps),
        "n_tool_calls": sum(s.tool_calls for s in traj.steps),
        "prompt_tokens": traj.prompt_tokens,
        "completion_tokens": traj.completion_tokens,
        "wall_s": traj.wall_s,
        "error": clean_text(error),
        "messages": clean_text(json.dumps(traj.messages, ensure_ascii=False)),
        "tools": clean_text(json.dumps(traj.tools, ensure_ascii=False)),
        "verdict": clean_text(json.dumps(traj.verdict, ensure_ascii=False)),
        "answer": clean_text(json.dumps(traj.answer, ensure_ascii=False, default=str)),
        "steps": json.dumps([vars(s) for s in traj.steps]),
        "malformed": clean_text(json.dumps(traj.malformed, ensure_ascii=False)),
        "errors": json.dumps(traj.error_counts()),
    }


@dataclass
class RolloutStats:
    planned: int = 0
    skipped: int = 0
    """Already committed by an earlier (interrupted) run."""
    episodes: int = 0
    successes: int = 0
    timeouts: int = 0
    infra_errors: int = 0
    infra_retries: int = 0
    wall_s: float = 0.0

    @property
    def episodes_per_s(self) -> float:
        return self.episodes / self.wall_s if self.wall_s else 0.0

    def record(self, row: dict) -> None:
        """Count one finished episode (its row)."""
        self.episodes += 1
        self.successes += row["status"] == "ok" and bool(row["success"])
        self.timeouts += row["status"] == "timeout"
        self.infra_errors += row["status"] == "infra_error"
        self.infra_retries += row["infra_retries"]

    def figures(self) -> dict[str, Any]:
        """What a progress line shows beside the count: success so far, and infrastructure failures if any."""
        out: dict[str, Any] = {"success": f"{self.successes / max(1, self.episodes):.1%}"}
        if self.infra_errors:
            out["infra"] = self.infra_errors
        return out


INFRA_STOPS = ("model_error",)


@dataclass
class EpisodeSettings:
    """How every episode of a run is played, wherever it runs (this process or a Ray actor)."""

    budgets: Budgets
    episode_timeout_s: float = 600.0
    max_infra_retries: int = 2
    seed: int = 0


def env_chunks(items: list, in_flight: int) -> list[list]:
    """`items` (sorted by environment) cut into runs of one environment each, a worker's unit of work: a worker
    keeps its environment's server (and sandbox) across the run's episodes, where a switch costs a new server
    (tens of ms). Runs are at most about a quarter of a worker's share, so big environments still spread."""
    limit = max(1, -(-len(items) // (max(1, in_flight) * 4)))
    chunks: list[list] = []
    for it in items:
        if chunks and chunks[-1][0][0].env_id == it[0].env_id and len(chunks[-1]) < limit:
            chunks[-1].append(it)
        else:
            chunks.append([it])
    return chunks


def plan_items(corpus, samples_per_task: int, done: set[str]) -> list[tuple]:
    """The (task, sample) pairs still to run, sorted by environment (neighbours share an env: fewer switches)."""
    items = [(t, s) for t in corpus.tasks for s in range(samples_per_task) if f"{t.id}#{s}" not in done]
    items.sort(key=lambda it: (it[0].env_id, it[0].id, it[1]))
    return items


def requirement_sets_of(specs: dict, env_ids) -> list[str]:
    """The requirement sets every sandbox of a run holds: those of every environment it serves."""
    from toolgym.envs.lease import requirement_sets

    return sorted({h for env_id in env_ids if env_id in specs for h in requirement_sets(specs[env_id])})


class EpisodeWorker:
    """One in-flight slot: a policy and a lease that play episodes one after another, with the infrastructure
    retries and the timeout. The local runner and every Ray actor run episodes through this one class.

    `envs`: anything with `env_dirs` (env_id -> folder) and `tasks_of(env_id)` (a Corpus, or a Ray node's
    cache of shipped environments); `domains`: env_id -> domain, for the rows."""

    def __init__(
        self, envs, domains: dict[str, str], policy: Policy, lease, settings: EpisodeSettings
    ) -> None:
        self.envs = envs
        self.domains = domains
        self.policy = policy
        self.lease = lease
        self.settings = settings
        self._env = None
        self._task_ids: set[str] = set()

    async def run(self, task, sample: int) -> dict:
        """Play (task, sample) to the end and return its row; infrastructure failures are retried up to
        `max_infra_retries` times (then recorded as `infra_error`), a timeout is recorded as `timeout`."""
        from toolgym.envs import ToolEnv
        from toolgym.sandbox import SandboxError

        settings, lease, policy = self.settings, self.lease, self.policy
        env = self._env
        if env is None or env.env_id != task.env_id or task.id not in self._task_ids:
            # One lease for the worker's life: on a switch of environment it decides whether the sandbox (and its
            # env server) may serve the next environment or must go back to the pool.
            env = self._env = ToolEnv(
                self.envs.env_dirs[task.env_id], tasks=self.envs.tasks_of(task.env_id), lease=lease
            )
            self._task_ids = {t.id for t in env.tasks}
        retries, status, error = 0, "ok", ""
        while True:
            try:
                traj = await asyncio.wait_for(
                    run_episode(
                        env,
                        policy,
                        seed=episode_seed(settings.seed, task.id, sample),
                        task_id=task.id,
                        budgets=settings.budgets,
                    ),
                    settings.episode_timeout_s,
                )
                infra = traj.stop_reason in INFRA_STOPS or (
                    traj.stop_reason == "env_error" and not env.runs_agent_code
                )
                if not infra:
                    break
                error = traj.steps[-1].errors[-1]["detail"] if traj.steps and traj.steps[-1].errors else ""
            except TimeoutError:
                status = "timeout"
                traj = Trajectory(
                    task.env_id,
                    task.id,
                    policy.name,
                    None,
                    [],
                    [],
                    truncated=True,
                    stop_reason="episode_timeout",
                )
                await lease.arelease()  # its state is unknown: the next episode gets another sandbox
                break
            except (SandboxError, OSError, RuntimeError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                traj = Trajectory(
                    task.env_id, task.id, policy.name, None, [], [], truncated=True, stop_reason="infra_error"
                )
                lease.server_failed()
                await lease.arelease()
            retries += 1
            if retries > settings.max_infra_retries:
                status = "infra_error"
                break
        return trajectory_row(
            traj,
            task,
            self.domains.get(task.env_id, ""),
            sample,
            status=status,
            infra_retries=retries,
            error=error,
        )

    async def aclose(self) -> None:
        await self.lease.aclose()


def new_worker(
    envs, domains: dict[str, str], policy: Policy, settings: EpisodeSettings, *, backend, pool, limits
):
    """A worker with a lease of its own on `pool` (or in-process env servers, for trusted policies only)."""
    from toolgym.envs import IN_PROCESS, EnvLease, InProcess

    if isinstance(backend, InProcess):
        if not getattr(policy, "trusted", False):
            raise ValueError(
                f"the {policy.name} policy is not trusted and cannot run with backend=inprocess, which runs "
                "tools on this host; use a sandbox backend (auto, docker or namespace)"
            )
        lease = EnvLease(backend=IN_PROCESS)
    else:
        lease = EnvLease(pool=pool, limits=limits)
    return EpisodeWorker(envs, domains, policy, lease, settings)


def start_run(
    store: TrajectoryStore, corpus, samples_per_task: int, seed: int, retry_infra: bool, **plan_extra
):
    """Take the run folder's lock, find what is left to run and record the plan: (items, stats, plan_id)."""
    # One writer per run folder; released at the end or on an error, else when the process ends (the OS drops
    # a flock with its holder, crash and SIGKILL included).
    store.acquire()
    try:
        done = store.done_keys(retry_infra=retry_infra)
        items = plan_items(corpus, samples_per_task, done)
        stats = RolloutStats(planned=len(corpus.tasks) * samples_per_task)
        stats.skipped = stats.planned - len(items)
        plan_id = uuid.uuid4().hex
        store.write_plan(
            {
                "plan_id": plan_id,
                "episodes": stats.planned,
                "skipped": stats.skipped,
                "samples_per_task": samples_per_task,
                "tasks": [t.id for t in corpus.tasks],
                "seed": seed,
                "corpus": str(corpus.root),
                "retry_infra": retry_infra,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **plan_extra,
            }
        )
    except BaseException:
        store.release()
        raise
    return items, stats, plan_id


def finish_run(store: TrajectoryStore, stats, *, finalize: bool, **summary_extra) -> None:
    """Merge the parts into shards and write the summary (when `finalize`), then free the run folder."""
    try:
        if finalize:
            store.finalize()
            store.write_summary({**vars(stats), "episodes_per_s": stats.episodes_per_s, **summary_extra})
    finally:
        store.release()


async def rollout(
    corpus,
    policy_factory: Callable[[], Policy],
    out_dir: str | Path,
    *,
    samples_per_task: int = 1,
    in_flight: int = 8,
    backend="auto",
    pool=None,
    limits=None,
    budgets: Budgets | None = None,
    episode_timeout_s: float = 600.0,
    max_infra_retries: int = 2,
    seed: int = 0,
    commit_every: int = 16,
    progress: str | bool = True,
    finalize: bool = True,
    retry_infra: bool = True,
) -> RolloutStats:
    """Run `policy_factory()` policies over every task of `corpus` (`samples_per_task` times each).

    One rollout at a time writes `out_dir`: it holds the folder's lock from start to end (`RunBusy` at once if
    another holds it) and records its plan (`plan.json`) before the first episode. Resuming skips every
    committed (task, sample) except those recorded as infrastructure failures, which run again (their new
    row replaces the old) unless `retry_infra=False`. A folder that cannot be written (disk full, read-only)
    ends the run with `RunWriteError`; what was committed stays and the same call resumes.

    `backend=toolgym.envs.IN_PROCESS` runs the env servers in this process: only for policies
    marked `trusted` (the oracle and toolgym's baselines); a model's policy is refused.

    `progress`: "auto" (a bar on a terminal, else a line every 10 s on stderr), "bar", "lines" or "none"; True
    is "auto" and False "none".
    """
    from toolgym.envs import InProcess
    from toolgym.envs.lease import BY_NAME
    from toolgym.envs.spec import load_env_spec
    from toolgym.sandbox import SandboxPool

    progress = resolve_mode(progress)  # a wrong name fails here, before the run folder is touched
    if backend == "inprocess":
        raise ValueError(BY_NAME)
    settings = EpisodeSettings(budgets or Budgets(), episode_timeout_s, max_infra_retries, seed)
    store = TrajectoryStore(out_dir)
    items, stats, plan_id = start_run(store, corpus, samples_per_task, seed, retry_infra)
    try:
        specs = {env_id: load_env_spec(d) for env_id, d in corpus.env_dirs.items()}
    except BaseException:
        store.release()
        raise
    domains = {env_id: spec.domain for env_id, spec in specs.items()}
    own_pool = None
    queue: asyncio.Queue = asyncio.Queue()
    for chunk in env_chunks(items, in_flight):
        queue.put_nowait(chunk)
    pending: list[dict] = []
    bar = None
    if progress != "none":
        bar = Progress(stats.planned, "rollout", "ep", mode=progress, initial=stats.skipped)
    started = time.perf_counter()

    async def flush(force: bool = False) -> None:
        if pending and (force or len(pending) >= commit_every):
            rows = list(pending)
            pending.clear()
            await asyncio.to_thread(store.commit, rows)

    async def work() -> None:
        worker = new_worker(
            corpus, domains, policy_factory(), settings, backend=backend, pool=pool, limits=limits
        )
        mine: list = []
        while True:
            if not mine:
                try:
                    mine = list(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            task, sample = mine.pop(0)
            row = await worker.run(task, sample)
            stats.record(row)
            pending.append(row)
            await flush()
            if bar is not None:
                bar.update(1, **stats.figures())
        await worker.aclose()

    try:
        if pool is None and not isinstance(backend, InProcess):
            # Every sandbox holds the requirement sets of every environment the run serves (a derived image).
            sets = requirement_sets_of(specs, {t.env_id for t in corpus.tasks})
            extra = {"requirements": sets} if sets else {}
            own_pool = pool = SandboxPool(
                min(in_flight, max(len(items), 1)), backend=backend, limits=limits, **extra
            )
            await pool.start()
            started = time.perf_counter()  # the rate is of episodes, not of starting the pool
        await asyncio.gather(*(work() for _ in range(max(1, min(in_flight, len(items))))))
        await flush(force=True)
    except BaseException:
        store.release()  # what was committed stays; the folder is free for the next (resuming) run at once
        raise
    finally:
        if bar is not None:
            bar.close()
        if own_pool is not None:
            await own_pool.close()
    stats.wall_s = time.perf_counter() - started
    await asyncio.to_thread(
        finish_run,
        store,
        stats,
        finalize=finalize,
        samples_per_task=samples_per_task,
        seed=seed,
        corpus=str(corpus.root),
        plan_id=plan_id,
    )
    return stats


def content(row: dict) -> dict[str, Any]:
    """A decoded row without what legitimately differs between two runs of the same episodes (timings)."""
    row = dict(row)
    row.pop("wall_s", None)
    row["steps"] = [{k: v for k, v in s.items() if not k.endswith("_s")} for s in row["steps"]]
    return row
