"""The card's shape: an agent loop keeps its thinking across tool calls on a sparse-attention model. A recorded
trajectory (two questions, with its reasoning) is replayed turn by turn into a LocalPolicy over a DSA-retrofitted
model with the DeepSeek-V3.2 encoding: every prompt the sparse model reads holds the reasoning of the earlier
turns since the last user message, and none from before it, and the sparse attention really ran."""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from toolgym.agent import LocalPolicy  # noqa: E402
from toolgym.model import retrofit  # noqa: E402
from toolgym.model.retrofit import RetrofitDSA  # noqa: E402

from tests.integration import tiny_hf_model  # noqa: E402


@pytest.fixture(scope="module")
def sparse_llama(tmp_path_factory):
    folder = tiny_hf_model.build_llama(tmp_path_factory.mktemp("llama") / "tiny", max_positions=8192)
    dense = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    dsa = RetrofitDSA(dense, top_k=32, index_heads=2, index_dim=16, index_rope_dim=8)
    return dsa.enable_sparse(), transformers.AutoTokenizer.from_pretrained(folder), dsa


def _prompts(model, tokenizer, histories: list[list[dict]], tools: list[dict]) -> list[str]:
    """What a thinking LocalPolicy over `model` (DeepSeek-V3.2 encoding) sends the model for each history."""
    policy = LocalPolicy(
        model, tokenizer, encoding="deepseek_v32", thinking=True, max_tokens=4, temperature=0.0
    )
    prompts: list[str] = []
    generate = policy.engine.generate

    async def recorded(prompt, **kw):
        prompts.append(prompt)
        return await generate(prompt, **kw)

    policy.engine.generate = recorded
    try:
        policy.start(None, seed=0)
        for history in histories:
            asyncio.run(policy.act(history, tools))
    finally:
        policy.close()
    return prompts


def _call(i: int, city: str) -> dict:
    return {
        "id": f"c{i}",
        "type": "function",
        "function": {"name": "weather", "arguments": f'{{"city": "{city}"}}'},
    }


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Today's weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
RECORDED = [
    {"role": "user", "content": "Is it warmer in Paris or in Oslo today?"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "R1: look up Paris first.",
        "tool_calls": [_call(1, "Paris")],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "Paris: 18 C, cloudy"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "R2: Paris is 18 C; now Oslo.",
        "tool_calls": [_call(2, "Oslo")],
    },
    {"role": "tool", "tool_call_id": "c2", "content": "Oslo: 9 C, rain"},
    {
        "role": "assistant",
        "content": "Paris is warmer (18 C against 9 C).",
        "reasoning_content": "R3: 18 > 9.",
    },
    {"role": "user", "content": "And Rome?"},
    {
        "role": "assistant",
        "content": "",
        "reasoning_content": "R4: a new question; look up Rome.",
        "tool_calls": [_call(3, "Rome")],
    },
    {"role": "tool", "tool_call_id": "c3", "content": "Rome: 22 C, sunny"},
    {
        "role": "assistant",
        "content": "Rome is warmer still, 22 C.",
        "reasoning_content": "R5: 22 is the most.",
    },
]
"""A recorded two-question episode with its reasoning (what `toolgym rollout` writes for a thinking model)."""


def test_reasoning_is_kept_across_tool_calls_on_the_sparse_model(sparse_llama, monkeypatch):
    model, tokenizer, _ = sparse_llama
    messages, tools = RECORDED, TOOLS
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    selections = []
    scores = retrofit.index_scores

    def counted(*args, **kw):  # the top-k scoring runs only where a layer sees more than k keys
        selections.append(1)
        return scores(*args, **kw)

    monkeypatch.setattr(retrofit, "index_scores", counted)
    prompts = _prompts(model, tokenizer, [messages[:i] for i in turns], tools)

    assert len(prompts) == len(turns) and selections, "the sparse model's indexers never ran"
    # DeepSeek-V3.2's rule: within one user turn the reasoning stays across tool calls; a new user message
    # drops the earlier turns' reasoning.
    kept = {0: [], 1: ["R1"], 2: ["R1", "R2"], 3: [], 4: ["R4"]}
    for k, prompt in enumerate(prompts):
        for tag in ("R1", "R2", "R3", "R4", "R5"):
            assert (tag in prompt) == (tag in kept[k]), (k, tag)


def test_a_new_user_message_drops_earlier_reasoning(sparse_llama):
    model, tokenizer, _ = sparse_llama
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    history = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "", "reasoning_content": "THOUGHT-ONE", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "result"},
    ]
    later = [*history, {"role": "assistant", "content": "done"}, {"role": "user", "content": "second"}]
    prompts = _prompts(model, tokenizer, [history, later], tools)
    assert "THOUGHT-ONE" in prompts[0] and "THOUGHT-ONE" not in prompts[1]


def test_the_sparse_model_is_really_sparse_on_long_prompts(sparse_llama):
    model, tokenizer, dsa = sparse_llama
    ids = torch.tensor([list(range(5, 5 + 200))])
    with torch.no_grad():
        sparse = model(input_ids=ids).logits
        dsa.disable_sparse()
        dense = model(input_ids=ids).logits
        dsa.enable_sparse()
    assert not torch.allclose(sparse[0, -1], dense[0, -1])  # 32 of 200 keys: not the dense attention
