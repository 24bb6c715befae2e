"""Task shards: task rows (`TaskSpec`) in sharded parquet files, written byte-for-byte deterministically.

One place for the task file format, so synthesis writes it and rollouts read it the same way. Nested fields
(params, solution, provenance, features; turns, config, metadata of format 2) travel as canonical JSON strings: any parquet reader loads the shards,
and the same tasks always give the same bytes. Shards written before a column existed (features) still load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .spec import TaskSpec

SHARD_GLOB = "*.parquet"
JSON_FIELDS = ("params", "solution", "provenance", "features", "turns", "config", "metadata")
OPTIONAL_FIELDS = ("features", "turns", "config", "metadata")
"""Columns added later: None when absent, and absent from older shards."""


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("env_id", pa.string()),
            ("category", pa.string()),
            ("difficulty", pa.int32()),
            ("prompt", pa.list_(pa.string())),
            ("verifier", pa.string()),
            ("params", pa.string()),
            ("solution", pa.string()),
            ("answer", pa.string()),
            ("user_instructions", pa.string()),
            ("provenance", pa.string()),
            ("features", pa.string()),
            ("turns", pa.string()),
            ("config", pa.string()),
            ("metadata", pa.string()),
        ]
    )


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def task_row(task: TaskSpec) -> dict:
    # format-2 fields at their defaults are left out of the dump: their columns hold null
    data = task.model_dump(mode="json")
    row = {name: data.get(name) for name in _schema().names}
    for name in JSON_FIELDS:
        row[name] = None if data.get(name) is None and name in OPTIONAL_FIELDS else _canonical(data[name])
    return row


def row_task(row: dict) -> TaskSpec:
    data = dict(row)
    for name in JSON_FIELDS:
        if data.get(name) is not None:
            data[name] = json.loads(data[name])
    return TaskSpec.model_validate({k: v for k, v in data.items() if v is not None or k in ("answer",)})


def write_task_shards(
    tasks: Iterable[TaskSpec], out_dir: str | Path, *, shard_size: int = 10_000, prefix: str = "tasks"
) -> list[Path]:
    """Write tasks sorted by id into `out_dir/<prefix>-00000.parquet`, ...; returns the files written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted((task_row(t) for t in tasks), key=lambda r: r["id"])
    paths = []
    for n, start in enumerate(range(0, max(len(rows), 1), shard_size)):
        chunk = rows[start : start + shard_size]
        table = pa.Table.from_pylist(chunk, schema=_schema())
        path = out / f"{prefix}-{n:05d}.parquet"
        # Fixed writer options (and no wall-clock metadata) keep the bytes a function of the rows alone.
        pq.write_table(
            table,
            path,
            compression="zstd",
            compression_level=3,
            write_statistics=False,
            use_dictionary=["env_id", "category", "verifier"],
        )
        paths.append(path)
    return paths


def read_task_shards(
    path: str | Path, *, env_id: str | None = None, category: str | None = None
) -> list[TaskSpec]:
    """Tasks from a shard file or a folder of shards, optionally only one environment's or category's."""
    import pyarrow.parquet as pq

    p = Path(path)
    files = sorted(p.glob(SHARD_GLOB)) if p.is_dir() else [p]
    if not files:
        raise FileNotFoundError(f"no task shards (*.parquet) in {p}")
    filters = []
    if env_id is not None:
        filters.append(("env_id", "=", env_id))
    if category is not None:
        filters.append(("category", "=", category))
    tasks = []
    for f in files:
        table = pq.read_table(f, filters=filters or None)
        tasks += [row_task(r) for r in table.to_pylist()]
    return tasks
