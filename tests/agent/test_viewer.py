"""The trajectory viewer's files, from real runs: what the page is given, that it is escaped, deterministic and
linked from the eval report. The page itself is driven in a real browser in tests/integration."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from toolgym.agent.rollout import trajectory_row
from toolgym.agent.runstore import TrajectoryStore, load_trajectories
from toolgym.agent.trajectory import StepRecord, Trajectory
from toolgym.agent.viewer import CHUNK, build_view, episode_view

from toolgym.cli import main

HOSTILE_SCRIPT = "</script><script>window.pwned=1</script>"
HOSTILE_IMG = '<img src=x onerror="window.pwned2=1">'
HOSTILE_TASK = 'hostile&<1>#"x"'


def oracle_rollout(out: Path, policy: str = "oracle") -> Path:
    """A real rollout of the reference tasks (in-process env servers: the oracle and random are trusted)."""
    cmd = [sys.executable, "-m", "toolgym", "rollout", "reference", "--policy", policy, "--out", str(out)]
    cmd += ["--backend", "inprocess", "--progress", "none"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out


class _Task:
    id, env_id, category, difficulty = HOSTILE_TASK, "hostile_env", "general", 2


def hostile_rows() -> list[dict]:
    """Episodes whose every agent-written field tries to break out of the page: two user turns (the first
    turn's reasoning is dropped when the second arrives), a refused call, a malformed output."""
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "lookup", "arguments": json.dumps({"q": HOSTILE_IMG})},
    }
    refusal = f"Error: no such thing {HOSTILE_SCRIPT}"
    messages = [
        {"role": "system", "content": "You help. " + HOSTILE_SCRIPT},
        {"role": "user", "content": f"Find it {HOSTILE_SCRIPT} now {HOSTILE_IMG}"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "think " + HOSTILE_SCRIPT,
            "tool_calls": [call],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "lookup", "content": refusal},
        {"role": "assistant", "content": "first answer " + HOSTILE_IMG, "reasoning_content": "turn one done"},
        {"role": "user", "content": "And the second thing?"},
        {"role": "assistant", "content": "second answer", "reasoning_content": "still in my context"},
    ]
    steps = [
        StepRecord(0, 0.5, 0.25, 0.01, 10, 5, 1, [{"kind": "tool_error", "detail": refusal}]),
        StepRecord(1, 0.2, 0.0, 0.01, 10, 5, 0, [{"kind": "parse", "detail": "bad JSON " + HOSTILE_SCRIPT}]),
        StepRecord(2, 0.3, 0.125, 0.01, 10, 5),
        StepRecord(3, 0.4, 0.125, 0.01, 10, 5),
    ]
    rows = []
    for sample, reward in enumerate((0.0, 1.0)):
        traj = Trajectory(
            env_id="hostile_env",
            task_id=HOSTILE_TASK,
            policy="hostile",
            seed=sample,
            messages=messages,
            tools=[{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
            reward=reward,
            terminated=True,
            stop_reason="answer",
            verdict={"reward": reward, "reason": "verdict " + HOSTILE_IMG},
            answer="second answer " + HOSTILE_SCRIPT,
            steps=steps,
            malformed=[{"step": 1, "text": "<tool_call>{" + HOSTILE_SCRIPT, "errors": ["bad JSON"]}],
            wall_s=1.5,
        )
        rows.append(trajectory_row(traj, _Task, "hostile_domain", sample))
    return rows


def add_rows(run: Path, rows: list[dict]) -> None:
    store = TrajectoryStore(run)
    with store.locked():
        store.commit(rows)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {"oracle": oracle_rollout(root / "oracle"), "random": oracle_rollout(root / "random", "random")}
    add_rows(out["random"], hostile_rows())
    return out


def read_data(path: Path) -> object:
    """The value a data file hands to the page (`TG.x(value);`, or `TG.chunk(dir, n, value);`)."""
    text = path.read_text(encoding="ascii")
    return json.loads("[" + re.fullmatch(r"TG\.\w+\((.*)\);\n", text, re.S).group(1) + "]")[-1]


def test_a_real_run_as_list_columns_and_episode_chunks(runs, tmp_path):
    page = build_view(runs["oracle"], tmp_path / "view")
    rows = load_trajectories(runs["oracle"])
    assert page == tmp_path / "view" / "index.html" and page.is_file()
    index = read_data(tmp_path / "view" / "data" / "index.js")
    cols = index["runs"][0]["cols"]
    assert len(cols["task"]) == len(rows) and index["pairs"] is None
    assert [index["tables"]["task"][t] for t in cols["task"]] == [r["task_id"] for r in rows]
    assert [index["tables"]["category"][c] for c in cols["category"]] == [r["category"] for r in rows]
    assert sum(cols["success"]) == sum(r["success"] for r in rows) == len(rows)
    chunks = sorted((tmp_path / "view" / "data" / "a").glob("*.js"))
    assert len(chunks) == -(-len(rows) // CHUNK)
    episodes = [e for c in chunks for e in read_data(c)]
    assert [e["key"] for e in episodes] == [r["key"] for r in rows]
    prompts = read_data(tmp_path / "view" / "data" / "text.js")
    row = next(r for r in rows if r["task_id"] == "search-000")
    search = prompts[index["tables"]["task"].index("search-000")][1]
    assert search == next(m["content"] for m in row["messages"] if m["role"] == "user")


def test_episode_timeline_joins_steps_calls_results_and_marks_dropped_reasoning(runs):
    row = next(r for r in load_trajectories(runs["oracle"]) if r["task_id"] == "order_desk-004")
    view = episode_view(row)
    kinds = [it["t"] for it in view["items"]]
    assert kinds.count("user") == 2 and kinds.count("step") == len(row["steps"])
    second_user = [i for i, m in enumerate(row["messages"]) if m["role"] == "user"][1]
    steps = [it for it in view["items"] if it["t"] == "step"]
    before = [s for s in steps if s["turn"] == 1]
    after = [s for s in steps if s["turn"] == 2]
    assert before and after
    # The thinking rule: earlier reasoning leaves the context when the second user message arrives.
    assert all(s["dropped"] == [2, second_user] for s in before if s["reasoning"])
    assert all(s["dropped"] is None for s in after)
    calls = [c for s in steps for c in s["calls"]]
    assert len(calls) == row["n_tool_calls"] and all(
        c["result"] is not None and c["kind"] is None for c in calls
    )
    assert view["verdict"]["reason"] == row["verdict"]["reason"]
    assert view["timing"]["tools_s"] == pytest.approx(sum(s["env_s"] for s in row["steps"]), abs=1e-3)
    assert [s["step"] for s in steps] == [s["index"] for s in row["steps"]]


def test_per_call_error_kinds_and_malformed_output(runs):
    rows = load_trajectories(runs["random"])
    refused = next(r for r in rows if r["errors"].get("tool_error"))
    calls = [c for it in episode_view(refused)["items"] if it["t"] == "step" for c in it["calls"]]
    assert sum(c["kind"] == "tool_error" for c in calls) == refused["errors"]["tool_error"]
    hostile = episode_view(next(r for r in rows if r["task_id"] == HOSTILE_TASK))
    items = hostile["items"]
    assert [it["t"] for it in items] == ["system", "user", "step", "malformed", "step", "user", "step"]
    assert items[2]["calls"][0]["kind"] == "tool_error" and items[2]["errors"] == []
    assert items[3]["errors"] == ["bad JSON"]
    assert [it["dropped"] for it in items if it["t"] == "step"] == [[2, 5], [2, 5], None]
    assert [it["step"] for it in items if it["t"] in ("step", "malformed")] == [0, 1, 2, 3]


def test_agent_text_cannot_break_out_of_the_data_files(runs, tmp_path):
    build_view(runs["random"], tmp_path / "view")
    files = sorted((tmp_path / "view" / "data").rglob("*.js"))
    for f in files:
        raw = f.read_bytes()
        assert raw.isascii() and b"<" not in raw and b">" not in raw and b"&" not in raw, f
    # ...and the text comes back exactly as the agent wrote it.
    text = "".join(json.dumps(read_data(f)) for f in files)
    assert json.dumps(HOSTILE_SCRIPT)[1:-1] in text and json.dumps(HOSTILE_IMG)[1:-1] in text
    page = (tmp_path / "view" / "index.html").read_text()
    assert "innerHTML" not in page and "pwned" not in page


def test_same_run_same_bytes(runs, tmp_path):
    first = build_view(runs["random"], tmp_path / "one", compare=runs["oracle"]).parent
    second = build_view(runs["random"], tmp_path / "two", compare=runs["oracle"]).parent
    before = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert before == {p.relative_to(second): p.read_bytes() for p in second.rglob("*") if p.is_file()}
    build_view(runs["random"], first, compare=runs["oracle"])  # rebuilt in place: replaced whole, same bytes
    assert before == {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}


def test_compare_pairs_episodes_of_the_same_task_and_sample(runs, tmp_path):
    page = build_view(runs["random"], compare=runs["oracle"])
    assert page == runs["random"] / "view-vs-oracle" / "index.html"
    index = read_data(page.parent / "data" / "index.js")
    a, b = index["runs"]
    assert (a["name"], b["name"]) == ("random", "oracle") and (a["policy"], b["policy"]) == (
        ["hostile", "random"],
        ["oracle"],
    )
    tasks = index["tables"]["task"]
    pa, pb = index["pairs"]
    assert len(pa) == len(
        a["cols"]["task"]
    )  # every oracle task is in the random run; the hostile ones only there
    for i, j in zip(pa, pb, strict=True):
        if j >= 0:
            assert tasks[a["cols"]["task"][i]] == tasks[b["cols"]["task"][j]]
            assert a["cols"]["sample"][i] == b["cols"]["sample"][j]
        else:
            assert tasks[a["cols"]["task"][i]] == HOSTILE_TASK
    assert sum(j >= 0 for j in pb) == len(b["cols"]["task"])


def test_eval_report_rows_link_to_the_filtered_viewer(runs, capsys):
    assert main(["eval", str(runs["oracle"])]) == 0
    assert "episodes: " in capsys.readouterr().out
    report = (runs["oracle"] / "eval" / "report.html").read_text()
    assert '<a href="../view/index.html#category=search">search</a>' in report
    assert '<a href="../view/index.html#difficulty=3">3</a>' in report
    assert '<a href="../view/index.html#domain=order_desk">order_desk</a>' in report
    assert (runs["oracle"] / "view" / "data" / "index.js").is_file()


def test_user_errors_are_one_sentence(runs, tmp_path, capsys):
    assert main(["view", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert main(["view", str(runs["oracle"]), "--out", str(precious)]) == 2
    assert "is not a toolgym view" in capsys.readouterr().err and (precious / "notes.txt").exists()


def test_the_help_example_runs_as_written(tmp_path):
    from toolgym.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    example = sub.choices["view"].epilog.split("\n", 1)[1]
    for line in example.splitlines():
        cmd = line.split("#")[0].split()
        assert cmd[0] == "toolgym"
        done = subprocess.run(
            [sys.executable, "-m", "toolgym", *cmd[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs/random/view/index.html").is_file()
    assert (tmp_path / "runs/random/view-vs-oracle/index.html").is_file()
