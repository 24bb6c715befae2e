"""Rollouts on a Ray cluster: actors (one per node, or per N cores) each own a sandbox pool on their node's
Docker engine and play episodes with the local runner's own `EpisodeWorker`; the driver alone writes the run.

- Work goes out in env chunks (`env_chunks`, or one GRPO group per chunk); a chunk whose actor died (killed, or
  its node gone) goes back in the queue for another actor, and its episodes count the lost tries in
  `infra_retries`. The driver commits rows as chunks finish and drops any key it already has, so an episode is
  committed exactly once.
- Environments travel once through the object store (a tar of the folder) and are unpacked on each node into a
  cache keyed by their content hash (`~/.cache/toolgym/envs/<hash>/<env_id>`), checked against it, and reused.
- Every actor reaps the sandboxes of dead owners on its node when it starts and when the driver asks (the end
  of a run), so a killed actor's containers do not outlive it.

Ray is imported only here and in `cluster.py`, and only when a caller asks for Ray.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolgym.envs.shipping import pack_env, unpack_env

from .cluster import ClusterError, connect
from .loop import Budgets
from .progress import Progress, resolve_mode
from .rollout import (
    EpisodeSettings,
    RolloutStats,
    TrajectoryStore,
    decode_row,
    env_chunks,
    finish_run,
    new_worker,
    requirement_sets_of,
    start_run,
)


@dataclass
class RayRolloutStats(RolloutStats):
    ray: dict = field(default_factory=dict)
    """actors, actors_started, actors_lost, ray_retries (chunks run again after their actor died),
    duplicates_dropped."""


MAX_CHUNK_TRIES = 4
"""A chunk that lost this many actors in a row ends the run: the cluster is failing, not one node."""


def env_cache_root() -> Path:
    """Where a node keeps the environments shipped to it (TOOLGYM_ENV_CACHE, else ~/.cache/toolgym/envs)."""
    return Path(os.environ.get("TOOLGYM_ENV_CACHE") or Path.home() / ".cache" / "toolgym" / "envs")


class NodeEnvs:
    """What an `EpisodeWorker` on an actor knows of the environments: their folders in the node's cache and
    every task the actor has been sent."""

    def __init__(self) -> None:
        self.env_dirs: dict[str, Path] = {}
        self.tasks: dict[str, dict[str, Any]] = {}

    def add_tasks(self, tasks) -> None:
        for t in tasks:
            self.tasks.setdefault(t.env_id, {})[t.id] = t

    def tasks_of(self, env_id: str) -> list:
        return list(self.tasks.get(env_id, {}).values())


class RolloutActor:
    """One per node (or per N cores): a sandbox pool on this node's engine and up to `slots` chunks at once."""

    def __init__(self, slots: int, backend: Any, limits: Any, requirements: list[str], run_id: str) -> None:
        self.slots = slots
        self.run_id = run_id
        self.backend = backend
        self.limits = limits
        self.requirements = requirements
        self.pool = None
        self.cache = env_cache_root()
        self.envs = NodeEnvs()
        self.by_hash: dict[str, Path] = {}
        self.domains: dict[str, str] = {}
        self.policies: dict[str, Callable] = {}
        self.idle: list = []
        """Workers between chunks: each keeps its lease (and its sandbox and env server) for the next chunk."""
        self._setup: asyncio.Task | None = None
        self._unpacking: dict[str, asyncio.Task] = {}

    async def _start(self) -> None:
        from toolgym.envs import InProcess
        from toolgym.sandbox import SandboxPool

        if isinstance(self.backend, InProcess):
            return
        await asyncio.to_thread(self.reap)
        extra = {"requirements": self.requirements} if self.requirements else {}
        pool = SandboxPool(self.slots, backend=self.backend, limits=self.limits, run_id=self.run_id, **extra)
        await pool.start()
        self.pool = pool

    def reap(self) -> int:
        """Remove this node's sandboxes whose owner process is gone (a killed actor's, a crashed run's)."""
        from toolgym.envs import InProcess

        if isinstance(self.backend, InProcess) or self.backend not in ("auto", "docker"):
            return 0
        from toolgym.sandbox import reaper
        from toolgym.sandbox.engine import docker_client
        from toolgym.sandbox.errors import SandboxUnavailable

        try:
            return reaper.reap_dead(docker_client(timeout=10))
        except SandboxUnavailable:
            return 0  # no Docker on this node: the pool uses another backend

    async def _env_dir(self, env_id: str, digest: str, data_ref: list) -> Path:
        if digest not in self.by_hash:
            if digest not in self._unpacking:

                async def fetch() -> Path:
                    final = self.cache / digest / env_id
                    if not final.is_dir():
                        data = await data_ref[0]
                        await asyncio.to_thread(unpack_env, env_id, digest, data, self.cache)
                    return final

                self._unpacking[digest] = asyncio.ensure_future(fetch())
            path = await self._unpacking[digest]
            from toolgym.envs.spec import load_env_spec

            self.domains[env_id] = load_env_spec(path).domain
            self.by_hash[digest] = path
        return self.by_hash[digest]

    async def run_chunk(
        self, policy_ref: list, settings: EpisodeSettings, env: tuple, items: list
    ) -> list[dict]:
        """Play `items` ((task, sample) pairs of one environment) in order on one worker; their rows."""
        if self._setup is None:
            self._setup = asyncio.ensure_future(self._start())
        await self._setup
        key = policy_ref[0].hex()
        if key not in self.policies:
            self.policies[key] = await policy_ref[0]
        env_id, digest, data_ref = env
        self.envs.env_dirs[env_id] = await self._env_dir(env_id, digest, data_ref)
        self.envs.add_tasks(t for t, _ in items)
        if self.idle:
            worker = self.idle.pop()
            if worker.policy_key != key:
                worker.policy, worker.policy_key = self.policies[key](), key
        else:
            worker = new_worker(
                self.envs,
                self.domains,
                self.policies[key](),
                settings,
                backend=self.backend,
                pool=self.pool,
                limits=self.limits,
            )
            worker.policy_key = key
        worker.settings = settings
        rows = []
        try:
            for task, sample in items:
                rows.append(await worker.run(task, sample))
        except BaseException:
            await worker.aclose()
            raise
        self.idle.append(worker)
        return rows

    async def close(self) -> int:
        while self.idle:
            await self.idle.pop().aclose()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        return await asyncio.to_thread(self.reap)


@dataclass
class _Slot:
    actor: Any
    node_id: str
    busy: int = 0


class RayRolloutPool:
    """A reusable pool of rollout actors over one corpus's environments, for `ray_rollout` and for trainers
    (`rollout_groups`). Actors are placed one per alive node with CPUs (or one per `cpus_per_actor` of its
    CPUs); one that dies is replaced on its node while the node lives.

    `in_flight`: episodes at once per actor (its sandbox pool's size)."""

    def __init__(
        self,
        corpus,
        *,
        address: str = "auto",
        in_flight: int = 8,
        cpus_per_actor: int | None = None,
        backend: Any = "auto",
        limits: Any = None,
        num_cpus: int | None = None,
    ) -> None:
        from toolgym.envs.lease import BY_NAME
        from toolgym.envs.spec import load_env_spec

        if backend == "inprocess":
            raise ValueError(BY_NAME)
        if cpus_per_actor is not None and cpus_per_actor < 1:
            raise ValueError("--ray-cpus-per-actor must be at least 1")
        self.corpus = corpus
        self.address = address
        self.resources = connect(address, num_cpus=num_cpus)
        import ray

        self._ray = ray
        self.in_flight = max(1, in_flight)
        self.cpus_per_actor = cpus_per_actor
        self.backend = backend
        self.limits = limits
        specs = {env_id: load_env_spec(d) for env_id, d in corpus.env_dirs.items()}
        self.requirements = requirement_sets_of(specs, set(specs))
        self.run_id = f"ray-{uuid.uuid4().hex[:12]}"
        """Every sandbox of this pool's actors carries it (the `toolgym.run` label)."""
        self.slots: list[_Slot] = []
        self.shipped: dict[str, tuple[str, str, list]] = {}
        self.actors_started = 0
        self.actors_lost = 0
        self.ray_retries = 0
        self._actor_class = ray.remote(RolloutActor)
        self._place()
        if not self.slots:
            raise ClusterError(
                "the Ray cluster has no node with a CPU to place a rollout actor on: add a node with CPUs "
                "(or lower --ray-cpus-per-actor)"
            )

    # --- actors ----------------------------------------------------------------------------------------------

    def _wanted(self) -> dict[str, int]:
        """Actors each alive node should hold: one, or one per `cpus_per_actor` of its CPUs."""
        wanted = {}
        for node in self._ray.nodes():
            cpus = int(node.get("Resources", {}).get("CPU", 0))
            if node.get("Alive") and cpus >= (self.cpus_per_actor or 1):
                wanted[node["NodeID"]] = cpus // self.cpus_per_actor if self.cpus_per_actor else 1
        return wanted

    def _place(self) -> None:
        """Start the actors alive nodes lack (at the start, and after one died)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        held: dict[str, int] = {}
        for s in self.slots:
            held[s.node_id] = held.get(s.node_id, 0) + 1
        for node_id, n in sorted(self._wanted().items()):
            for _ in range(n - held.get(node_id, 0)):
                actor = self._actor_class.options(
                    num_cpus=self.cpus_per_actor or 1,
                    max_concurrency=self.in_flight,
                    max_restarts=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                ).remote(self.in_flight, self.backend, self.limits, self.requirements, self.run_id)
                self.slots.append(_Slot(actor, node_id))
                self.actors_started += 1

    def _lost(self, slot: _Slot) -> None:
        if slot in self.slots:
            self.slots.remove(slot)
            self.actors_lost += 1
            try:
                self._ray.kill(slot.actor, no_restart=True)  # unreachable is as good as dead: make it so
            except Exception:  # noqa: BLE001 - already gone
                pass
            if self.actors_lost <= 4 * max(1, self.actors_started):  # no endless respawning on a failing node
                self._place()

    @property
    def total_slots(self) -> int:
        return max(1, len(self.slots)) * self.in_flight

    # --- environments --------------------------------------------------------------------------------------

    def _env(self, env_id: str) -> tuple[str, str, list]:
        """(env_id, hash, [ref to its tar]): put into the object store once per pool; the ref is wrapped in a
        list so an actor fetches the bytes only when its node's cache lacks them."""
        if env_id not in self.shipped:
            digest, data = pack_env(Path(self.corpus.env_dirs[env_id]))
            self.shipped[env_id] = (env_id, digest, [self._ray.put(data)])
        return self.shipped[env_id]

    # --- scheduling ----------------------------------------------------------------------------------------

    def _policy_ref(self, policy_factory: Callable) -> list:
        try:
            return [self._ray.put(policy_factory)]
        except Exception as exc:  # noqa: BLE001 - whatever pickling raises
            raise ClusterError(
                f"the policy cannot be sent to Ray actors ({type(exc).__name__}: {exc}): pass a picklable "
                "factory, e.g. toolgym.agent.served_policy.ServedPolicy for a served model"
            ) from exc

    def stream(
        self,
        chunks: list[list],
        policy_factory: Callable,
        settings: EpisodeSettings,
        *,
        batches: bool = False,
    ) -> Iterator:
        """Run every chunk (a list of (task, sample) of one environment) and yield each chunk's rows as it
        finishes. A chunk whose actor died runs again elsewhere; its rows then count the lost tries in
        `infra_retries`. `batches`: yield (rows, last) instead, `last` on the last chunk of those found done
        together (the driver commits them as one part: its commit rate grows with the episode rate)."""
        ray = self._ray
        policy_ref = self._policy_ref(policy_factory)
        queue: deque = deque((chunk, 0) for chunk in chunks if chunk)
        outstanding: dict[Any, tuple[_Slot, list, int]] = {}
        while queue or outstanding:
            for slot in list(self.slots):
                while queue and slot.busy < self.in_flight:
                    chunk, tries = queue.popleft()
                    env = self._env(chunk[0][0].env_id)
                    ref = slot.actor.run_chunk.remote(policy_ref, settings, env, chunk)
                    outstanding[ref] = (slot, chunk, tries)
                    slot.busy += 1
            if not outstanding:
                raise ClusterError(
                    "every Ray rollout actor died and no alive node can take a new one: check the cluster "
                    "(`ray status`); the committed episodes are kept, so the same command resumes"
                )
            ready, rest = ray.wait(list(outstanding), num_returns=1, timeout=10.0)
            if ready and rest:  # everything else already done too: the driver commits them as one part
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for i, ref in enumerate(ready):
                slot, chunk, tries = outstanding.pop(ref)
                slot.busy -= 1
                try:
                    rows = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
                    self.ray_retries += 1
                    if tries + 1 >= MAX_CHUNK_TRIES:
                        raise ClusterError(
                            f"a chunk of {len(chunk)} episodes lost its Ray actor {tries + 1} times (last: "
                            f"{type(exc).__name__}); the cluster is failing: check `ray status`"
                        ) from exc
                    self._lost(slot)
                    queue.appendleft((chunk, tries + 1))
                    continue
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None  # our own code failed on the actor: say why
                for row in rows:
                    row["infra_retries"] += tries
                if batches:
                    yield rows, i == len(ready) - 1
                else:
                    yield rows

    def rollout_groups(
        self,
        tasks: list,
        policy_factory: Callable,
        G: int,
        *,
        seed: int = 0,
        budgets: Budgets | None = None,
        episode_timeout_s: float = 600.0,
        max_infra_retries: int = 2,
    ) -> Iterator[list[dict]]:
        """GRPO groups: `G` episodes of every task, each group (its rows, JSON decoded, by sample) yielded as
        soon as all of its episodes are done. Episode seeds follow `episode_seed(seed, task, sample)`, as in
        `rollout`."""
        settings = EpisodeSettings(budgets or Budgets(), episode_timeout_s, max_infra_retries, seed)
        unknown = sorted({t.env_id for t in tasks} - set(self.corpus.env_dirs))
        if unknown:
            raise ValueError(
                f"tasks name environments this pool's corpus does not hold: {', '.join(unknown[:5])}"
            )
        chunks = [[(t, s) for s in range(G)] for t in tasks]
        seen: set[str] = set()
        for rows in self.stream(chunks, policy_factory, settings):
            rows = [r for r in rows if r["key"] not in seen]
            seen.update(r["key"] for r in rows)
            if rows:
                yield [decode_row(r) for r in sorted(rows, key=lambda r: r["sample"])]

    def reap(self) -> int:
        """Ask every actor to remove its node's sandboxes of dead owners; how many were removed."""
        refs = [s.actor.reap.remote() for s in self.slots]
        done = 0
        for ref in refs:
            try:
                done += self._ray.get(ref, timeout=60)
            except Exception:  # noqa: BLE001 - an actor that died meanwhile
                pass
        return done

    def close(self) -> None:
        """Close every actor's sandbox pool (reaping its node), then end the actors."""
        refs = [s.actor.close.remote() for s in self.slots]
        for ref in refs:
            try:
                self._ray.get(ref, timeout=120)
            except Exception:  # noqa: BLE001
                pass
        for s in self.slots:
            try:
                self._ray.kill(s.actor, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self.slots.clear()

    def __enter__(self) -> RayRolloutPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def rollout_groups(
    tasks: list, policy_factory: Callable, G: int, *, pool: RayRolloutPool, **kw
) -> Iterator[list[dict]]:
    """`pool.rollout_groups(...)`: the trainer's entry point (see `RayRolloutPool`)."""
    return pool.rollout_groups(tasks, policy_factory, G, **kw)


def ray_rollout(
    corpus,
    policy_factory: Callable,
    out_dir: str | Path,
    *,
    address: str = "auto",
    num_cpus: int | None = None,
    cpus_per_actor: int | None = None,
    pool: RayRolloutPool | None = None,
    samples_per_task: int = 1,
    in_flight: int = 8,
    backend: Any = "auto",
    limits: Any = None,
    budgets: Budgets | None = None,
    episode_timeout_s: float = 600.0,
    max_infra_retries: int = 2,
    seed: int = 0,
    commit_every: int = 16,
    progress: str | bool = True,
    finalize: bool = True,
    retry_infra: bool = True,
) -> RayRolloutStats:
    """`rollout` on a Ray cluster: the same run folder (lock, plan, parts, resume, finalize), the same rows.

    `address`: "auto", "local" (a one-node cluster in this process, `num_cpus` caps it) or a cluster address.
    `in_flight` is per actor. The summary (`rollout.json`) adds `ray`: actors started and lost, chunks run
    again (`ray_retries`) and the duplicates dropped. Pass `pool` to reuse running actors."""
    progress = resolve_mode(progress)
    settings = EpisodeSettings(budgets or Budgets(), episode_timeout_s, max_infra_retries, seed)
    store = TrajectoryStore(out_dir)
    address = pool.address if pool is not None else address
    items, stats, plan_id = start_run(store, corpus, samples_per_task, seed, retry_infra, ray=address)
    own = pool is None
    bar = None
    duplicates = 0
    try:
        if own:
            pool = RayRolloutPool(
                corpus,
                address=address,
                in_flight=in_flight,
                cpus_per_actor=cpus_per_actor,
                backend=backend,
                limits=limits,
                num_cpus=num_cpus,
            )
        if progress != "none":
            bar = Progress(stats.planned, "rollout", "ep", mode=progress, initial=stats.skipped)
        started = time.perf_counter()
        retries_before = pool.ray_retries
        committed: set[str] = set()
        pending: list[dict] = []
        chunks = env_chunks(items, pool.total_slots)
        for rows, last in pool.stream(chunks, policy_factory, settings, batches=True):
            fresh = [r for r in rows if r["key"] not in committed]
            duplicates += len(rows) - len(fresh)
            committed.update(r["key"] for r in fresh)
            for row in fresh:
                stats.record(row)
            pending += fresh
            if last and len(pending) >= commit_every:
                store.commit(pending)
                pending = []
            if bar is not None and fresh:
                bar.update(len(fresh), **stats.figures())
        store.commit(pending)
        stats.wall_s = time.perf_counter() - started
        ray_summary = {
            "address": address,
            "actors": len(pool.slots),
            "actors_started": pool.actors_started,
            "actors_lost": pool.actors_lost,
            "ray_retries": pool.ray_retries - retries_before,
            "duplicates_dropped": duplicates,
        }
        pool.reap()
    except BaseException:
        store.release()  # what was committed stays; the same call resumes
        if own and pool is not None:
            pool.close()
        raise
    finally:
        if bar is not None:
            bar.close()
    if own:
        pool.close()
    stats = RayRolloutStats(**vars(stats), ray=ray_summary)
    finish_run(
        store,
        stats,
        finalize=finalize,
        samples_per_task=samples_per_task,
        seed=seed,
        corpus=str(corpus.root),
        plan_id=plan_id,
    )
    return stats
