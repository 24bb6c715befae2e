"""`toolgym model retrofit`: a dense checkpoint becomes a sparse-attention one, sized for a CPU.

Indexers go onto every layer of the frozen model; the warm-up stage trains them by KL to the dense attention,
then a short sparse stage (top-k on) trains them by KL over the keys they select. The text is exported agent
trajectories (SFT JSONL) plus model/'s bundled recall corpus; a held-out share of each measures the dense and
sparse losses and the indexers' recall. The folder written loads with `retrofit.load_sparse_model`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .corpus import synthetic_corpus
from .retrofit import INDEXER_CONFIG, RetrofitDSA
from .train import StageConfig, eval_windows

REPORT_FILE = "retrofit.json"
TIMES_FILE = "retrofit-seconds.json"


@dataclass
class RetrofitPlan:
    """What `toolgym model retrofit` does; the defaults finish in a few minutes on 2 CPU cores."""

    model: str
    """"default" (the embedded SmolLM2-135M-Instruct) or a local Llama/Qwen2 checkpoint folder."""
    out: str
    """The folder to write: the Hugging Face checkpoint, the indexers and retrofit.json."""
    trajectories: list[str] = field(default_factory=list)
    """SFT export JSONL files (`toolgym export sft`: rows with messages and tools) or {"text": ...} rows."""
    corpus_docs: int = 600
    """Documents of the bundled recall corpus (model/corpus.py) mixed in."""
    top_k: int = 128
    """Keys per query in sparse mode."""
    seq_len: int = 512
    """Tokens per training and evaluation window."""
    batch_size: int = 2
    warmup_steps: int = 40
    warmup_lr: float = 1e-3
    sparse_steps: int = 20
    sparse_lr: float = 3e-4
    index_heads: int = 4
    index_dim: int = 64
    index_rope_dim: int = 32
    eval_windows: int = 4
    """Held-out windows per text source."""
    heldout_fraction: float = 0.1
    """Share of each source's documents held out (the last ones after a seeded shuffle)."""
    seed: int = 0


# ---------------------------------------------------------------------------------------------
# Text: trajectories rendered as the hermes encoding shows them to a model (model/ may not import agent/,
# so this is a plain ChatML + <tool_call> rendering), and the bundled corpus.


def render_chatml(messages: list[dict], tools: list[dict] | None = None) -> str:
    """ChatML turns with Hermes-style tools, calls and results: the shape of what an agent model reads."""
    out, system = [], ""
    if messages and messages[0].get("role") == "system":
        system, messages = str(messages[0].get("content") or ""), messages[1:]
    if tools:
        listed = "\n".join(json.dumps(t.get("function", t), ensure_ascii=False) for t in tools)
        system = f"{system}\n\n# Tools\n\n<tools>\n{listed}\n</tools>".lstrip()
    if system:
        out.append(f"<|im_start|>system\n{system}<|im_end|>\n")
    for m in messages:
        role = m.get("role")
        if role == "tool":
            out.append(
                f"<|im_start|>user\n<tool_response>\n{m.get('content') or ''}\n</tool_response><|im_end|>\n"
            )
            continue
        body = ""
        if role == "assistant" and m.get("reasoning_content"):
            body += f"<think>\n{m['reasoning_content'].strip()}\n</think>\n\n"
        body += str(m.get("content") or "")
        for call in m.get("tool_calls") or []:
            fn = call.get("function", {})
            body += f'\n<tool_call>\n{{"name": {json.dumps(fn.get("name"))}, "arguments": {fn.get("arguments") or "{}"}}}\n</tool_call>'
        out.append(f"<|im_start|>{role}\n{body.strip()}<|im_end|>\n")
    return "".join(out)


def trajectory_texts(path: str | Path) -> list[str]:
    """One text per row of an SFT export JSONL (messages + tools) or of a {"text": ...} JSONL."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No trajectories at {path}: pass an sft.jsonl written by `toolgym export sft`."
        )
    texts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n} is not JSON ({err.msg}): fix or remove that line.") from None
        if isinstance(row, dict) and isinstance(row.get("text"), str):
            texts.append(row["text"])
        elif isinstance(row, dict) and isinstance(row.get("messages"), list):
            tools = row.get("tools")
            tools = json.loads(tools) if isinstance(tools, str) else tools
            texts.append(render_chatml(row["messages"], tools))
        else:
            raise ValueError(
                f'{path}:{n} has neither "messages" nor "text": pass an sft.jsonl from `toolgym export sft`.'
            )
    if not texts:
        raise ValueError(f"{path} holds no trajectories: export some with `toolgym export sft`.")
    return texts


def token_stream(texts: list[str], tokenizer: Any) -> torch.Tensor:
    """One stream of ids: each document, then the end-of-sequence token."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for row in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]:
        ids += [*row, eos] if eos is not None else row
    return torch.tensor(ids, dtype=torch.long)


def split_sources(
    sources: dict[str, list[str]], tokenizer: Any, plan: RetrofitPlan
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, dict]]:
    """The training stream (all sources, documents in a seeded order) and held-out windows per source."""
    rng = random.Random(plan.seed)
    train_docs, held, sizes = [], {}, {}
    for name, texts in sources.items():
        texts = list(texts)
        rng.shuffle(texts)
        n_held = max(1, round(len(texts) * plan.heldout_fraction))
        if len(texts) < 2:
            raise ValueError(f"the {name} text has {len(texts)} document: give at least 2 (one is held out).")
        held_stream = token_stream(texts[-n_held:], tokenizer)
        if len(held_stream) < plan.seq_len + 1:
            raise ValueError(
                f"the held-out {name} text has {len(held_stream)} tokens, fewer than one window of "
                f"{plan.seq_len + 1}: lower --seq-len or give more text."
            )
        held[name] = eval_windows(held_stream, plan.seq_len, plan.eval_windows)
        train_docs += texts[:-n_held]
        sizes[name] = {
            "documents": len(texts),
            "heldout_documents": n_held,
            "heldout_tokens": len(held_stream),
        }
    rng.shuffle(train_docs)
    train = token_stream(train_docs, tokenizer)
    return train, held, sizes


# ---------------------------------------------------------------------------------------------
# The run.

Bar = Callable[[str, int], Any]
"""bar(description, total) -> a context manager with update(n) and set_postfix(dict) (tqdm's)."""


def _stage_summary(history: list[dict[str, float]]) -> dict[str, Any]:
    first, last = history[0], history[-1]
    return {
        "steps": len(history),
        **{f"{k}_first": round(v, 5) for k, v in first.items() if k != "loss"},
        **{f"{k}_last": round(v, 5) for k, v in last.items() if k != "loss"},
    }


def run_retrofit(plan: RetrofitPlan, bar: Bar, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Attach, warm up, sparse stage, measure, save. Returns the report (OUT/retrofit.json) and the stages'
    times (OUT/retrofit-seconds.json) under "seconds"."""
    from transformers import AutoTokenizer

    from .default import resolve_model

    out = Path(plan.out)
    if out.exists() and any(out.iterdir()) and not (out / INDEXER_CONFIG).is_file():
        raise ValueError(f"{out} exists and holds something else: pass a new or empty --out folder.")
    if plan.top_k >= plan.seq_len:
        raise ValueError(
            f"--top-k {plan.top_k} is not below --seq-len {plan.seq_len}: nothing would be sparse; lower --top-k."
        )
    source = resolve_model(plan.model, progress=log)
    texts = {"bundled": synthetic_corpus(plan.corpus_docs, seed=plan.seed)} if plan.corpus_docs > 0 else {}
    for path in plan.trajectories:
        texts.setdefault("trajectories", []).extend(trajectory_texts(path))
    if not texts:
        raise ValueError("no text to train on: pass --trajectories FILE or a positive --corpus-docs.")

    if (Path(source) / INDEXER_CONFIG).is_file():
        raise ValueError(f"{source} is already retrofitted: pass its dense base model instead.")
    timings: dict[str, float] = {}
    began = time.perf_counter()
    torch.manual_seed(plan.seed)
    dsa = RetrofitDSA.from_pretrained(
        source,
        index_heads=plan.index_heads,
        index_dim=plan.index_dim,
        index_rope_dim=plan.index_rope_dim,
        top_k=plan.top_k,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    train, held, sizes = split_sources(texts, tokenizer, plan)
    timings["load_and_tokenize"] = time.perf_counter() - began
    n_params = sum(p.numel() for p in dsa.indexers.parameters())
    log(
        f"{source}: {len(dsa.indexers)} layers, indexers {n_params / 1e6:.2f}M parameters; "
        f"{len(train)} training tokens; top-k {plan.top_k} of windows of {plan.seq_len}"
    )

    def train_stage(name: str, fn, steps: int, lr: float) -> dict[str, Any]:
        stage = StageConfig(
            steps=steps, lr=lr, batch_size=plan.batch_size, seq_len=plan.seq_len, seed=plan.seed
        )
        start = time.perf_counter()
        with bar(name, steps) as b:

            def progress(_step, row):
                b.update(1)
                b.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k != "loss"})

            history = fn(train, stage, progress)
        timings[name] = time.perf_counter() - start
        return _stage_summary(history)

    def measure(label: str, with_dense: bool) -> dict[str, Any]:
        start = time.perf_counter()
        result: dict[str, Any] = {}
        passes = len(held) * (3 if with_dense else 2)
        with bar(f"eval {label}", passes) as b:
            for name, windows in held.items():
                row: dict[str, Any] = {"windows": len(windows)}
                if with_dense:
                    row["loss_dense"] = round(dsa.lm_loss(windows, sparse=False), 5)
                    b.update(1)
                row["loss_sparse"] = round(dsa.lm_loss(windows, sparse=True), 5)
                b.update(1)
                recall = dsa.recall(windows)
                row["recall"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in recall.items()}
                row["recall"]["per_layer_overlap"] = [round(v, 4) for v in recall["per_layer_overlap"]]
                row["recall"]["per_layer_mass"] = [round(v, 4) for v in recall["per_layer_mass"]]
                b.update(1)
                result[name] = row
        timings[f"eval_{label}"] = time.perf_counter() - start
        return result

    stages: dict[str, Any] = {}
    evals: dict[str, Any] = {"untrained": measure("untrained", with_dense=True)}
    if plan.warmup_steps > 0:
        stages["warmup"] = train_stage("warmup", dsa.warmup, plan.warmup_steps, plan.warmup_lr)
        evals["warmup"] = measure("warmup", with_dense=False)
    if plan.sparse_steps > 0:
        stages["sparse"] = train_stage("sparse", dsa.train_sparse, plan.sparse_steps, plan.sparse_lr)
        evals["sparse"] = measure("sparse", with_dense=False)
    start = time.perf_counter()
    dsa.save_pretrained(out, tokenizer)
    timings["save"] = time.perf_counter() - start
    report = {
        "plan": asdict(plan),
        "source": str(source),
        "dense_weights": "frozen (only the indexers train; the sparse stage's LM loss is reported, not trained)",
        "data": {"training_tokens": len(train), "sources": sizes},
        "stages": stages,
        "heldout": evals,
    }
    # The report is a function of the plan and the seed (same bytes each run); the times go beside it.
    (out / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    seconds = {k: round(v, 2) for k, v in timings.items()}
    (out / TIMES_FILE).write_text(json.dumps(seconds, indent=1) + "\n")
    return {**report, "seconds": seconds}


def format_report(report: dict[str, Any]) -> str:
    """The report's numbers as a few lines."""
    plan = report["plan"]
    lines = [f"top-k {plan['top_k']} of {plan['seq_len']}-token windows; dense weights frozen"]
    for name, stage in report["stages"].items():
        parts = [
            f"{k.removesuffix('_first')} {stage[k]:.4f} -> {stage[k.replace('_first', '_last')]:.4f}"
            for k in stage
            if k.endswith("_first")
        ]
        seconds = report.get("seconds", {}).get(name, float("nan"))
        lines.append(f"{name}: {stage['steps']} steps in {seconds:.1f} s; " + ", ".join(parts))
    dense = report["heldout"]["untrained"]
    for label, result in report["heldout"].items():
        for source, row in result.items():
            r = row["recall"]
            lines.append(
                f"held-out {source} after {label}: loss dense {dense[source]['loss_dense']:.4f}, "
                f"sparse {row['loss_sparse']:.4f}; top-k overlap {r['overlap']:.3f}, attention mass "
                f"{r['mass']:.3f} (last-k window {r['window']:.3f}, oracle {r['oracle']:.3f})"
            )
    lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report.get("seconds", {}).items()))
    return "\n".join(lines)
