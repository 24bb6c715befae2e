"""The general family (every shape) at tiny scale: determinism, valid environments, validated tasks, dedupe,
resume."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from toolgym.envs import replay
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.shards import read_task_shards
from toolgym.envs.validate import validate_env
from toolgym.synth import general, pipeline
from toolgym.synth.family import distinctness_key


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".work" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    pipeline.synth_envs(out, seed=0, scale="tiny", workers=1, only=["general"])
    manifest = pipeline.synth_tasks(out, seed=0, scale="tiny", workers=1, only=["general"])
    return out, manifest


def test_every_env_validates_and_is_distinct(corpus):
    out, _ = corpus
    envs = sorted((out / "envs").iterdir())
    assert len(envs) == general.FAMILY.SCALES["tiny"][0] == len(general.shapes())
    keys = {distinctness_key(e) for e in envs}
    assert len(keys) == len(envs)
    tasks = read_task_shards(out / "tasks")
    for env in envs[:6]:
        assert validate_env(env, [t for t in tasks if t.env_id == env.name]) == []


def test_same_seed_same_bytes_other_seed_differs(corpus, tmp_path):
    out, _ = corpus
    pipeline.synth_envs(tmp_path / "a", seed=0, scale="tiny", workers=2, only=["general"])
    pipeline.synth_tasks(tmp_path / "a", seed=0, scale="tiny", workers=2, only=["general"])
    assert _tree_hash(tmp_path / "a") == _tree_hash(out)
    key = ("catalogue_orders", 0)
    general.FAMILY.build_env(tmp_path / "b", key, seed=1)
    eid = general.FAMILY.env_id(key)
    a = (out / "envs" / eid / "state" / "db.sqlite").read_bytes()
    assert (tmp_path / "b" / eid / "state" / "db.sqlite").read_bytes() != a


def test_reference_scores_one_do_nothing_and_guess_zero(corpus, tmp_path):
    out, _ = corpus
    tasks = read_task_shards(out / "tasks")
    assert len({t.difficulty for t in tasks}) >= 3
    for t in tasks[::15]:
        server = LocalEnvServer(Path(out / "envs" / t.env_id))
        task = {"id": t.id, "verifier": t.verifier, "params": t.params}
        assert replay(server, task, t.solution, t.answer)["reward"] == 1.0
        assert replay(server, task, [], "no idea")["reward"] == 0.0
        server.close()


def test_manifest_counts_match_shards(corpus):
    out, manifest = corpus
    tasks = read_task_shards(out / "tasks")
    assert manifest["tasks"] == len(tasks) == sum(manifest["by_domain"].values())
    assert sum(manifest["by_difficulty"].values()) == len(tasks)
    assert len({t.prompt[0].lower() for t in tasks}) == len(tasks)
    validated = sum(manifest["random_policy"]["tasks_by_wins"].values())
    assert validated == len(tasks) + manifest["drop_reasons"].get("too_easy_random", 0) + sum(
        manifest["drop_reasons"].get(k, 0) for k in ("exact_duplicate", "near_duplicate")
    )
    for name, info in manifest["shards"].items():
        assert hashlib.sha256((out / "tasks" / name).read_bytes()).hexdigest() == info["sha256"]


def test_every_shape_is_its_own_schema_with_its_own_tools(corpus):
    """Shapes differ in structure, not nouns: no two shapes share a tool set or a table layout."""
    import sqlite3

    out, _ = corpus
    by_shape: dict[str, tuple] = {}
    for env in sorted((out / "envs").iterdir()):
        spec = json.loads((env / "env.json").read_text())
        shape = spec["provenance"]["family"].split("/", 1)[1]
        tools = frozenset(t["function"]["name"] for t in spec["tools"])
        db = sqlite3.connect(env / "state" / "db.sqlite")
        tables = frozenset(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        db.close()
        assert len(tables) >= 3 and len(tools) >= 6, (shape, tables, tools)
        by_shape[shape] = (tools, tables)
    assert len(by_shape) == len(general.shapes())
    assert len({t for t, _ in by_shape.values()}) == len(by_shape)
    assert len({t for _, t in by_shape.values()}) == len(by_shape)


def test_near_duplicates_are_found():
    prompts = [
        "How many kitchen products cost more than 20 dollars in the shop today?",
        "How many kitchen products cost more than 20 dollars in the shop today ?",
        "Which fiction book is the cheapest one in the whole library catalogue?",
    ]
    assert pipeline.near_duplicates(prompts) == {1}


def test_distinctness_catches_a_copy(tmp_path):
    a = general.FAMILY.build_env(tmp_path / "s1", ("catalogue_orders", 3), seed=0)
    b = general.FAMILY.build_env(tmp_path / "s2", ("catalogue_orders", 3), seed=0)
    assert distinctness_key(a) == distinctness_key(b)
    c = general.FAMILY.build_env(tmp_path / "s2", ("catalogue_orders", 4), seed=0)
    assert distinctness_key(a) != distinctness_key(c)


def test_manifest_counts_distinct_tool_sets_rules_and_data(corpus, tmp_path):
    out, manifest = corpus
    counts = manifest["distinctness"]["by_category"]["general"]
    n = general.FAMILY.SCALES["tiny"][0]
    assert counts["environments"] == n and counts["data_sets"] == n
    # one variant per shape here: every shape has its own tools and rules
    assert counts["tool_sets"] == counts["rule_sets"] == n
    # a corpus holding two copies of one environment is refused
    (tmp_path / "envs").mkdir()
    for name in ("a", "b"):
        general.FAMILY.build_env(tmp_path / "envs", ("catalogue_orders", 3), seed=0).rename(
            tmp_path / "envs" / name
        )
    with pytest.raises(ValueError, match="share tool set, rules and data"):
        pipeline.distinctness(tmp_path, ["a", "b"])


def test_resume_after_interruption_gives_identical_output(corpus, tmp_path):
    out, _ = corpus
    run = tmp_path / "r"
    pipeline.synth_envs(run, seed=0, scale="tiny", workers=1, only=["general"])
    pipeline.synth_tasks(run, seed=0, scale="tiny", workers=1, only=["general"])
    # simulate a kill midway: some per-env work and the outputs are gone
    for marker in sorted((run / ".work" / "tasks").glob("*.json"))[::2]:
        marker.unlink()
    (run / "manifest.json").unlink()
    pipeline.synth_tasks(run, seed=0, scale="tiny", workers=1, only=["general"])
    assert _tree_hash(run) == _tree_hash(out)
    assert json.loads((run / "manifest.json").read_text())["tasks"] > 0


def test_report_renders_markdown_and_html(corpus, tmp_path):
    from toolgym.synth.report import write_report

    out, manifest = corpus
    text = write_report(out, md=tmp_path / "r.md", html_out=tmp_path / "r.html")
    assert f"{manifest['tasks']} tasks admitted" in text and "## By difficulty" in text
    assert f"| general | {manifest['envs']} | " in text  # the distinctness table
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") == 9 and "Sample tasks" in page


def test_cli_help_and_report(corpus, capsys):
    from toolgym.cli import build_parser
    from toolgym.commands import synth

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    if "synth" not in sub.choices:  # until the lead registers the module in toolgym/cli.py
        synth.add_parser(sub)
    args = parser.parse_args(["synth", "report", str(corpus[0])])
    assert args.func(args) == 0
    assert "Synthesized corpus" in capsys.readouterr().out
