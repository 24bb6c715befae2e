"""The train loop: SFT token data as the policy reads and writes it (thinking rule, loss masks), GRPO sequences
from the ids the engine sampled, and both jobs end to end on a tiny model through sandboxed rollouts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from toolgym.agent.encodings import render
from toolgym.agent.runstore import load_trajectories
from toolgym.agent.training import (
    EvalSettings,
    GRPOJob,
    SFTJob,
    compare_by_category,
    sampled_sequences,
    sft_sequences,
    step_texts,
    train_grpo,
    train_sft,
)

from tests.integration import tiny_hf_model

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the documents.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    }
]


def _call(i: int, query: str) -> dict:
    return {
        "id": f"c{i}",
        "type": "function",
        "function": {"name": "search", "arguments": json.dumps({"query": query})},
    }


MESSAGES = [
    {"role": "system", "content": "You help."},
    {"role": "user", "content": "Where is the fair?"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "FIRST-THOUGHT",
        "tool_calls": [_call(1, "fair")],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "doc 7: the fair is in Dilora"},
    {"role": "assistant", "content": "Dilora.", "reasoning_content": "SECOND-THOUGHT"},
    {"role": "user", "content": "And the market?"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "THIRD-THOUGHT",
        "tool_calls": [_call(2, "market")],
    },
    {"role": "tool", "tool_call_id": "c2", "content": "doc 9: the market is in Oss"},
    {"role": "assistant", "content": "Oss.", "reasoning_content": "FOURTH-THOUGHT"},
]


@pytest.mark.parametrize("encoding", ["hermes", "deepseek_v32"])
def test_step_texts_follow_the_thinking_rule_and_end_with_the_stop(encoding):
    pairs = step_texts(MESSAGES, TOOLS, encoding=encoding)
    assert len(pairs) == 4
    prompts = [p for p, _ in pairs]
    # inside a user turn the tool loop keeps its reasoning; a new user message drops the earlier turns'
    assert "FIRST-THOUGHT" in prompts[1]
    assert "FIRST-THOUGHT" not in prompts[2] and "SECOND-THOUGHT" not in prompts[2]
    assert "THIRD-THOUGHT" in prompts[3] and "FIRST-THOUGHT" not in prompts[3]
    # tool calls and results always stay
    assert "doc 7" in prompts[3] and "doc 9" in prompts[3]
    assert prompts[3].count("search") == prompts[1].count("search") + 1
    stop = "<|im_end|>" if encoding == "hermes" else "<｜end▁of▁sentence｜>"
    for (prompt, written), thought in zip(pairs, ["FIRST", "SECOND", "THIRD", "FOURTH"], strict=True):
        assert written.endswith(stop) and written.count(stop) == 1
        assert f"{thought}-THOUGHT" in written and f"{thought}-THOUGHT" not in prompt


def test_a_prompt_is_exactly_what_the_policy_renders_for_that_step():
    from toolgym.agent.thinking import apply_thinking_rule

    pairs = step_texts(MESSAGES, TOOLS, encoding="hermes")
    assistants = [i for i, m in enumerate(MESSAGES) if m["role"] == "assistant"]
    for (prompt, _), j in zip(pairs, assistants, strict=True):
        assert prompt == render("hermes", apply_thinking_rule(MESSAGES[:j]), TOOLS, True)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return tiny_hf_model.build(tmp_path_factory.mktemp("tiny") / "qwen")


def _trained_runs(seq) -> list[list[int]]:
    """The runs of consecutive trained ids of a sequence, in order."""
    runs: list[list[int]] = []
    for i, (t, m) in enumerate(zip(seq.ids, seq.mask, strict=True)):
        if m:
            if i == 0 or not seq.mask[i - 1]:
                runs.append([])
            runs[-1].append(t)
    return runs


def _row(messages, key="t#0", category="search", reward=1.0, status="ok"):
    return {
        "key": key,
        "task_id": key.split("#")[0],
        "category": category,
        "status": status,
        "reward": reward,
        "messages": json.dumps(messages),
        "tools": json.dumps(TOOLS),
    }


def test_sft_sequences_train_only_the_assistants_tokens(tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    rows = [
        _row(MESSAGES),
        _row(MESSAGES, key="u#0", reward=0.0),
        _row(MESSAGES, key="v#0", status="infra_error"),
    ]
    seqs, info = sft_sequences(rows, tok)
    assert info["rows"] == 1  # failures and infrastructure errors are not samples
    # one sequence per user turn: the second turn's prompt no longer holds the first turn's reasoning
    assert len(seqs) == 2
    written = [w for _, w in step_texts(MESSAGES, TOOLS)]
    trained = [tok.decode(run) for s in seqs for run in _trained_runs(s)]
    assert trained == written
    full = tok.decode(seqs[1].ids)
    assert "FIRST-THOUGHT" not in full and "THIRD-THOUGHT" in full
    assert sft_sequences(rows, tok, max_tokens=10)[1]["too_long"] == 1


def test_grpo_sequences_are_the_ids_the_engine_sampled(tiny_dir, tmp_path):
    from toolgym.agent.local import load_model
    from toolgym.agent.training import run_policy
    from toolgym.envs.corpus import load_corpus

    model, tok = load_model(tiny_dir)
    corpus = load_corpus("reference").per_category(1)
    trace: dict = {}
    settings = EvalSettings(max_steps=2, max_tokens=6, temperature=1.0, in_flight=4)
    rows = run_policy(model, tok, corpus, tmp_path / "run", settings=settings, samples=2, seed=3, trace=trace)
    assert len(rows) == 2 * len(corpus.tasks) and trace
    seqs = sampled_sequences(rows, trace)
    sampled = sorted(tuple(out) for _, out in trace.values())
    trained = [tuple(run) for s in seqs for run in _trained_runs(s)]
    assert all(s.meta["key"] in {r["key"] for r in rows} for s in seqs)
    # every sampled token is trained exactly once, in the context it was drawn in
    assert sum(map(len, trained)) == sum(map(len, sampled))
    for s in seqs:
        prompt_end = s.mask.index(True)
        assert any(tuple(p) == tuple(s.ids[:prompt_end]) for p, _ in trace.values())


def test_compare_by_category_pairs_the_same_episodes():
    before = [{"key": f"t{i}#0", "category": "search", "status": "ok", "success": False} for i in range(10)]
    after = [{"key": f"t{i}#0", "category": "search", "status": "ok", "success": i < 6} for i in range(10)]
    out = compare_by_category(before, after)
    assert out["search"]["before"] == 0 and out["search"]["after"] == 0.6 and out["search"]["episodes"] == 10
    assert 0 < out["search"]["diff_ci_low"] < 0.6 < out["search"]["diff_ci_high"] <= 1.0


@pytest.mark.slow
def test_train_sft_and_grpo_end_to_end_on_a_tiny_model(tiny_dir, tmp_path):
    from toolgym.agent.policies import OraclePolicy
    from toolgym.agent.rollout import rollout
    from toolgym.envs import IN_PROCESS
    from toolgym.envs.corpus import load_corpus

    corpus = load_corpus("reference").per_category(1)
    asyncio.run(
        rollout(corpus, OraclePolicy, tmp_path / "oracle", in_flight=4, backend=IN_PROCESS, progress=False)
    )
    settings = EvalSettings(per_category=1, max_steps=2, max_tokens=6, in_flight=4)
    logs: list[str] = []
    first = SFTJob(
        model=str(tiny_dir),
        data=[str(tmp_path / "oracle")],
        out=str(tmp_path / "sft"),
        held_out="reference",
        eval=settings,
        lr=1e-3,
        max_seq_tokens=20000,
    )
    report = train_sft(first, logs.append)
    assert report["data"]["rows"] == len(corpus.tasks)
    assert report["sft"]["steps"] >= 1 and report["sft"]["tokens_per_s"] > 0
    assert set(report["compare"]) == {t.category for t in corpus.tasks} | {"overall"}
    assert (tmp_path / "sft" / "model" / "config.json").is_file()
    page = (tmp_path / "sft" / "report.html").read_text()
    assert "Held-out success, before and after" in page and "<svg" in page
    assert json.loads((tmp_path / "sft" / "report.json").read_text())["job"] == "sft"

    # a second data mix against the same baseline: the before rows are reused, not measured again (and the
    # prompt's gradient detached, through the real job)
    again = replace(
        first, out=str(tmp_path / "sft-2"), max_samples=2, before_from=first.out, detach_prompt=True
    )
    second = train_sft(again, logs.append)
    assert second["before"] == report["before"] and second["before_from"] == str(tmp_path / "sft")
    assert second["settings"]["detach_prompt"] is True and second["sft"]["steps"] > 0
    assert not (tmp_path / "sft-2" / "held-out-before").exists()
    assert set(second["compare"]) == set(report["compare"])
    with pytest.raises(ValueError, match="evaluation settings differ"):
        train_sft(
            replace(again, eval=replace(settings, max_tokens=7), out=str(tmp_path / "sft-3")), logs.append
        )

    grpo = GRPOJob(
        model=str(tmp_path / "sft" / "model"),
        corpus="reference",
        out=str(tmp_path / "grpo"),
        held_out="reference",
        eval=settings,
        iterations=1,
        tasks_per_iteration=4,
        group_size=2,
    )
    report = train_grpo(grpo, logs.append)
    its = report["iterations"]
    assert [e["iteration"] for e in its] == [0, 1]
    assert its[1]["episodes"] == 2 * its[1]["tasks"] and "held_out" in its[1]
    assert (tmp_path / "grpo" / "model" / "config.json").is_file()
    assert "per iteration" in (tmp_path / "grpo" / "report.html").read_text()

    # one category only: its training tasks and its held-out tasks, nothing else rolled out
    report = train_grpo(
        replace(
            grpo,
            out=str(tmp_path / "grpo-search"),
            eval=replace(settings, categories=["search"]),
            tasks_per_iteration=2,
            categories=["search"],
        ),
        logs.append,
    )
    its = report["iterations"]
    assert its[1]["tasks"] == 2 and its[1]["episodes"] == 4
    assert set(its[0]["held_out"]) == set(its[1]["held_out"]) == {"search", "overall"}
    rolled = load_trajectories(tmp_path / "grpo-search" / "rollouts-1")
    assert {r["category"] for r in rolled} == {"search"}


def test_categories_option_reaches_both_jobs():
    from toolgym.cli import build_parser
    from toolgym.commands.train import _eval_settings

    args = build_parser().parse_args(
        ["train", "grpo", "--model", "m", "--corpus", "c", "--out", "o", "--categories", "search, code"]
    )
    assert args.categories == ["search", "code"] and _eval_settings(args).categories == ["search", "code"]
    args = build_parser().parse_args(["train", "sft", "--data", "d", "--out", "o"])
    assert args.categories is None and _eval_settings(args).categories is None
