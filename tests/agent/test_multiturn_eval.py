"""Multi-turn tasks through the real rollout path: rows keep each turn's verdict, eval reports per-turn and
whole-task success, and rescoring in a sandbox replays the recorded turns to the same verdicts."""

from __future__ import annotations

import asyncio

import pytest
from toolgym.agent.evaluate import evaluate, recorded_turns, rescore, to_markdown
from toolgym.agent.policies import OraclePolicy
from toolgym.agent.rollout import load_trajectories, rollout
from toolgym.envs import IN_PROCESS
from toolgym.envs.corpus import load_corpus

from tests.conftest import backend_or_skip
from tests.envs import multiturn_env
from tests.envs.test_multiturn import GT, Scripted


class Mixed:
    """The oracle on even samples, every call before the first answer on odd ones."""

    name = "mixed"
    trusted = True

    def __init__(self) -> None:
        self.n = -1

    def start(self, task, seed=None) -> None:
        self.n += 1
        self.inner = (
            OraclePolicy() if self.n % 2 == 0 else Scripted([GT[0] + GT[1] + GT[3], "ok", "ok", "no", "ok"])
        )
        self.inner.start(task)

    async def act(self, messages, tools):
        return await self.inner.act(messages, tools)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    multiturn_env.build(store)
    out = tmp_path_factory.mktemp("run")
    asyncio.run(
        rollout(
            load_corpus(store),
            Mixed,
            out,
            samples_per_task=4,
            in_flight=1,
            backend=IN_PROCESS,
            progress=False,
        )
    )
    return store, out


def test_rows_and_report_per_turn(run):
    store, out = run
    rows = load_trajectories(out)
    assert [r["reward"] for r in sorted(rows, key=lambda r: r["sample"])] == [1.0, 0.0, 1.0, 0.0]
    report = evaluate(rows, ks=(1,))
    assert report["overall"]["turns"] == 16
    # the hostile samples fail turns 1, 2 and 4 and pass turn 3 (no call asked, none made)
    assert report["overall"]["turn_success_rate"] == pytest.approx(10 / 16)
    assert {k: m["success_rate"] for k, m in report["by_turn"].items()} == {
        "1": 0.5,
        "2": 0.5,
        "3": 1.0,
        "4": 0.5,
    }
    assert "### By user turn" in to_markdown(report)


def test_recorded_turns_split_where_the_user_speaks(run):
    _, out = run
    row = next(r for r in load_trajectories(out) if r["sample"] == 0)
    turns = recorded_turns(row["messages"])
    assert [[c["name"] for c in t["calls"]] for t in turns] == [
        ["transfer"],
        ["balance", "add_note"],
        [],
        ["transfer"],
    ]
    assert [t["answer"] for t in turns] == ["Done.", "B has 80; noted.", "I cannot order food.", "Moved."]


@pytest.mark.docker
def test_rescore_in_a_sandbox_gives_the_same_turn_verdicts(run):
    store, out = run
    rows = load_trajectories(out)
    again = rescore(rows, load_corpus(store), backend=backend_or_skip("docker"))
    for old, new in zip(rows, again, strict=True):
        assert new["reward"] == old["reward"]
        assert new["verdict"]["turns"] == old["verdict"]["turns"]


def test_sft_export_of_multiturn_episodes(run, tmp_path):
    """Successful multi-turn episodes export with every turn (a system message mid-conversation included) and
    render in both encodings."""
    import json

    from toolgym.agent.encodings import ENCODINGS, render
    from toolgym.agent.export import export_sft

    _, out = run
    export_sft(load_trajectories(out), tmp_path / "sft", min_reward=1.0)
    samples = [json.loads(line) for line in (tmp_path / "sft" / "sft.jsonl").read_text().splitlines()]
    assert len(samples) == 2
    roles = [m["role"] for m in samples[0]["messages"]]
    assert roles.count("user") == 4 and roles.count("system") == 2
    for name in ENCODINGS:
        text = render(name, samples[0]["messages"], samples[0]["tools"], thinking=True)
        assert "Move 10 back from B to A." in text and "The user may ask you to keep notes." in text


def test_rl_prompts_open_with_the_first_turns_messages(run):
    """A task whose first turn is a message list exports those messages as the RL prompt (after the system
    prompt), as the episode opens."""
    from toolgym.agent.export import rl_prompt_rows
    from toolgym.envs.corpus import Corpus

    store, _ = run
    corpus = load_corpus(store)
    turns = multiturn_env.turns()
    turns[0]["prompt"] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Move 30."}]
    task = multiturn_env.task(turns=turns)
    row = rl_prompt_rows(Corpus(corpus.root, corpus.env_dirs, [task]))[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "system", "user"]
    assert row["prompt"][1:] == turns[0]["prompt"]
