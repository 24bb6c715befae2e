"""Cost of one DSA attention layer against dense causal attention (torch SDPA), measured side by side.

For each length L and top-k: prefill (all L queries) and decode (one new query over an L-token
cache). Inputs are random, already-projected queries, keys and values: the projections are the same
for both and are not timed. DSA time includes the indexer and the top-k; the indexer share is timed
on its own with the same chunking.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from .cli import add_bench_arguments
from .dsa import (
    DecodeBuffers,
    Int8Keys,
    auto_sparse,
    crossover,
    decode_select,
    dense_decode,
    dsa_attention,
    index_scores,
    pack_keys,
    prefill_select,
    quantize_keys,
    save_crossover,
    select_topk,
    visible_keys,
)

FULL_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768)
QUICK_LENGTHS = (1024, 2048, 4096, 8192)


@dataclass
class BenchConfig:
    """One attention layer: MQA main attention plus a small lightning indexer."""

    n_heads: int = 32
    """Query heads of the main attention, sharing one key/value head (MQA, as DSA on MLA's 128 heads)."""
    head_dim: int = 64
    """Dimension of queries, keys and values."""
    index_heads: int = 4
    """H_I."""
    index_dim: int = 64
    """d_I."""
    index_precision: str = "int8"
    """Indexer precision. The report runs it in FP8; int8 keys (1 byte per dim in the cache, scored by
    the fused VNNI decode kernel) are the CPU counterpart. fp32 and bf16 keep the keys in that type."""
    chunk: int = 256
    """Queries per chunk in DSA prefill."""
    lengths: tuple[int, ...] = FULL_LENGTHS
    top_ks: tuple[int, ...] = (256, 2048)
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass
class Row:
    L: int
    k: int
    mode: str
    dense_s: float
    dsa_s: float
    indexer_s: float
    dense_gflop: float
    dsa_gflop: float
    auto_s: float = 0.0
    """Auto mode: dense below the stored crossover, DSA from it (timed on its own, interleaved)."""
    auto_sparse: bool = False
    """Which path auto mode took at this L."""
    auto_vs_best: float = 0.0
    """Auto's time over the faster of the model's fixed modes (dense through dsa_attention, or DSA), paired
    round by round."""
    dense_bytes: int = 0
    """Cache bytes per token, dense: one key and one value (MQA)."""
    dsa_bytes: int = 0
    """Cache bytes per token, DSA: the same plus the indexer key (and its scale when int8)."""


def _largest_cache_bytes() -> int:
    """The largest CPU cache's size from sysfs (the L3, 32 MiB on the machine of docs/benchmarks.md), else 0."""
    largest = 0
    for size in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = size.read_text().strip()
            largest = max(largest, int(text[:-1]) << 10 if text.endswith("K") else int(text))
        except (OSError, ValueError):
            continue
    return largest


@functools.lru_cache(maxsize=1)
def _eviction_buffer() -> torch.Tensor:
    """Rewritten before every timed call: twice the largest cache, and at least 64 MiB."""
    return torch.empty(max(64 << 20, 2 * _largest_cache_bytes()) // 4)


def _timed(fn: Callable[[], object]) -> float:
    """One call's wall time, started with cold caches.

    In a model, the other layers' work evicts a layer's cache between two of its decode steps (8 layers at
    32k hold 145 MiB), so every step starts cold. Timed back to back instead, a step found whatever the
    step before it left warm: two runs of the same DSA code measured 8% apart, paired round by round, and
    that order effect, not the code, decided whether auto came within 5% of the faster path. Cold, the
    same two runs come within 1.5%."""
    _eviction_buffer().fill_(1.0)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


SAMPLE_BUDGET_S = 8.0
"""Seconds per length and phase (cache eviction included) that short steps may fill with extra rounds;
TOOLGYM_BENCH_SECONDS overrides it (the tests' tiny runs set it low)."""


def _sample_times(fns: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Wall times of each function, run interleaved so load changes hit all of them alike; sample i of
    every function comes from the same round, so two functions' samples pair up."""
    first = {name: _timed(fn) for name, fn in fns.items()}  # warm-up (allocators, thread pool)
    start = time.perf_counter()
    _eviction_buffer().fill_(1.0)
    evict_s = time.perf_counter() - start
    slowest = max(first.values())
    repeats = 7 if slowest < 0.05 else 5 if slowest < 0.5 else 3 if slowest < 3 else 1
    # sub-millisecond decode steps move by 10-20% between samples here (a shared VM), and at long L the
    # dense SDPA step beside them is slow enough that the rule above gave them 7 samples: rounds are
    # added up to SAMPLE_BUDGET_S of total time (at most 201), so decode cells get about 200 at any L
    per_round = sum(first.values()) + len(fns) * evict_s
    budget = float(os.environ.get("TOOLGYM_BENCH_SECONDS", SAMPLE_BUDGET_S))
    repeats = max(repeats, min(201, int(budget / per_round)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    order = random.Random(0)
    for _ in range(repeats):
        # a seeded shuffle each round: a step that runs right after another finds that one's data in the
        # caches (the indexer-only timing leaves the int8 keys warm for whatever follows it), so a fixed
        # order, or a rotation of one, favours whoever always follows the same data
        order.shuffle(names)
        for name in names:
            samples[name].append(_timed(fns[name]))
    if repeats == 1:  # long runs: the warm-up run counts as a sample too
        for name in fns:
            samples[name].append(first[name])
    return samples


def central(samples: list[float]) -> float:
    """A cell's time: the mean of the middle half of its samples (the median below 8 samples).

    A decode step's time here has two modes (whether the data and the thread pool are still warm from the
    step before), and the median of such samples jumps between them: two cells running the same code
    came out 22% apart. The middle half's mean moves smoothly with the mix (they came out within 1%)."""
    if len(samples) < 8:
        return statistics.median(samples)
    ordered = sorted(samples)
    cut = len(ordered) // 4
    return statistics.fmean(ordered[cut : len(ordered) - cut])


def paired_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of a's time over b's in the same round: a slow moment slows both alike."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _flops(cfg: BenchConfig, L: int, k: int, mode: str) -> tuple[float, float]:
    """Attention FLOPs (a multiply-add is 2): dense, and DSA core + indexer."""
    H, D, HI, DI = cfg.n_heads, cfg.head_dim, cfg.index_heads, cfg.index_dim
    if mode == "prefill":
        pairs = L * (L + 1) / 2  # causal (query, key) pairs
        selected = sum(min(t + 1, k) for t in range(L))
    else:
        pairs, selected = L, min(L, k)
    dense = 4 * H * D * pairs  # q.k and p.v
    dsa = 4 * H * D * selected + 2 * HI * (DI + 1) * pairs  # core + indexer (dots, weighted sum)
    return dense / 1e9, dsa / 1e9


def _dense_prefill(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal SDPA over the whole sequence: q (1, H, L, D), k and v (1, 1, L, D)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def _dense_decode_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The newest query (1, H, 1, D) over all cached keys and values (1, 1, L, D)."""
    return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)


def _dense_decode_matmul(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same with two matmuls: q (H, D), k and v (L, D). Faster than SDPA for one query. The scaling of q
    is timed too: every dense step has to do it (it was once done outside the timing, a baseline that
    skipped work the model cannot skip)."""
    return torch.matmul(torch.softmax((q * q.shape[-1] ** -0.5) @ k.T, dim=-1), v)


def _indexer_only(cfg: BenchConfig, iq, iw, ik, top_k: int, offset: int, buffers: DecodeBuffers) -> None:
    """Index scores and top-k as dsa_attention computes them (same chunks, same kernel), no attention."""
    n_q = iq.shape[1]
    if isinstance(ik, Int8Keys):
        if n_q == 1:
            decode_select(iq, iw, ik, top_k, buffers)
            return
        packed = pack_keys(ik, offset + n_q) if offset + n_q > top_k else None
        if packed is not None:
            for s in range(0, n_q, cfg.chunk):
                if offset + min(n_q, s + cfg.chunk) > top_k:
                    prefill_select(
                        iq[:, s : s + cfg.chunk], iw[:, s : s + cfg.chunk], packed, top_k, offset + s
                    )
            return
        ik = ik.as_float()
    for s in range(0, n_q, cfg.chunk):
        e = min(n_q, s + cfg.chunk)
        n_keys = offset + e
        visible = visible_keys(torch.arange(offset + s, offset + e), n_keys)
        ikc = ik.prefix(n_keys) if isinstance(ik, Int8Keys) else ik[:, :n_keys]
        scores = index_scores(iq[:, s:e], iw[:, s:e], ikc, visible, cfg.index_precision)
        if n_keys > top_k:
            select_topk(scores, top_k)


def cache_bytes(cfg: BenchConfig) -> tuple[int, int]:
    """Bytes per cached token of one layer, dense and DSA (fp32 keys and values)."""
    kv = 2 * cfg.head_dim * 4
    index = {"int8": cfg.index_dim + 4, "bf16": 2 * cfg.index_dim, "fp32": 4 * cfg.index_dim}
    return kv, kv + index[cfg.index_precision]


@torch.no_grad()
def bench_length(cfg: BenchConfig, L: int, seed: int = 0, with_auto: bool = True) -> list[Row]:
    """Rows for one length: prefill and decode, for every top-k, against the same dense timing."""
    gen = torch.Generator().manual_seed(seed)
    H, D, HI, DI = cfg.n_heads, cfg.head_dim, cfg.index_heads, cfg.index_dim
    q = torch.randn(1, L, H, D, generator=gen)
    k = torch.randn(1, L, D, generator=gen)
    v = torch.randn(1, L, D, generator=gen)
    iq = torch.randn(1, L, HI, DI, generator=gen)
    iw = torch.randn(1, L, HI, generator=gen).abs() / HI
    ik_t = torch.randn(1, DI, L, generator=gen)  # the cache layout: (1, d_I, L), in the indexer's precision
    if cfg.index_precision == "int8":
        ik = quantize_keys(ik_t.transpose(1, 2))  # the int8 cache: (1, L, d_I) int8 and (1, L) scales
    else:
        ik = (ik_t.bfloat16() if cfg.index_precision == "bf16" else ik_t).transpose(1, 2)
    qh, kh, vh = q.transpose(1, 2), k.unsqueeze(1), v.unsqueeze(1)  # SDPA layout (1, H|1, L, D)
    dense_bytes, dsa_bytes = cache_bytes(cfg)
    buffers = DecodeBuffers()
    rows = []
    for mode in ("prefill", "decode"):
        if mode == "prefill":
            fns: dict[str, Callable[[], object]] = {"dense": partial(_dense_prefill, qh, kh, vh)}
            part, offset = slice(0, L), 0
        else:  # the newest token over an L-token cache; SDPA is slow for one query on CPU, so two
            # matmul paths are timed too, and the fastest of the three is the dense number
            fns = {
                "dense": partial(_dense_decode_sdpa, qh[:, :, -1:], kh, vh),
                "dense_mm": partial(_dense_decode_matmul, q[0, -1], k[0], v[0]),
                # the model's own dense decode (the scale on the GEMM): 7-11% faster than the plain matmuls
                "dense_model": partial(dense_decode, q[:, -1:], k, v),
            }
            part, offset = slice(L - 1, L), L - 1
        qp, iqp, iwp = q[:, part], iq[:, part], iw[:, part]
        common = dict(q_offset=offset, chunk=cfg.chunk, precision=cfg.index_precision, buffers=buffers)
        if with_auto and mode == "decode":
            # the model's dense mode (sparse=False): dense_decode behind dsa_attention's dispatch, which
            # auto pays on either path; against the bare functions above that dispatch alone is 6-8% of
            # a 1-2k decode step with cold caches. (In prefill the dispatch is lost in the step.)
            fns["dense_mode"] = partial(dsa_attention, qp, k, v, iqp, iwp, ik, top_k=None, **common)
        for top_k in cfg.top_ks:
            fns[f"dsa{top_k}"] = partial(dsa_attention, qp, k, v, iqp, iwp, ik, top_k=top_k, **common)
            fns[f"idx{top_k}"] = partial(_indexer_only, cfg, iqp, iwp, ik, top_k, offset, buffers)
            if with_auto:
                # what the model runs for sparse="auto": the crossover decides inside the call
                fns[f"auto{top_k}"] = partial(
                    dsa_attention, qp, k, v, iqp, iwp, ik, top_k=top_k, auto=True, **common
                )
        samples = _sample_times(fns)
        times = {name: central(values) for name, values in samples.items()}
        dense_name = min(("dense", "dense_mm", "dense_model"), key=lambda name: times.get(name, float("inf")))
        dense_s = times[dense_name]
        for top_k in cfg.top_ks:
            dense_gflop, dsa_gflop = _flops(cfg, L, top_k, mode)
            dsa_s, indexer_s = times[f"dsa{top_k}"], times[f"idx{top_k}"]
            # auto against the faster of the model's two fixed modes, sparse=True and sparse=False
            fixed_dense = "dense_mode" if "dense_mode" in times else dense_name
            best = samples[f"dsa{top_k}" if dsa_s < times[fixed_dense] else fixed_dense]
            auto = samples.get(f"auto{top_k}")
            rows.append(
                Row(
                    L,
                    top_k,
                    mode,
                    dense_s,
                    dsa_s,
                    indexer_s,
                    dense_gflop,
                    dsa_gflop,
                    auto_s=times.get(f"auto{top_k}", 0.0),
                    auto_vs_best=paired_ratio(auto, best) if auto else 0.0,
                    auto_sparse=auto_sparse(top_k, L, len(range(L)[part])),
                    dense_bytes=dense_bytes,
                    dsa_bytes=dsa_bytes,
                )  # fmt: skip
            )
    return rows


def keep_freed_memory() -> None:
    """Keep freed buffers in the process (glibc), for dense and DSA alike.

    By default glibc returns every freed buffer above a few MiB to the OS, so each chunk's
    temporaries come back as fresh mappings that page-fault on first touch; that alone made
    timings vary by 3x from run to run here.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: serve buffers below 1 GiB from the heap
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: do not give the heap back after each free


def run(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> list[Row]:
    keep_freed_memory()
    torch.set_num_threads(cfg.threads)
    rows = []
    for L in cfg.lengths:
        if progress:
            progress(f"L = {L} ...")
        rows += bench_length(cfg, L)
    return rows


def format_table(rows: list[Row], cfg: BenchConfig) -> str:
    """A markdown table, with the growth of DSA core time when L doubles at fixed k."""
    head = (
        f"one attention layer, fp32 MQA: {cfg.n_heads} query heads x {cfg.head_dim} dims; indexer "
        f"{cfg.index_heads} heads x {cfg.index_dim} dims in {cfg.index_precision}; batch 1, {cfg.threads} threads\n\n"
        "| L | k | mode | dense | DSA | indexer share | DSA speed-up | core x per 2L | dense GFLOP | DSA GFLOP "
        "| auto | auto / best | dense B/token | DSA B/token |\n"
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    )
    lines = [head]
    prev_core: dict[tuple[int, str], tuple[int, float]] = {}
    for r in sorted(rows, key=lambda r: (r.mode != "prefill", r.k, r.L)):
        core = max(r.dsa_s - r.indexer_s, 1e-9)
        growth = ""
        before = prev_core.get((r.k, r.mode))
        if before and before[0] * 2 == r.L:
            growth = f"{core / before[1]:.2f}"
        prev_core[(r.k, r.mode)] = (r.L, core)
        lines.append(
            f"| {r.L} | {r.k} | {r.mode} | {_ms(r.dense_s)} | {_ms(r.dsa_s)} | {100 * r.indexer_s / r.dsa_s:.0f}% "
            f"| {r.dense_s / r.dsa_s:.2f}x | {growth} | {r.dense_gflop:.3g} | {r.dsa_gflop:.3g} |"
            f" {_auto_cell(r)} | {r.dense_bytes or ''} | {r.dsa_bytes or ''} |"
        )
    return "\n".join(lines)


def _auto_cell(r: Row) -> str:
    """Auto mode's time and path, then its time over the faster of dense and DSA (paired by round)."""
    if not r.auto_s:
        return " |"
    path = "DSA" if r.auto_sparse else "dense"
    return f"{_ms(r.auto_s)} ({path}) | {r.auto_vs_best:.2f}"


def crossing(points: list[tuple[int, float, float]]) -> int:
    """The L from which DSA stays faster, from (L, dense_s, dsa_s) sorted by L.

    Between the last length where dense wins and the first where DSA wins for good, the speed-up's
    logarithm is interpolated linearly in log L. DSA never faster: a length beyond any cache (2^31).
    """
    first = len(points)
    while first > 0 and points[first - 1][2] <= points[first - 1][1]:
        first -= 1
    if first == len(points):
        return 1 << 31
    if first == 0:
        return points[0][0]
    (l0, d0, s0), (l1, d1, s1) = points[first - 1], points[first]
    r0, r1 = math.log(d0 / s0), math.log(d1 / s1)  # r0 < 0 <= r1
    x = math.log(l0) + (math.log(l1) - math.log(l0)) * (-r0) / (r1 - r0)
    return math.ceil(math.exp(x))


def calibrate(cfg: BenchConfig, progress: Callable[[str], None] | None = None):
    """Time dense and DSA over cfg.lengths, store each k's crossover per phase; returns (rows, file)."""
    keep_freed_memory()
    torch.set_num_threads(cfg.threads)
    rows = []
    for L in cfg.lengths:
        if progress:
            progress(f"calibrating: L = {L} ...")
        rows += bench_length(cfg, L, with_auto=False)
    found = {}
    for top_k in cfg.top_ks:
        found[top_k] = {}
        for mode in ("prefill", "decode"):
            points = sorted((r.L, r.dense_s, r.dsa_s) for r in rows if r.k == top_k and r.mode == mode)
            found[top_k][mode] = crossing(points)
    return rows, save_crossover(found)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.2f} s"


def run_from_args(args: argparse.Namespace) -> int:
    try:
        lengths = (
            tuple(int(x) for x in args.lengths.split(","))
            if args.lengths
            else (QUICK_LENGTHS if args.quick else FULL_LENGTHS)
        )
        top_ks = tuple(int(x) for x in args.top_k.split(","))
    except ValueError:
        print(
            "--lengths and --top-k take comma-separated integers, e.g. --lengths 1024,2048.", file=sys.stderr
        )
        return 2
    cfg = BenchConfig(
        n_heads=args.heads,
        head_dim=args.head_dim,
        index_precision=args.index_precision,
        lengths=lengths,
        top_ks=top_ks,
        threads=args.threads or os.cpu_count() or 1,
    )
    progress = None if args.json else lambda msg: print(msg, file=sys.stderr, flush=True)
    if getattr(args, "agent", False):
        return run_agent_bench(args)
    if getattr(args, "calibrate", False):
        rows, path = calibrate(cfg, progress)
        found = {k: {m: crossover(k, m) for m in ("prefill", "decode")} for k in cfg.top_ks}
        if args.json:
            print(json.dumps({"file": str(path), "crossover": found}, indent=1))
        else:
            print(format_table(rows, cfg))
            for k, by_phase in found.items():
                print(f"\ncrossover at k = {k}: sparse from L = {by_phase['prefill']} in prefill, "
                      f"{by_phase['decode']} in decode")  # fmt: skip
            print(f"stored in {path}; auto mode (sparse='auto') uses it")
        return 0
    rows = run(cfg, progress=progress)
    if args.json:
        keys = [
            "L",
            "k",
            "mode",
            "dense_s",
            "dsa_s",
            "indexer_s",
            "auto_s",
            "auto_sparse",
            "auto_vs_best",
            "dense_bytes",
            "dsa_bytes",
        ]
        print(json.dumps([{key: asdict(r)[key] for key in keys} for r in rows], indent=1))
    else:
        print(format_table(rows, cfg))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/dsa.py",
        description=__doc__,
        epilog="example: python bench/dsa.py --quick --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_bench_arguments(parser)
    return run_from_args(parser.parse_args(argv))


# ---------------------------------------------------------------------------------------------
# The agent-shaped benchmark: the small DSA LM decoding through one long episode, whose context grows
# by tool results. Only decoding is timed; the tool results go into the caches directly (random
# entries of the right shapes, int8 indexer keys included), since their prefill is not the question.


@dataclass
class AgentRow:
    context: int
    """Tokens in the cache when the turn's decoding starts."""
    dense_tok_s: float
    dsa_tok_s: float
    auto_tok_s: float
    auto_sparse: bool
    dense_cache_mib: float
    """All layers' caches at this context: keys and values."""
    dsa_cache_mib: float
    """The same plus the indexer keys."""


def _tool_result(cache, n: int, gen: torch.Generator) -> None:
    """Append n tokens of tool output to every layer's cache (and mark them valid)."""
    for layer in cache.layers:
        D, DI = (
            layer.k.shape[-1],
            (layer.ik.values if layer.ik is not None else layer.ik_t.transpose(1, 2)).shape[-1],
        )
        layer.append(torch.randn(1, n, D, generator=gen), torch.randn(1, n, D, generator=gen),
                     torch.randn(1, n, DI, generator=gen))  # fmt: skip
    cache.length += n


@torch.no_grad()
def agent_episode(
    lengths: tuple[int, ...],
    top_k: int,
    tokens_per_turn: int = 16,
    threads: int = 1,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[AgentRow]:
    """Decode tokens/s of the small preset (int8 indexer, the given top_k) at each context length.

    One episode per mode (dense, DSA, auto), advanced in lockstep: at each length, tool results
    fill the caches up to it, then each mode decodes tokens_per_turn tokens, one token per mode in
    turn so load changes hit all three alike; the median step time gives tokens/s.
    """
    from .config import small
    from .lm import DSALM, Cache

    keep_freed_memory()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = DSALM(small(top_k=top_k, index_precision="int8", max_seq_len=max(lengths))).eval()
    cap = max(lengths) + tokens_per_turn * (len(lengths) + 1)
    modes = {"dense": False, "dsa": True, "auto": "auto"}
    caches = {m: Cache(model.cfg, 1, cap) for m in modes}
    gen = torch.Generator().manual_seed(seed)
    tokens = {m: torch.zeros(1, 1, dtype=torch.long) for m in modes}
    rows = []
    for L in lengths:
        if progress:
            progress(f"agent episode: context {L} ...")
        for cache in caches.values():
            if cache.length < L:
                _tool_result(cache, L - cache.length, gen)
        times: dict[str, list[float]] = {m: [] for m in modes}
        for _ in range(tokens_per_turn + 1):  # the first step of each mode is a warm-up
            for m, sparse in modes.items():
                start = time.perf_counter()
                logits = model(tokens[m], cache=caches[m], sparse=sparse).logits
                times[m].append(time.perf_counter() - start)
                tokens[m] = logits[:, -1].argmax(-1, keepdim=True)
        tok_s = {m: 1.0 / statistics.median(t[1:]) for m, t in times.items()}
        layer = caches["dsa"].layers[0]
        kv = layer.k[0, 0].nbytes + layer.v[0, 0].nbytes
        n_layers = len(caches["dsa"].layers)
        rows.append(AgentRow(
            L, tok_s["dense"], tok_s["dsa"], tok_s["auto"], auto_sparse(top_k, L + 1, 1),
            n_layers * L * kv / 2**20, n_layers * L * layer.bytes_per_token() / 2**20,
        ))  # fmt: skip
    return rows


def format_agent_table(rows: list[AgentRow], top_k: int, threads: int) -> str:
    head = (
        f"small DSA LM (8 layers, d_model 512, MQA 8 x 64; indexer 4 x 64 int8; top-k {top_k}), batch 1, "
        f"{threads} threads; decode tokens/s as the episode's context grows\n\n"
        "| context | dense tok/s | DSA tok/s | auto tok/s | DSA / dense | cache dense | cache DSA |\n"
        "|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        path = "DSA" if r.auto_sparse else "dense"
        lines.append(
            f"| {r.context} | {r.dense_tok_s:.1f} | {r.dsa_tok_s:.1f} | {r.auto_tok_s:.1f} ({path}) "
            f"| {r.dsa_tok_s / r.dense_tok_s:.2f}x | {r.dense_cache_mib:.1f} MiB | {r.dsa_cache_mib:.1f} MiB |"
        )
    return "\n".join(lines)


def run_agent_bench(args: argparse.Namespace) -> int:
    """`model bench --agent`: the lengths are the episode's context sizes, k the largest --top-k."""
    lengths = tuple(int(x) for x in args.lengths.split(",")) if args.lengths else FULL_LENGTHS
    top_k = max(int(x) for x in args.top_k.split(","))
    threads = args.threads or os.cpu_count() or 1
    progress = None if args.json else lambda msg: print(msg, file=sys.stderr, flush=True)
    rows = agent_episode(tuple(sorted(lengths)), top_k, threads=threads, progress=progress)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        print(format_agent_table(rows, top_k, threads))
    return 0
