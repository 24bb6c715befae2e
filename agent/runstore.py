"""The run folder of a rollout: one writer at a time, atomic commits, a plan, and readers that never lose rows.

Layout of `RUN/`:

- `.lock`: held (`fcntl.flock`, exclusive) by the one process writing the run, for the whole rollout; the OS
  drops it when that process ends, a crash or SIGKILL included. A second writer is refused with `RunBusy`.
- `plan.json`: what the latest rollout set out to do (episodes, tasks, samples per task, corpus), written
  before its first episode. `rollout.json`: the summary a rollout writes once it has finished (the latest
  one has finished when both carry the same `plan_id`).
- `parts/part-SEQ-ID.parquet`: committed episodes, written under a temporary name, fsynced and renamed (then
  the folder fsynced), so a part is there whole or not at all. SEQ grows with every commit.
- `trajectories/trajectories-NNNNN.parquet`: the sorted shards `finalize` merges the parts into.

A key (`task#sample`) may be recorded more than once (an infrastructure failure, then its retry): the newest
row wins, with shards older than parts and parts in commit order. Readers take no lock: they list the files,
read them, and list again, retrying when a concurrent `finalize` moved anything in between.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

JSON_COLUMNS = ("messages", "tools", "verdict", "answer", "steps", "malformed", "errors")
LOCK = ".lock"
PLAN = "plan.json"
SUMMARY = "rollout.json"
_OLD = ".trajectories.old"  # the shards being replaced, during a finalize
_NEW = ".trajectories.new"  # the shards being written, during a finalize


class RunFolderError(Exception):
    """A run folder that cannot be used as asked; the message is one sentence meant for the user."""


class RunBusy(RunFolderError):
    """Another rollout (this process or another) holds the run folder's lock."""


class RunWriteError(RunFolderError):
    """The run folder could not be written (disk full, read-only, no permission); what was committed stays."""


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("key", pa.string()),
            ("task_id", pa.string()),
            ("env_id", pa.string()),
            ("category", pa.string()),
            ("domain", pa.string()),
            ("difficulty", pa.int32()),
            ("sample", pa.int32()),
            ("seed", pa.int64()),
            ("policy", pa.string()),
            ("status", pa.string()),
            ("reward", pa.float64()),
            ("success", pa.bool_()),
            ("terminated", pa.bool_()),
            ("truncated", pa.bool_()),
            ("stop_reason", pa.string()),
            ("infra_retries", pa.int32()),
            ("n_steps", pa.int32()),
            ("n_tool_calls", pa.int32()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("wall_s", pa.float64()),
            ("error", pa.string()),
            *[(name, pa.string()) for name in JSON_COLUMNS],
        ]
    )


def decode_row(row: dict) -> dict:
    out = dict(row)
    for name in JSON_COLUMNS:
        if isinstance(out.get(name), str):
            out[name] = json.loads(out[name])
    return out


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """`write(tmp)` fills a temporary file beside `path`; it is fsynced and renamed over `path`, and the folder
    fsynced: a reader, a crash or a full disk leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


class TrajectoryStore:
    """The output folder of a run: committed parts while it runs, sorted shards once finalized.

    Writing (`commit`, `finalize`, `write_plan`, `write_summary`) is for the holder of the folder's lock
    (`acquire`, or `locked()`): `rollout` holds it from start to end, and `finalize` takes it itself when its
    store does not hold it yet, so two finalizes (or a finalize beside a rollout) never interleave; the loser
    gets `RunBusy`. Reading (`rows`, `done_keys`, `plan`) needs no lock and never creates anything.
    """

    def __init__(self, out_dir: str | Path) -> None:
        self.root = Path(out_dir)
        self.parts = self.root / "parts"
        self.shards = self.root / "trajectories"
        self._lock = None  # the open lock file while this store holds the lock
        self._seq = 0

    # --- the lock ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """OSErrors of writing the folder become one sentence (`RunWriteError`)."""
        try:
            yield
        except OSError as exc:
            raise RunWriteError(
                f"cannot write to the run folder {self.root}: {_reason(exc)}; the episodes committed before "
                "are kept, so free some space (or make the folder writable) and run the same command again to "
                "resume"
            ) from exc

    @property
    def holds_lock(self) -> bool:
        return self._lock is not None

    def acquire(self) -> None:
        """Take the folder's lock, or raise `RunBusy` at once. Released by `release`, when this store is
        garbage-collected, and by the OS when the process ends (crash and SIGKILL included)."""
        if self._lock is not None:
            return
        with self._writing():
            self.root.mkdir(parents=True, exist_ok=True)
            lock = open(self.root / LOCK, "a+")  # noqa: SIM115 - held open for the whole run
        try:
            for attempt in range(10):
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == 9:
                        raise
                    # `busy()` (eval) holds it shared for an instant: look again for 0.2 s. A live writer keeps it.
                    time.sleep(0.02)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise RunBusy(
                f"the run folder {self.root} is being written by another rollout ({holder}); wait for it to "
                "end, or give this one another --out"
            ) from None
        except BaseException:
            lock.close()
            raise
        self._lock = lock
        try:
            with self._writing():
                lock.seek(0)
                lock.truncate()
                lock.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}")
                lock.flush()
                self._recover()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            with contextlib.suppress(OSError):
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            lock.close()

    @contextlib.contextmanager
    def locked(self) -> Iterator[TrajectoryStore]:
        """Hold the lock for the block (a no-op when this store holds it already)."""
        if self._lock is not None:
            yield self
            return
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()

    def busy(self) -> bool:
        """Whether a rollout holds the folder's lock right now (this store aside)."""
        if self._lock is not None:
            return False
        try:
            probe = open(self.root / LOCK)  # noqa: SIM115
        except OSError:
            return False
        with probe:
            try:
                fcntl.flock(probe.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(probe.fileno(), fcntl.LOCK_UN)
            return False

    def _recover(self) -> None:
        """Under the lock: finish what a crash interrupted (a finalize between its renames, temporary files)."""
        old, new = self.root / _OLD, self.root / _NEW
        if old.is_dir() and not self.shards.exists():
            old.rename(self.shards)  # crashed between moving the old shards aside and moving the new ones in
        elif old.is_dir():
            _remove_tree(old)  # crashed after the new shards were in place: the old ones are merged into them
        if new.is_dir():
            _remove_tree(new)
        for tmp in [*self.root.glob(".*.tmp"), *self.parts.glob(".*.tmp")]:
            tmp.unlink(missing_ok=True)
        self.parts.mkdir(exist_ok=True)

    # --- reading ---------------------------------------------------------------------------------------------

    def _listing(self) -> tuple[list[Path], list[Path]]:
        """The committed shards (those being replaced first) and parts (in commit order): oldest first. Parts
        are listed first: a finalize deletes them only after their rows are in the new shards."""
        parts = sorted(self.parts.glob("*.parquet"))
        shards = sorted(self.shards.glob("*.parquet"))
        old = sorted((self.root / _OLD).glob("*.parquet"))
        return old + shards, parts

    @staticmethod
    def _fingerprint(files: list[Path]) -> list[tuple[str, int]]:
        out = []
        for f in files:
            try:
                out.append((str(f), f.stat().st_ino))
            except FileNotFoundError:
                out.append((str(f), -1))
        return out

    def _read(self, columns: list[str] | None = None) -> tuple[dict[str, dict], list[Path]]:
        """The newest row of every key, from one consistent view of the folder."""
        import pyarrow.parquet as pq

        for attempt in range(50):
            if attempt:
                time.sleep(0.01)
            shards, parts = self._listing()
            files = shards + parts
            before = self._fingerprint(files)
            try:
                newest: dict[str, dict] = {}
                for f in files:
                    for row in pq.read_table(f, columns=columns).to_pylist():
                        newest[row["key"]] = row
            except FileNotFoundError:
                continue  # a finalize moved it: look again
            # The view holds when nothing read has moved and the shards are the same; parts committed meanwhile
            # are newer than the view and simply not in it.
            if (
                self._fingerprint(files) == before
                and self._fingerprint(self._listing()[0]) == before[: len(shards)]
            ):
                return newest, files
        raise RunFolderError(f"the run folder {self.root} kept changing while it was read; try again")

    def rows(self) -> list[dict]:
        """The newest row of every key, sorted by key."""
        newest, _ = self._read()
        return [newest[k] for k in sorted(newest)]

    def done_keys(self, *, retry_infra: bool = False) -> set[str]:
        """Keys a resumed run skips: every committed key, or with `retry_infra` those whose newest row is not
        an infrastructure failure (those are run again, and the new row replaces the old)."""
        newest, _ = self._read(["key", "status"])
        return {k for k, r in newest.items() if not (retry_infra and r["status"] == "infra_error")}

    def plan(self) -> dict | None:
        """What the latest rollout planned (`plan.json`), or None (a run of an older toolgym)."""
        try:
            return json.loads((self.root / PLAN).read_text())
        except FileNotFoundError:
            return None

    def summary(self) -> dict | None:
        """The summary of a finished rollout (`rollout.json`), or None while running or when killed."""
        try:
            return json.loads((self.root / SUMMARY).read_text())
        except FileNotFoundError:
            return None

    # --- writing (the lock holder) ---------------------------------------------------------------------------

    def _need_lock(self) -> None:
        if self._lock is None:
            raise RuntimeError("write to a run folder only while holding its lock (TrajectoryStore.acquire)")

    def write_plan(self, plan: dict) -> None:
        """Record what this rollout sets out to do, before its first episode. A summary (`rollout.json`)
        describes the rollout whose plan has the same `plan_id`."""
        self._need_lock()
        with self._writing():
            atomic_write_text(self.root / PLAN, json.dumps(plan, indent=1, sort_keys=True))

    def write_summary(self, summary: dict) -> None:
        self._need_lock()
        with self._writing():
            atomic_write_text(self.root / SUMMARY, json.dumps(summary, indent=2, sort_keys=True))

    def _next_seq(self) -> int:
        """A commit number above every part's: commit order survives a clock that steps back."""
        if not self._seq:
            for f in self.parts.glob("part-*.parquet"):
                with contextlib.suppress(ValueError, IndexError):
                    self._seq = max(self._seq, int(f.name.split("-")[1]))
        self._seq = max(self._seq + 1, time.time_ns())
        return self._seq

    def commit(self, rows: list[dict]) -> None:
        """Write rows as one part, atomically: a reader (or a resumed run) sees all of them or none."""
        if not rows:
            return
        self._need_lock()
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows, schema=_schema())
        name = f"part-{self._next_seq():020d}-{uuid.uuid4().hex[:8]}.parquet"
        with self._writing():
            atomic_write(self.parts / name, lambda tmp: pq.write_table(table, tmp, compression="zstd"))

    def finalize(self, shard_size: int = 5000) -> list[Path]:
        """Merge everything committed into `trajectories/trajectories-NNNNN.parquet`, sorted by (task, sample),
        the newest row of each key. Takes the lock unless this store holds it (`RunBusy` if another does). A
        crash or a full disk at any point leaves every committed row readable, and the next lock holder tidies
        up."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        with self.locked(), self._writing():
            newest, merged = self._read()
            rows = [newest[k] for k in sorted(newest)]
            staging, old = self.root / _NEW, self.root / _OLD
            if staging.exists():
                _remove_tree(staging)
            staging.mkdir()
            names = []
            try:
                for n, start in enumerate(range(0, len(rows), shard_size)):
                    table = pa.Table.from_pylist(rows[start : start + shard_size], schema=_schema())
                    path = atomic_write(
                        staging / f"trajectories-{n:05d}.parquet",
                        lambda tmp, table=table: pq.write_table(table, tmp, compression="zstd"),
                    )
                    names.append(path.name)
            except BaseException:
                with contextlib.suppress(OSError):
                    _remove_tree(staging)
                raise
            # Swap in the new shards only once they are complete and on disk. Readers see every row at every
            # step: old shards (in `trajectories/` or `.trajectories.old/`) and parts until the new shards are
            # in place, and `_recover` finishes a swap a crash cut short.
            if self.shards.exists():
                if old.exists():
                    _remove_tree(old)
                self.shards.rename(old)
            staging.rename(self.shards)
            fsync_dir(self.root)
            for f in merged:
                if f.parent == self.parts:
                    f.unlink()
            fsync_dir(self.parts)
            if old.exists():
                _remove_tree(old)
            fsync_dir(self.root)
            return [self.shards / name for name in names]


def _remove_tree(folder: Path) -> None:
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()


def load_trajectories(run_dir: str | Path) -> list[dict]:
    """Every row of a run (finalized or not, finished or killed), JSON columns decoded, sorted by (task,
    sample); the newest row of a key recorded twice."""
    return [decode_row(r) for r in TrajectoryStore(run_dir).rows()]


def run_progress(run_dir: str | Path, rows: list[dict] | None = None) -> dict[str, Any]:
    """Planned against done for a run folder: `planned` (None when no plan was recorded), `done` (episodes of
    the plan with a row), `finished` (its rollout ended and wrote `rollout.json`), `running` (a rollout holds
    it now), `partial`, and `note`, one line for reports ("partial: 120 of 300 episodes; ..."), empty for a
    complete run."""
    store = TrajectoryStore(run_dir)
    if rows is None:
        rows = store.rows()
    plan, summary, running = store.plan(), store.summary(), store.busy()
    # finished: the latest rollout (the one that wrote the plan) wrote its summary
    finished = summary is not None and (not plan or summary.get("plan_id") == plan.get("plan_id"))
    planned = plan.get("episodes") if plan else None
    done = len(rows)
    if plan and plan.get("tasks") is not None:
        tasks, samples = set(plan["tasks"]), plan.get("samples_per_task", 1)
        done = sum(r["task_id"] in tasks and r["sample"] < samples for r in rows)
    if planned is not None:
        partial = done < planned
        note = f"partial: {done} of {planned} episodes" if partial else ""
    else:
        partial = not finished
        note = f"partial: {done} episodes (the run did not finish and recorded no plan)" if partial else ""
    if partial and running:
        note += "; its rollout is still running"
    elif partial:
        note += "; the run stopped before it finished (the same `toolgym rollout` command resumes it)"
    return {
        "planned": planned,
        "done": done,
        "finished": finished,
        "running": running,
        "partial": partial,
        "note": note,
    }


def is_run_dir(path: str | Path) -> bool:
    path = Path(path)
    return any((path / name).exists() for name in ("trajectories", "parts", PLAN, SUMMARY))


def run_corpus(run_dir: str | Path) -> str | None:
    """The corpus a run used, from its summary or (for a killed run) its plan; None when neither says."""
    store = TrajectoryStore(run_dir)
    for record in (store.plan(), store.summary()):
        if record and record.get("corpus"):
            return record["corpus"]
    return None


__all__ = [
    "JSON_COLUMNS",
    "RunBusy",
    "RunFolderError",
    "RunWriteError",
    "TrajectoryStore",
    "atomic_write",
    "atomic_write_text",
    "decode_row",
    "is_run_dir",
    "load_trajectories",
    "run_corpus",
    "run_progress",
]
