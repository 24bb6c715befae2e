"""Task shards round-trip through real parquet files, byte-identically for the same tasks."""

from __future__ import annotations

import hashlib

from toolgym.envs import load_tasks
from toolgym.envs.shards import read_task_shards, write_task_shards
from toolgym.synth.reference import reference_envs


def all_reference_tasks():
    return [t for env in reference_envs() for t in load_tasks(env)]


def test_round_trip_and_filters(tmp_path):
    tasks = all_reference_tasks()
    paths = write_task_shards(tasks, tmp_path, shard_size=7)
    assert len(paths) == -(-len(tasks) // 7)
    back = read_task_shards(tmp_path)
    assert sorted(back, key=lambda t: t.id) == sorted(tasks, key=lambda t: t.id)
    only = read_task_shards(tmp_path, env_id="trip_planning")
    assert only and all(t.env_id == "trip_planning" for t in only)
    assert {t.category for t in read_task_shards(tmp_path, category="search")} == {"search"}


def test_same_tasks_same_bytes(tmp_path):
    tasks = all_reference_tasks()
    a = write_task_shards(tasks, tmp_path / "a")
    b = write_task_shards(list(reversed(tasks)), tmp_path / "b")
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in a]
    assert digest == [hashlib.sha256(p.read_bytes()).hexdigest() for p in b]


def test_loadable_by_pyarrow_dataset(tmp_path):
    import pyarrow.dataset as ds

    write_task_shards(all_reference_tasks(), tmp_path)
    table = ds.dataset(tmp_path, format="parquet").to_table()
    assert "prompt" in table.column_names and table.num_rows == len(all_reference_tasks())
