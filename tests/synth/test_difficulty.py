"""Measured difficulty: levels computed from features hold their two properties in every category (mean
reference calls rise strictly with level; level 5 holds >= 5%) on adversarial feature sets and on a demo
corpus; features travel through the shards; the same seed gives the same bytes."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import defaultdict
from statistics import fmean

import pytest
from toolgym.envs.shards import read_task_shards, write_task_shards
from toolgym.envs.spec import Provenance, TaskSpec, ToolCall
from toolgym.synth import pipeline
from toolgym.synth.difficulty import assign_levels, score

FAMILIES = ["general", "search"]


def task(i: int, category: str, feats: dict) -> TaskSpec:
    return TaskSpec(
        id=f"t{i:05d}",
        env_id="e",
        category=category,
        difficulty=1,
        prompt=[f"q{i}"],
        verifier="check_answer",
        params={"expected": str(i)},
        solution=[ToolCall(name="x", arguments={})] * feats["reference_calls"],
        provenance=Provenance(producer="test", family="test"),
        features=feats,
    )


def assert_levels_hold(tasks: list[TaskSpec]) -> None:
    by_cat = defaultdict(list)
    for t in tasks:
        by_cat[t.category].append(t)
    for cat, group in by_cat.items():
        levels = sorted({t.difficulty for t in group})
        assert set(levels) <= {1, 2, 3, 4, 5} and 5 in levels, (cat, levels)
        means = [fmean(t.features["reference_calls"] for t in group if t.difficulty == lv) for lv in levels]
        assert all(a < b for a, b in zip(means, means[1:], strict=False)), (cat, levels, means)
        assert sum(t.difficulty == 5 for t in group) >= 0.05 * len(group), cat
        # the score orders the levels: no task of a level scores above one of a higher level
        tops = [max(score(t.features) for t in group if t.difficulty == lv) for lv in levels]
        lows = [min(score(t.features) for t in group if t.difficulty == lv) for lv in levels]
        assert all(top <= low for top, low in zip(tops, lows[1:], strict=False)), cat


@pytest.mark.parametrize("seed", range(12))
def test_levels_hold_on_adversarial_features(seed):
    rng = random.Random(seed)
    tasks = []
    shapes = {
        "flat": lambda: 1,  # every task the same length
        "two": lambda: rng.choice([1, 1, 1, 1, 1, 1, 1, 1, 1, 4]),  # a rare long tail
        "wide": lambda: rng.randint(1, 14),
        "top_heavy": lambda: rng.choice([2, 6, 6, 6, 6]),
    }
    cats = ["general", "search", "code", "code_interpreter"]
    for cat, calls in zip(cats, rng.sample(list(shapes), 4), strict=True):
        for _ in range(rng.randint(1, 300)):
            feats = {
                "reference_calls": shapes[calls](),
                "writes": rng.randint(0, 3),
                "constraints": rng.randint(0, 4),
                "user_facts": rng.randint(0, 2),
                "distractors": rng.randint(0, 5),
                "distinct_tools": rng.randint(1, 4),
            }
            tasks.append(task(len(tasks), cat, feats))
    levelled, summary = assign_levels(tasks)
    assert_levels_hold(levelled)
    # a function of the features alone: any order, the same levels
    shuffled = rng.sample(tasks, len(tasks))
    again = {t.id: t.difficulty for t in assign_levels(shuffled)[0]}
    assert again == {t.id: t.difficulty for t in levelled}
    assert set(summary) == {t.category for t in tasks}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    pipeline.synth_envs(out, 0, "demo", 2, only=FAMILIES)
    manifest = pipeline.synth_tasks(out, 0, "demo", 2, sandbox_fraction=0.0, only=FAMILIES)
    return out, manifest


def test_levels_hold_on_a_demo_corpus(demo):
    out, manifest = demo
    tasks = read_task_shards(out / "tasks")
    assert tasks and all(t.features is not None for t in tasks)
    assert_levels_hold(tasks)
    for cat, d in manifest["difficulty"]["by_category"].items():
        shares = {lv: row["share"] for lv, row in d["levels"].items()}
        assert shares["5"] >= 0.05, cat
    # admitted tasks are solved by no shortcut, and the solve rates before the gate are reported
    assert all(t.features["shortcuts_tried"] for t in tasks)
    rates = manifest["shortcuts"]["by_family_level"]
    assert {k.split("/")[0] for k in rates} == set(FAMILIES)
    div = manifest["diversity"]
    assert set(div) == {t.category for t in tasks}
    assert all(0 < d["largest_skeleton_share"] <= 1 and d["skeletons"] <= d["tasks"] for d in div.values())


def test_same_seed_same_bytes(demo):
    out, manifest = demo
    shutil.rmtree(out / ".work" / "tasks")
    again = pipeline.synth_tasks(out, 0, "demo", 2, sandbox_fraction=0.0, only=FAMILIES)
    assert again == manifest


def test_features_round_trip_and_old_shards_load(tmp_path):
    import pyarrow.parquet as pq

    tasks = [
        task(i, "general", {"reference_calls": i % 4 + 1, "hardening": ["shortcut_one_call"]})
        for i in range(9)
    ]
    tasks.append(tasks[0].model_copy(update={"id": "plain", "features": None}))
    a = write_task_shards(tasks, tmp_path / "a", shard_size=4)
    b = write_task_shards(list(reversed(tasks)), tmp_path / "b", shard_size=4)
    assert [hashlib.sha256(p.read_bytes()).digest() for p in a] == [
        hashlib.sha256(p.read_bytes()).digest() for p in b
    ]
    back = {t.id: t for t in read_task_shards(tmp_path / "a")}
    assert back == {t.id: t for t in tasks}
    # a shard written before the column existed
    old = tmp_path / "old"
    old.mkdir()
    table = pq.read_table(a[0])
    pq.write_table(table.drop(["features"]), old / "tasks-00000.parquet")
    loaded = read_task_shards(old)
    assert [t.id for t in loaded] == [t.id for t in read_task_shards(a[0])]
    assert all(t.features is None for t in loaded)
    assert json.loads(json.dumps([t.model_dump(mode="json") for t in loaded]))
