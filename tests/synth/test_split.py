"""Held-out splits: whole environments (general: whole schema shapes) on one side, seeded, the same bytes twice,
and both sides loadable corpora."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from toolgym.envs import EnvSpec, Provenance, TaskSpec, write_env_spec
from toolgym.envs.corpus import Corpus, load_corpus
from toolgym.envs.shards import write_task_shards
from toolgym.synth.split import plan_split, split_corpus

ENVS = (
    [(f"g-{shape}-{i}", "general", f"general/{shape}") for shape in "abcde" for i in range(1 + (shape < "c"))]
    + [(f"s-{i}", "search", "search/wiki") for i in range(5)]
    + [("c-0", "code", "code/repo")]
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    env_dirs, tasks = {}, []
    for env_id, category, family in ENVS:
        env_dir = root / "envs" / env_id
        env_dir.mkdir(parents=True)
        (env_dir / "tools.py").write_text("")
        spec = EnvSpec(
            id=env_id,
            category=category,
            domain="d",
            description="x",
            tools=[],
            provenance=Provenance(producer="template", family=family),
        )
        write_env_spec(env_dir, spec)
        env_dirs[env_id] = env_dir
        for n in range(2):
            tasks.append(
                TaskSpec(
                    id=f"{env_id}-{n}",
                    env_id=env_id,
                    category=category,
                    prompt=["q"],
                    verifier="v",
                    provenance=spec.provenance,
                )
            )
    write_task_shards(tasks, root / "tasks")
    return Corpus(root, env_dirs, sorted(tasks, key=lambda t: t.id))


def test_whole_units_on_one_side(corpus):
    plan = plan_split(corpus, 0.2, seed=0)
    # general by shape: 5 shapes (a and b with two environments each), search by environment, code alone
    assert sorted(u for u in plan if u.startswith("general:")) == [f"general:general/{s}" for s in "abcde"]
    assert plan["general:general/a"]["envs"] == ["g-a-0", "g-a-1"]
    held = {
        c: sum(u["part"] == "held_out" for u in plan.values() if u["category"] == c)
        for c in ("general", "search", "code")
    }
    assert held == {"general": 1, "search": 1, "code": 0}
    seeds = {json.dumps(plan_split(corpus, 0.2, seed=s), sort_keys=True) for s in range(6)}
    assert len(seeds) > 1 and json.dumps(plan_split(corpus, 0.2, 3)) == json.dumps(plan_split(corpus, 0.2, 3))
    with pytest.raises(ValueError, match="share between 0 and 1"):
        plan_split(corpus, 1.5)


def test_written_split_loads_and_repeats_byte_for_byte(corpus, tmp_path):
    a = split_corpus(corpus, tmp_path / "a", 0.4, seed=1)
    split_corpus(corpus, tmp_path / "b", 0.4, seed=1)
    for rel in (
        "split.json",
        "train/manifest.json",
        "held_out/manifest.json",
        "held_out/tasks/tasks-00000.parquet",
    ):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    train, held = load_corpus(tmp_path / "a" / "train"), load_corpus(tmp_path / "a" / "held_out")
    assert not set(train.env_dirs) & set(held.env_dirs)
    assert len(train.tasks) + len(held.tasks) == len(corpus.tasks)
    shapes = {
        json.loads((held.env_dirs[e] / "env.json").read_text())["provenance"]["family"] for e in held.env_dirs
    }
    train_shapes = {
        json.loads((train.env_dirs[e] / "env.json").read_text())["provenance"]["family"]
        for e in train.env_dirs
    }
    assert not {s for s in shapes if s.startswith("general/")} & train_shapes
    assert a["alone"] == ["code"] and a["parts"]["held_out"]["units"] == 4  # general 2 of 5, search 2 of 5


def test_command_line(corpus, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "toolgym", "synth", "split", str(corpus.root), "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "held_out" in out and "note: code has a single environment" in out
    assert (Path(tmp_path / "s" / "held_out" / "manifest.json")).is_file()
