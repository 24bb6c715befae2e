"""Quality of the sparse model: how much dense attention the top-k keeps, and what sparsity costs in loss.

Recall: for each query, the share of the dense attention mass (summed over heads, L1-normalized)
on the k keys the indexer selects, at k = L/8, beside a recent-k window and the oracle top-k.
Loss: held-out next-token loss of the dense model (dense attention) and of the sparse model (top-k).
Int8 indexer: how many of the fp32 indexer's top-k keys the int8 one (the decoding cache's precision)
also selects, and the sparse loss with int8 index scores.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .dsa import index_scores, select_topk, visible_keys
from .lm import DSALM
from .train import encode_texts, eval_windows, heldout_loss, load_checkpoint, load_texts, split_heldout

Maps = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer: dense attention probabilities (B, L, H, L) and index scores (B, L, L)."""


@torch.no_grad()
def dsa_maps(model: DSALM, tokens: torch.Tensor) -> Maps:
    """Run the model densely on tokens (B, L); return each layer's attention and index scores."""
    model.eval()
    positions = torch.arange(tokens.shape[1])
    x, maps = model.embed(tokens), []
    for block in model.blocks:
        maps.append(block.attn.attention_maps(block.attn_norm(x)))
        x, _ = block(x, positions, sparse=False)
    return maps


def attention_recall(maps: Maps, top_k: int) -> dict:
    """Mean share of the dense attention mass on the indexer's top-k keys.

    Averaged over queries that see more than k keys (earlier ones keep everything). For scale, the
    same share for the k most recent keys ("window") and for the k keys with the most attention
    ("oracle", the best any selector of k keys can do).
    """
    totals = {"recall": 0.0, "window": 0.0, "oracle": 0.0}
    count, per_layer = 0, []
    for probs, scores in maps:
        L = scores.shape[1]
        if L <= top_k:
            raise ValueError(
                f"Sequences of {L} tokens are too short for top-k = {top_k}: use longer windows."
            )
        p = probs.sum(2)
        p = p / p.sum(-1, keepdim=True)  # (B, L, L) head-summed, L1-normalized
        idx, valid = select_topk(scores, top_k)
        share = {
            "recall": (p.gather(-1, idx) * valid).sum(-1),  # (B, L)
            "oracle": p.topk(top_k, dim=-1).values.sum(-1),
            "window": (p * ((torch.arange(L)[:, None] - torch.arange(L)[None, :]) < top_k)).sum(-1),
        }
        for name, value in share.items():
            totals[name] += float(value[:, top_k:].sum())
        per_layer.append(float(share["recall"][:, top_k:].mean()))
        count += share["recall"][:, top_k:].numel()
    return {**{name: value / count for name, value in totals.items()}, "per_layer": per_layer, "k": top_k}


@torch.no_grad()
def int8_topk_overlap(model: DSALM, tokens: torch.Tensor, top_k: int) -> dict:
    """Share of the fp32 indexer's top-k keys that the int8 indexer selects too, per layer and overall.

    tokens (B, L); counted over queries that see more than k keys. 1.0 means decoding from the int8
    cache attends to exactly the keys the fp32 indexer would choose.
    """
    model.eval()
    L = tokens.shape[1]
    if L <= top_k:
        raise ValueError(f"Sequences of {L} tokens are too short for top-k = {top_k}: use longer windows.")
    positions = torch.arange(L)
    visible = visible_keys(positions, L)
    x, per_layer, kept, total = model.embed(tokens), [], 0.0, 0.0
    for block in model.blocks:
        iq, iw, ik = block.attn.indexer(block.attn_norm(x), positions)
        chosen = []
        for precision in ("fp32", "int8"):
            idx, valid = select_topk(index_scores(iq, iw, ik, visible, precision), top_k)
            mask = torch.zeros(*idx.shape[:2], L, dtype=torch.bool)
            chosen.append(mask.scatter_(-1, idx, valid)[:, top_k:])  # (B, L - k, L)
        both = (chosen[0] & chosen[1]).sum(-1).float()
        per_layer.append(float(both.sum() / chosen[0].sum()))
        kept, total = kept + float(both.sum()), total + float(chosen[0].sum())
        x, _ = block(x, positions, sparse=False)
    return {"overlap": kept / total, "per_layer": per_layer, "k": top_k}


def quality_report(
    data: str | Path,
    *,
    dense: str | Path | None = None,
    warmup: str | Path | None = None,
    sparse: str | Path | None = None,
    seq_len: int | None = None,
    max_windows: int = 32,
) -> dict:
    """Recall at k = L/8 after warm-up, and held-out losses, for the checkpoints of one training run.

    dense, warmup, sparse: checkpoint folders written by `toolgym model train` (any may be missing).
    Held-out windows are the last 5% of the corpus, the part training never saw.
    """
    paths = {name: p for name, p in (("dense", dense), ("warmup", warmup), ("sparse", sparse)) if p}
    if not paths:
        raise ValueError("Give at least one checkpoint: --run DIR or --dense / --warmup / --sparse.")
    models = {name: load_checkpoint(p) for name, p in paths.items()}
    tokenizer = next((tok for _, tok in models.values() if tok is not None), None)
    if tokenizer is None:
        raise FileNotFoundError(
            "No tokenizer.json in the checkpoints: use ones written by `toolgym model train`."
        )
    any_model = next(iter(models.values()))[0]
    seq_len = seq_len or min(any_model.cfg.max_seq_len, 512)
    top_k = max(1, seq_len // 8)
    _, held = split_heldout(encode_texts(load_texts(data), tokenizer), min_tokens=seq_len + 1)
    windows = eval_windows(held, seq_len, max_windows)
    report: dict = {"seq_len": seq_len, "top_k": top_k, "heldout_windows": len(windows)}
    for name, (model, _) in models.items():
        model.cfg.top_k = top_k
        if name in ("warmup", "sparse"):
            report[f"recall_{name}"] = attention_recall(dsa_maps(model, windows[:, :-1]), top_k)
        report[f"loss_{name}_dense"] = heldout_loss(model, windows, sparse=False)
        report[f"loss_{name}_sparse"] = heldout_loss(model, windows, sparse=True)
        if name in ("warmup", "sparse"):
            report[f"int8_{name}"] = int8_topk_overlap(model, windows[:, :-1], top_k)
            precision, model.cfg.index_precision = model.cfg.index_precision, "int8"
            report[f"int8_{name}"]["loss_sparse"] = heldout_loss(model, windows, sparse=True)
            model.cfg.index_precision = precision
    return report


def format_report(report: dict) -> str:
    """The report as a few readable lines."""
    lines = [
        f"held-out windows: {report['heldout_windows']} x {report['seq_len']} tokens, top-k = {report['top_k']} (L/8)"
    ]
    for name in ("warmup", "sparse"):
        r = report.get(f"recall_{name}")
        if r:
            layers = ", ".join(f"{x:.3f}" for x in r["per_layer"])
            lines.append(
                f"recall after {name}: {r['recall']:.3f} of dense attention mass "
                f"(window of last k: {r['window']:.3f}, oracle top-k: {r['oracle']:.3f}; per layer {layers})"
            )
    for name in ("warmup", "sparse"):
        r = report.get(f"int8_{name}")
        if r:
            layers = ", ".join(f"{x:.4f}" for x in r["per_layer"])
            lines.append(
                f"int8 indexer after {name}: {r['overlap']:.4f} of the fp32 indexer's top-k kept "
                f"(per layer {layers}); held-out loss top-k {r['loss_sparse']:.4f} "
                f"(fp32 indexer {report[f'loss_{name}_sparse']:.4f})"
            )
    for name in ("dense", "warmup", "sparse"):
        if f"loss_{name}_dense" in report:
            lines.append(
                f"held-out loss, {name} checkpoint: dense attention {report[f'loss_{name}_dense']:.4f}, "
                f"top-k {report[f'loss_{name}_sparse']:.4f}"
            )
    return "\n".join(lines)
