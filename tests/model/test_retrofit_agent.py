"""The retrofitted sparse model as an agent: top-k masks with a KV cache (exactly dense where k covers every
visible key, the same choice cached or not, left padding excluded), driven by LocalEngine / LocalPolicy, and
`toolgym model retrofit` writing a folder that loads back sparse. Tiny random-weight Llama models built here."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from toolgym.agent import LocalPolicy  # noqa: E402
from toolgym.agent.local import LocalEngine, load_model  # noqa: E402
from toolgym.model.retrofit import RetrofitDSA, is_sparse_checkpoint, load_sparse_model  # noqa: E402
from toolgym.model.retrofit_run import RetrofitPlan, format_report, run_retrofit, trajectory_texts  # noqa: E402

from tests.integration import tiny_hf_model  # noqa: E402

INDEX = dict(index_heads=2, index_dim=16, index_rope_dim=8)
PROMPTS = [
    "<|im_start|>user\nPlan a trip to Paris.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    '<|im_start|>user\n{"name": "get_weather", "arguments": {"city": "Berlin"}} and more words here, '
    "a longer prompt than the others<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\ndef add(a, b): return a + b<|im_end|>\n<|im_start|>assistant\n<think>",
]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    """A random-weight Llama (attention made peaked, so which keys are kept matters) with the test tokenizer."""
    return tiny_hf_model.build_llama(tmp_path_factory.mktemp("llama") / "tiny-llama", peaked=True)


def dense_model(path: Path, implementation: str = "eager"):
    return transformers.AutoModelForCausalLM.from_pretrained(path, attn_implementation=implementation).eval()


def sparse_model(path: Path, top_k: int, implementation: str = "eager", seed: int = 1):
    torch.manual_seed(seed)
    dsa = RetrofitDSA(
        dense_model(path, implementation), top_k=top_k, attn_implementation=implementation, **INDEX
    )
    return dsa.enable_sparse()


def left_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids, 2D mask and per-row positions, as LocalEngine prefills a batch."""
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def decode(
    model, rows: list[list[int]], steps: int, feed: list[list[int]] | None = None
) -> list[torch.Tensor]:
    """Logits of a left-padded prefill, then of `steps` cached decoding steps (feeding `feed`, else greedy)."""
    ids, mask, positions = left_padded(rows)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, nxt, logits = out.cache, mask.sum(-1), [out.logits]
    for t in range(steps):
        token = torch.tensor([f[t] for f in feed]) if feed else logits[-1][:, -1].argmax(-1)
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], 1)
        out = model(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=nxt[:, None],
            cache=cache,
            use_cache=True,
        )
        cache, nxt = out.cache, nxt + 1
        logits.append(out.logits)
    return logits


def token_rows(n_rows: int, lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(10, 300, (n,), generator=g).tolist() for n in lengths[:n_rows]]


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_sparse_mode_is_exactly_dense_where_k_covers_the_visible_keys(llama_dir, implementation):
    rows = token_rows(3, [9, 30, 17])
    dense = decode(dense_model(llama_dir, implementation), rows, steps=6)
    feed = [[int(x) for x in torch.stack([lg[i, -1].argmax() for lg in dense[:-1]])] for i in range(3)]
    # k above every row's length: nothing is ever cut, prefill and cached decoding alike
    wide = decode(sparse_model(llama_dir, top_k=64, implementation=implementation), rows, 6, feed)
    assert all(torch.equal(a, b) for a, b in zip(dense, wide, strict=True))
    # k = 16 cuts the 30-token row (and the 17-token one once it grows) but not the 9-token one, which only
    # sees its own keys through the left padding
    cut = decode(sparse_model(llama_dir, top_k=16, implementation=implementation), rows, 6, feed)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(dense, cut, strict=True))
    assert not torch.allclose(dense[0][1, -1], cut[0][1, -1], atol=1e-3)
    # 17 visible > 16 only at its last position (its padding positions attend to everything: not compared)
    assert torch.equal(dense[0][2, 13:-1], cut[0][2, 13:-1])
    assert not torch.allclose(dense[-1][2], cut[-1][2], atol=1e-4)


def test_cached_decoding_selects_what_a_full_forward_selects_and_padding_changes_nothing(llama_dir):
    model = sparse_model(llama_dir, top_k=6)
    (row,) = token_rows(1, [28], seed=3)
    with torch.no_grad():
        full = model(input_ids=torch.tensor([row]), use_cache=False).logits[0]  # (28, V), no cache
    stepped = decode(model, [row[:12]], steps=16, feed=[row[12:]])
    stepped = torch.cat([stepped[0][0], *(s[0] for s in stepped[1:])])  # (28, V)
    assert torch.allclose(full, stepped, atol=1e-5)
    # the same row left-padded beside a longer one: its padding is never selected, its positions are its own
    (other,) = token_rows(1, [46], seed=4)
    batched = decode(model, [row[:12], other[:30]], steps=16, feed=[row[12:], other[30:]])
    batched = torch.cat([batched[0][0, -12:], *(s[0] for s in batched[1:])])
    assert torch.allclose(full, batched, atol=1e-5)
    with torch.no_grad():
        dense = dense_model(llama_dir)(input_ids=torch.tensor([row])).logits[0]
    assert not torch.allclose(full[12:], dense[12:], atol=1e-3)  # k = 6 of up to 28 keys does change it


def complete(engine: LocalEngine, prompts: list[str], *, stagger_s: float = 0.0, **kw) -> list[str]:
    async def one(i, prompt):
        await asyncio.sleep(i * stagger_s)
        return (await engine.generate(prompt, **kw))["text"]

    async def all_of():
        return await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts)))

    return asyncio.run(all_of())


def test_local_engine_drives_the_sparse_model(llama_dir):
    tokenizer = transformers.AutoTokenizer.from_pretrained(llama_dir)
    # Prefix reuse off: its cache seeding must first carry the indexer key layers (see _CACHE_OUT_OF_STEP).
    engine = functools.partial(LocalEngine, tokenizer=tokenizer, max_batch=4, prefix_cache_tokens=0)
    dense_engine = engine(dense_model(llama_dir))
    wide_engine = engine(sparse_model(llama_dir, top_k=512))
    sparse_engine = engine(sparse_model(llama_dir, top_k=8))
    try:
        greedy = dict(max_tokens=20, temperature=0.0)
        dense = complete(dense_engine, PROMPTS, **greedy)
        assert complete(wide_engine, PROMPTS, **greedy) == dense  # k >= L: the dense model's tokens
        # k = 8: rows leave the batch, newcomers join it (padding columns trimmed, caches merged), and each
        # prompt still gets what it gets alone: the indexer keys moved with their rows' keys and values
        alone = [complete(sparse_engine, [p], **greedy)[0] for p in PROMPTS]
        assert complete(sparse_engine, PROMPTS, **greedy) == alone
        assert complete(sparse_engine, PROMPTS, stagger_s=0.03, **greedy) == alone
        assert alone != dense and sparse_engine.stats.mean_batch > 1.2
    finally:
        for engine in (dense_engine, wide_engine, sparse_engine):
            engine.close()


SFT_ROWS = [
    {
        "id": f"t{i}",
        "messages": [
            {"role": "system", "content": "You are a careful analyst with a Python tool."},
            {"role": "user", "content": f"How many primes are below {100 + 37 * i}?"},
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "I count them with a sieve.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "python",
                            "arguments": json.dumps({"code": f"n = {100 + 37 * i}"}),
                        },
                    }
                ],
            },
            {"role": "tool", "content": str(25 + i), "tool_call_id": "call_1", "name": "python"},
            {"role": "assistant", "content": f"The answer is \\boxed{{{25 + i}}}."},
        ],
        "tools": [{"type": "function", "function": {"name": "python", "description": "Run Python code."}}],
    }
    for i in range(30)
]


def tiny_plan(llama_dir: Path, out: Path, trajectories: Path) -> RetrofitPlan:
    return RetrofitPlan(
        model=str(llama_dir),
        out=str(out),
        trajectories=[str(trajectories)],
        corpus_docs=60,
        top_k=12,
        seq_len=48,
        batch_size=2,
        warmup_steps=6,
        warmup_lr=1e-2,
        sparse_steps=3,
        sparse_lr=1e-2,
        eval_windows=2,
        **INDEX,
    )


def test_retrofit_writes_a_folder_that_loads_sparse_and_runs_as_a_local_policy(llama_dir, tmp_path):
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps(r) + "\n" for r in SFT_ROWS))
    text = trajectory_texts(sft)[0]
    assert "<tool_call>" in text and "<tool_response>" in text and "<think>" in text and "<tools>" in text

    opened = []

    class Bar:
        def __init__(self, name, total):
            self.name, self.total, self.n = name, total, 0

        def __enter__(self):
            opened.append(self)
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            self.n += n

        def set_postfix(self, _values):
            pass

    report = run_retrofit(tiny_plan(llama_dir, tmp_path / "sparse", sft), Bar, log=lambda _line: None)
    assert [b.name for b in opened if not b.name.startswith("eval")] == ["warmup", "sparse"]
    assert all(b.n == b.total for b in opened)
    assert set(report["heldout"]) == {"untrained", "warmup", "sparse"}
    for result in report["heldout"].values():
        assert set(result) == {"bundled", "trajectories"}
        assert all(0.0 <= row["recall"]["overlap"] <= 1.0 for row in result.values())
    assert report["stages"]["sparse"]["lm_last"] > 0 and "frozen" in report["dense_weights"]
    assert "top-k 12 of 48" in format_report(report)

    out = tmp_path / "sparse"
    assert (
        is_sparse_checkpoint(out) and json.loads((out / "retrofit.json").read_text())["plan"]["top_k"] == 12
    )
    # the folder is also a plain dense checkpoint: the dense weights are the base model's
    plain, _ = load_model(out)
    base = dense_model(llama_dir)
    assert all(
        torch.equal(a, b)
        for a, b in zip(plain.state_dict().values(), base.state_dict().values(), strict=True)
    )

    model, tokenizer = load_sparse_model(out)
    assert model.retrofit_dsa.is_sparse and model.retrofit_dsa.top_k == 12
    prompt = [tokenizer(PROMPTS[2])["input_ids"]]
    with torch.no_grad():
        sparse_logits = model(input_ids=torch.tensor(prompt)).logits
        dense_logits = base(input_ids=torch.tensor(prompt)).logits
    assert not torch.allclose(sparse_logits, dense_logits, atol=1e-4)

    class Task:
        id = "weather-1"

    policy = LocalPolicy(model, tokenizer, encoding="hermes", max_tokens=12, temperature=1.0)
    try:
        policy.start(Task(), seed=5)
        turn = asyncio.run(policy.act([{"role": "user", "content": "What is the weather in Paris?"}], []))
        assert turn.prompt_tokens > 5 and 0 < turn.completion_tokens <= 12
    finally:
        policy.close()

    # the same plan and seed write the same files, byte for byte (the times go to retrofit-seconds.json)
    again = run_retrofit(tiny_plan(llama_dir, tmp_path / "again", sft), Bar, log=lambda _line: None)
    for name in ("indexers.safetensors", "indexers.json", "model.safetensors", "retrofit.json"):
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes().replace(
            b"again", b"sparse"
        )
    assert set(again["seconds"]) >= {"warmup", "sparse", "save"}


def test_retrofit_refuses_what_it_cannot_use(llama_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    with pytest.raises(ValueError, match='neither "messages" nor "text"'):
        trajectory_texts(bad)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="new or empty --out"):
        run_retrofit(tiny_plan(llama_dir, busy, bad), None, log=lambda _line: None)
    with pytest.raises(FileNotFoundError, match="written by `toolgym model retrofit`"):
        load_sparse_model(llama_dir)


def test_retrofit_command_line(llama_dir, tmp_path, capsys):
    from toolgym.model.cli import main

    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps(r) + "\n" for r in SFT_ROWS))
    small = [
        "--corpus-docs",
        "40",
        "--top-k",
        "8",
        "--seq-len",
        "32",
        "--warmup-steps",
        "2",
        "--sparse-steps",
        "1",
    ]
    small += ["--eval-windows", "1", "--index-heads", "2", "--index-dim", "16", "--index-rope-dim", "8"]
    out = tmp_path / "cli"
    assert (
        main(
            [
                "model",
                "retrofit",
                str(llama_dir),
                "--out",
                str(out),
                "--trajectories",
                str(sft),
                *small,
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["plan"]["top_k"] == 8 and report["stages"]["warmup"]["steps"] == 2
    assert load_sparse_model(out)[0].retrofit_dsa.top_k == 8
    missing = [
        "model",
        "retrofit",
        str(llama_dir),
        "--out",
        str(tmp_path / "x"),
        "--trajectories",
        "nope.jsonl",
    ]
    assert main(missing) == 2
    assert "pass an sft.jsonl written by `toolgym export sft`" in capsys.readouterr().err
