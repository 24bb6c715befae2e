"""DeepSeek Sparse Attention (DSA): the lightning indexer, top-k token selection, sparse MQA attention.

Read top to bottom as the report's equations: index scores I(t,s) = sum_j w(t,j) * ReLU(q(t,j) . k(s)),
the top-k keys of each query, attention over only those keys. The dense causal path sits beside the
sparse one: it is the reference in tests and gives the target of the indexer's KL losses.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .rope import apply_rope, rope_angles

NEG_INF = float("-inf")
INDEX_BUDGET = 1 << 21
"""(query, indexer head, key) triples scored per step: a few MiB of ReLU intermediate at a time."""
GATHER_BUDGET = 1 << 19
"""Gathered key elements per step of the sparse attention (2 MiB in fp32): keeps the gather in cache."""


class Visible(NamedTuple):
    """Which keys each query may see: every key before `start`, and `tail` (1|B, Lq, n_keys - start) from it."""

    start: int
    tail: torch.Tensor

    def full(self) -> torch.Tensor:
        """The whole mask (1|B, Lq, n_keys)."""
        head = torch.ones(*self.tail.shape[:2], self.start, dtype=torch.bool, device=self.tail.device)
        return torch.cat([head, self.tail], dim=-1)


def visible_keys(q_pos: torch.Tensor, n_keys: int, key_valid: torch.Tensor | None = None) -> Visible:
    """Causal visibility of keys 0..n_keys-1 from queries at ascending positions q_pos (Lq,).

    With key_valid (B, n_keys), padding keys are hidden too (a padding query sees itself only).
    Without padding, keys before the first query are visible to all, so only the tail is stored.
    """
    start = 0 if key_valid is not None else min(int(q_pos[0]), n_keys)
    k_pos = torch.arange(start, n_keys, device=q_pos.device)
    tail = (k_pos[None, :] <= q_pos[:, None])[None]  # (1, Lq, n_keys - start)
    if key_valid is not None:
        tail = tail & (key_valid[:, None, :] | (k_pos[None, :] == q_pos[:, None])[None])  # (B, Lq, n_keys)
    return Visible(start, tail)


# ---------------------------------------------------------------------------------------------
# 1. Lightning indexer: H_I small heads score every (query, key) pair cheaply.


class LightningIndexer(nn.Module):
    """Projects hidden states to indexer queries q(t,j), head weights w(t,j) and one key k(s) per token."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int, rope_dim: int, rope_theta: float = 10000.0):
        super().__init__()
        self.n_heads, self.head_dim, self.rope_dim, self.rope_theta = n_heads, head_dim, rope_dim, rope_theta
        self.wq = nn.Linear(d_model, n_heads * head_dim, bias=False)
        self.wk = nn.Linear(d_model, head_dim, bias=False)  # one key, shared by all indexer heads
        self.ww = nn.Linear(d_model, n_heads, bias=False)
        self.weight_scale = (n_heads * head_dim) ** -0.5

    def forward(
        self, x: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, L, d_model), positions (L,) -> q (B, L, H_I, d_I), w (B, L, H_I), k (B, L, d_I)."""
        B, L, _ = x.shape
        cos, sin = rope_angles(positions, self.rope_dim, self.rope_theta)  # RoPE on the first rope_dim dims
        q = apply_rope(self.wq(x).view(B, L, self.n_heads, self.head_dim), cos, sin)
        k = apply_rope(self.wk(x), cos, sin)
        w = self.ww(x) * self.weight_scale
        return q, w, k


@functools.lru_cache(maxsize=8)
def _hadamard_cached(n: int, device: str) -> torch.Tensor:
    return hadamard(n).to(device)


def hadamard(n: int) -> torch.Tensor:
    """Orthonormal n x n Hadamard matrix (n a power of two): rotates outliers away before int8 rounding."""
    if n & (n - 1):
        raise ValueError(f"The Hadamard rotation needs a power-of-two indexer dim, got {n}.")
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-vector int8: x ~ values * scale, values integers in [-127, 127] (kept as floats)."""
    scale = x.abs().amax(-1, keepdim=True).clamp_min(1e-12) / 127.0
    return torch.round(x / scale), scale


class Int8Keys(NamedTuple):
    """Indexer keys as the decoding cache stores them: Hadamard-rotated, int8 per token, one scale each.

    values (B, T, d_I) in [-127, 127] (int8 in the cache; index_scores also takes them as floats),
    scale (B, T) fp32: key ~ values * scale. A quarter of the bytes of fp32 keys, read at every step.
    """

    values: torch.Tensor
    scale: torch.Tensor

    def prefix(self, n: int) -> Int8Keys:
        return Int8Keys(self.values[:, :n], self.scale[:, :n])

    def as_float(self) -> Int8Keys:
        """The same integers as fp32, stored (B, d_I, T): the layout the prefill score GEMM reads."""
        B, T, d = self.values.shape
        values_t = torch.empty(B, d, T, dtype=torch.float32, device=self.values.device)
        return Int8Keys(values_t.copy_(self.values.transpose(1, 2)).transpose(1, 2), self.scale)


def quantize_keys(k: torch.Tensor) -> Int8Keys:
    """k (B, L, d_I) -> Int8Keys: rotated and rounded once, when the token enters the cache."""
    values, scale = quantize_int8(k.float() @ _hadamard_cached(k.shape[-1], str(k.device)))
    return Int8Keys(values.to(torch.int8), scale.squeeze(-1))


def index_scores(
    q: torch.Tensor, w: torch.Tensor, k: torch.Tensor | Int8Keys, visible: Visible, precision: str = "fp32"
) -> torch.Tensor:
    """I(t,s) = sum_j w(t,j) * ReLU(q(t,j) . k(s)); -inf where query t may not see key s.

    q (B, Lq, H_I, d_I), w (B, Lq, H_I), k (B, Lk, d_I) -> (B, Lq, Lk) fp32. k is fastest as a
    transposed view of a (B, d_I, Lk) tensor, as the decoding cache keeps it: then nothing is copied.
    precision "bf16" multiplies in bfloat16; "int8" rotates q and k by a Hadamard matrix, rounds
    them to int8 per vector and multiplies the integers (exact in fp32 for d_I <= 1024, i.e. what
    an int8 GEMM with int32 accumulation returns), then rescales. k given as Int8Keys (the int8
    cache) is already rotated and rounded: only q is.
    """
    B, Lq, H, d = q.shape
    Lk = k.values.shape[1] if isinstance(k, Int8Keys) else k.shape[1]
    k_scale = None
    if precision == "int8" or isinstance(k, Int8Keys):
        if not isinstance(k, Int8Keys):
            k = quantize_keys(k)
        q, q_scale = quantize_int8(q.float() @ _hadamard_cached(d, str(q.device)))  # q_scale (B, Lq, H, 1)
        k, k_scale = k.values, k.scale[:, :, None]  # k_scale (B, Lk, 1)
        w = w * q_scale.squeeze(-1)  # ReLU(a * x) = a * ReLU(x) for a > 0
    elif precision == "bf16":
        q, k = q.bfloat16(), k.bfloat16()
    k_t = k.to(q.dtype).transpose(1, 2)  # (B, d_I, Lk): the layout the decoding cache stores
    if k_t.stride(-1) != 1:
        k_t = k_t.contiguous()  # once here, or every matmul below would copy it
    w = w.float()  # the weighted sum over heads stays fp32: fewer exact ties in the top-k
    scores = torch.empty(B, Lq, Lk, dtype=torch.float32, device=q.device)
    step = max(1, INDEX_BUDGET // (H * Lk))  # a few queries at a time: the ReLU buffer stays in cache
    for s in range(0, Lq, step):
        e = min(Lq, s + step)
        dots = F.relu(torch.matmul(q[:, s:e].reshape(B, (e - s) * H, d), k_t))  # (B, c*H_I, Lk)
        dots = dots.float().view(B, e - s, H, Lk)
        # (B, c, 1, H_I) @ (B, c, H_I, Lk) -> (B, c, 1, Lk): the weighted sum over indexer heads
        scores[:, s:e] = torch.matmul(w[:, s:e].unsqueeze(2), dots).squeeze(2)
    if k_scale is not None:
        scores = scores * k_scale.transpose(1, 2)  # (B, 1, Lk)
    scores[:, :, visible.start :].masked_fill_(~visible.tail, NEG_INF)
    return scores


# ---------------------------------------------------------------------------------------------
# 2. Top-k selection: each query keeps the k keys with the highest index scores.


def select_topk(scores: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scores (B, Lq, Lk) -> indices (B, Lq, k) and valid (B, Lq, k).

    A query with fewer than k visible keys also gets masked (-inf) ones; valid marks the real ones.
    Ties at the k-th score (common: ReLU makes many scores exactly 0) go to the most recent keys, so
    the choice does not depend on chunking or on decoding with a cache.
    """
    k = min(top_k, scores.shape[-1])
    values, idx = scores.topk(k, dim=-1, sorted=False)
    kth = values.amin(-1, keepdim=True)  # (B, Lq, 1)
    ambiguous = (scores >= kth).sum(-1) > k  # (B, Lq): more keys share the k-th score than fit
    if bool(ambiguous.any()):
        idx[ambiguous] = _score_then_position(scores[ambiguous]).topk(k, dim=-1, sorted=False).indices
        values = scores.gather(-1, idx)
    return idx, values != NEG_INF


def _score_then_position(scores: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered by (fp32 score, position): the float bits made monotone, the position below."""
    bits = scores.float().contiguous().view(torch.int32).long()
    ordered = torch.where(bits >= 0, bits, -(2**31) - bits)  # negative floats: flip so larger is larger
    return ordered * 2**32 + torch.arange(scores.shape[-1], device=scores.device)


# ---------------------------------------------------------------------------------------------
# 2b. Decode: one query per row scores the whole int8 key cache and keeps its top-k, in one pass of
#     a small C++ kernel (AVX512-VNNI where the CPU has it) into preallocated buffers. Decode is
#     bound by the bytes it reads, and this reads 1 byte per key dim where fp32 keys cost 4.

KERNEL_SOURCE = Path(__file__).with_name("dsa_kernels.cpp")
"""The C++ source of the kernels (decode select, prefill select, sparse attention), compiled on first use."""


def _cache_root() -> Path:
    from .default import cache_root  # stdlib-only module: no import cost

    return cache_root()


def _build_kernel(cmd: list[str], source: str, cpu_flags: str) -> Path | None:
    """The library built from source with cmd, cached per source, CPU and command; None if it fails."""
    tag = hashlib.sha256(" ".join([source, cpu_flags, *cmd]).encode()).hexdigest()[:16]
    lib = _cache_root() / "kernels" / f"dsa_decode_{tag}.so"
    if lib.is_file():
        return lib
    try:
        lib.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
            src, out = Path(tmp) / "dsa_decode.cpp", Path(tmp) / "dsa_decode.so"
            src.write_text(source)
            subprocess.run([*cmd, "-o", str(out), str(src)], check=True, capture_output=True, timeout=120)
            os.replace(out, lib)  # atomic: a concurrent build finds a whole file or none
    except (OSError, subprocess.SubprocessError):
        return None
    return lib


@functools.lru_cache(maxsize=1)
def decode_kernel():
    """The compiled decode kernels (a ctypes library), or None where no C++ compiler works.

    Built once per source and CPU into the toolgym cache (about a second with g++; plain C++ on raw
    pointers, so no torch headers, ninja or ATen build; OpenMP where the compiler has it, else plain
    threads). TOOLGYM_DSA_KERNEL=0 turns it off.
    """
    if os.environ.get("TOOLGYM_DSA_KERNEL", "1") == "0":
        return None
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[-1].split("\n", 1)[0]
    except OSError:
        flags = ""
    cmd = [os.environ.get("CXX", "g++"), "-O3", "-march=native", "-shared", "-fPIC", "-pthread"]
    cmd += ["-fno-math-errno", "-fno-trapping-math"]  # floor vectorizes; inf and nan still hold
    source = KERNEL_SOURCE.read_text()
    lib = None
    # with OpenMP the kernels share torch's worker threads (see the source); without, they start their own
    for extra in (["-fopenmp"], []):
        lib = _build_kernel([*cmd, *extra], source, flags)
        if lib is not None:
            break
    if lib is None:
        return None  # no compiler or no writable cache: the torch paths serve, only slower
    so = ctypes.CDLL(str(lib))
    so.dsa_decode_select.restype = so.dsa_sparse_attend.restype = ctypes.c_int
    so.dsa_decode_select.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 6 + [ctypes.c_void_p] * 4
    so.dsa_decode_select.argtypes += [ctypes.c_int64]
    so.dsa_sparse_attend.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 6 + [ctypes.c_void_p] * 2
    so.dsa_sparse_attend.argtypes += [ctypes.c_int64, ctypes.c_float]
    so.dsa_scratch_grows.restype = ctypes.c_int64
    so.dsa_scratch_grows.argtypes = []
    so.dsa_pack_keys.restype = None
    so.dsa_pack_keys.argtypes = [ctypes.c_void_p] + [ctypes.c_int64] * 4 + [ctypes.c_void_p]
    so.dsa_prefill_select.restype = ctypes.c_int
    so.dsa_prefill_select.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 8 + [ctypes.c_void_p] * 2
    so.dsa_prefill_select.argtypes += [ctypes.c_int64]
    return so


class DecodeBuffers:
    """Preallocated outputs of one decode step: scores, the sort keys of the top-k, the top-k itself.

    Sized to the cache's capacity on the first step, so steady decoding allocates nothing.
    """

    def __init__(self) -> None:
        self.scores = self.order = self.idx = self.sel = self.q = self.att = None

    def ensure(self, B: int, H: int, d: int, cap: int, k: int, device: torch.device) -> None:
        if self.scores is None or self.scores.shape != (B, cap):  # the kernel strides rows by cap
            self.scores = torch.empty(B, cap, dtype=torch.float32, device=device)
            self.order = torch.empty(B, cap, dtype=torch.int64, device=device)
        if self.idx is None or self.idx.shape != (B, k):
            self.idx = torch.empty(B, k, dtype=torch.int64, device=device)
            self.sel = torch.empty(B, k, dtype=torch.uint8, device=device)
        if self.q is None or self.q.shape != (B, H, d):
            self.q = torch.empty(B, H, d, dtype=torch.float32, device=device)

    def scratch(self, n: int, device: torch.device) -> torch.Tensor:
        """n floats for the attention kernel's probabilities."""
        if self.att is None or self.att.numel() < n:
            self.att = torch.empty(n, dtype=torch.float32, device=device)
        return self.att


def _mask_pointer(key_valid: torch.Tensor | None, B: int, cap: int) -> tuple[int | None, torch.Tensor | None]:
    """The kernels' view of a key mask: one byte per slot of a (B, cap) cache row, or None for no mask.

    bool is one byte 0/1, so the cache's own mask is read in place; any other mask is copied into one."""
    if key_valid is None:
        return None, None
    if key_valid.dtype != torch.bool or key_valid.stride() != (cap, 1):
        padded = torch.zeros(B, cap, dtype=torch.bool)
        padded[:, : key_valid.shape[1]] = key_valid
        key_valid = padded
    return key_valid.data_ptr(), key_valid


SPLIT_SELECT_KEYS = 4096
"""From this many cached keys a decode step's select splits them over torch's threads (below, a thread
start costs more than it saves)."""
SPLIT_ATTEND_KEYS = 512
"""From this many selected keys a decode step's attention splits them over torch's threads."""


def decode_select(
    q: torch.Tensor,
    w: torch.Tensor,
    keys: Int8Keys,
    top_k: int,
    buffers: DecodeBuffers,
    key_valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One query per row over an int8 key cache: q (B, 1, H_I, d_I), w (B, 1, H_I), keys of n tokens.

    Returns idx (B, 1, k) and valid (B, 1, k), views of the buffers (valid until the next step), the
    same selection as select_topk(index_scores(...)) up to the fp32 summation order. key_valid (B, n)
    hides padding keys (the newest key, the query's own, must be valid).
    """
    B, _, H, d = q.shape
    n = keys.values.shape[1]
    k = min(top_k, n)
    so = decode_kernel()
    values, scale = keys.values, keys.scale
    if so is None or values.device.type != "cpu" or values.stride(-1) != 1 or values.stride(1) != d:
        visible = visible_keys(torch.tensor([n - 1], device=q.device), n, key_valid)
        return select_topk(index_scores(q, w, keys, visible), k)
    cap = values.stride(0) // d  # rows of the preallocated cache the keys (B, n, d) are a view of
    if scale.stride(0) != cap or scale.stride(1) != 1 or values.stride(0) != cap * d:
        raise ValueError("decode_select needs the keys and scales of one preallocated cache.")
    buffers.ensure(B, H, d, cap, k, q.device)
    torch.matmul(q.reshape(B, H, d).float(), _hadamard_cached(d, str(q.device)), out=buffers.q)
    w = w.reshape(B, H).float().contiguous()
    valid_ptr, key_valid = _mask_pointer(key_valid[:, :n] if key_valid is not None else None, B, cap)
    rc = so.dsa_decode_select(
        buffers.q.data_ptr(), w.data_ptr(), values.data_ptr(), scale.data_ptr(),
        valid_ptr, B, H, d, cap, n, k,
        buffers.scores.data_ptr(), buffers.order.data_ptr(), buffers.idx.data_ptr(), buffers.sel.data_ptr(),
        torch.get_num_threads() if n >= SPLIT_SELECT_KEYS else 1,
    )  # fmt: skip
    if rc != 0:
        raise ValueError(
            f"The decode kernel takes at most 8192 indexer query values per row (H_I * d_I = {H * d})."
        )
    return buffers.idx[:, None], buffers.sel.view(torch.bool)[:, None]


class PackedKeys(NamedTuple):
    """An int8 key cache with its copy packed for the prefill kernel (16 tokens' dims interleaved by 4)."""

    keys: Int8Keys
    packed: torch.Tensor
    n: int


def pack_keys(keys: Int8Keys, n: int) -> PackedKeys | None:
    """The first n keys packed for prefill_select, or None where the kernel or the layout does not fit."""
    so = decode_kernel()
    values = keys.values
    B, _, d = values.shape
    if so is None or values.device.type != "cpu" or values.stride(-1) != 1 or values.stride(1) != d:
        return None
    cap = values.stride(0) // d
    if keys.scale.stride() != (cap, 1) or d % 4 or d > 8192:
        return None
    packed = torch.empty(B * ((n + 15) // 16) * d * 16, dtype=torch.uint8)
    so.dsa_pack_keys(values.data_ptr(), B, cap, d, n, packed.data_ptr())
    return PackedKeys(keys, packed, n)


def prefill_select(
    q: torch.Tensor,
    w: torch.Tensor,
    keys: PackedKeys,
    top_k: int,
    q_offset: int,
    key_valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries at positions q_offset.. over their visible keys (causal, and key_valid) of the int8 cache:
    q (B, Lq, H_I, d_I), w (B, Lq, H_I) -> idx and valid (B, Lq, top_k), the selection of
    select_topk(index_scores(...)) up to the fp32 summation order, scored and selected in one kernel
    pass per query (split over torch's threads) with no (Lq, Lk) score matrix.
    """
    so = decode_kernel()
    B, Lq, H, d = q.shape
    values, scale = keys.keys.values, keys.keys.scale
    cap = values.stride(0) // d
    if q_offset + Lq > keys.n:
        raise ValueError(f"the packed keys hold {keys.n} tokens; queries reach {q_offset + Lq}")
    qr = torch.matmul(q.float(), _hadamard_cached(d, str(q.device))).contiguous()
    w = w.float().contiguous()
    valid_ptr, key_valid = _mask_pointer(key_valid, B, cap)  # key_valid kept alive for the call
    idx = torch.empty(B, Lq, top_k, dtype=torch.int64)
    sel = torch.empty(B, Lq, top_k, dtype=torch.uint8)
    threads = 1 if B * Lq < 16 else torch.get_num_threads()
    rc = so.dsa_prefill_select(
        qr.data_ptr(), w.data_ptr(), values.data_ptr(), keys.packed.data_ptr(), scale.data_ptr(), valid_ptr,
        B, Lq, H, d, cap, keys.n, q_offset, top_k, idx.data_ptr(), sel.data_ptr(), threads,
    )  # fmt: skip
    if rc != 0:
        raise ValueError(f"the prefill kernel refused its shapes (q_offset {q_offset} + Lq {Lq} > cap {cap})")
    return idx, sel.view(torch.bool)


def fused_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    valid: torch.Tensor,
    buffers: DecodeBuffers | None = None,
) -> torch.Tensor | None:
    """sparse_attention's output from the C++ kernel: each query's dots, softmax and weighted sum in one
    pass over its own k rows, split over torch's thread count (one thread for a single query).

    q (B, Lq, H, D), k and v (B, n, D) fp32 (views of a cache are fine), idx and valid (B, Lq, K) ->
    out (B, Lq, H, D). No autograd: None when gradients are wanted, or where the kernel or the
    layout does not fit; then use sparse_attention.
    """
    so = decode_kernel()
    B, Lq, H, D = q.shape
    if (
        so is None
        or (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad))
        or q.dtype != torch.float32
        or k.dtype != torch.float32
        or v.dtype != torch.float32
        or q.device.type != "cpu"
        or k.stride()[1:] != (D, 1)
        or v.stride() != k.stride()
    ):
        return None
    cap = k.stride(0) // D
    n_sel = idx.shape[-1]
    rows = B * Lq
    # many queries split over threads by rows; a single one (a decode step) by its keys once they are
    # enough to pay for a thread start; a few queries stay on one thread
    split = rows >= 8 or (rows == 1 and idx.shape[-1] >= SPLIT_ATTEND_KEYS)
    threads = torch.get_num_threads() if split else 1
    idx = idx.contiguous()
    sel = valid.contiguous().view(torch.uint8)
    q = q.contiguous()  # the kernel scales it as it reads it
    out = torch.empty(B, Lq, H, D, dtype=torch.float32, device=q.device)
    n_scratch = threads * H * n_sel
    att = buffers.scratch(n_scratch, q.device) if buffers is not None else torch.empty(n_scratch)
    rc = so.dsa_sparse_attend(
        q.data_ptr(), k.data_ptr(), v.data_ptr(), idx.data_ptr(), sel.data_ptr(),
        B, Lq, H, D, cap, n_sel, att.data_ptr(), out.data_ptr(), threads, D**-0.5,
    )  # fmt: skip
    return out if rc == 0 else None


# ---------------------------------------------------------------------------------------------
# 3. Attention: sparse over the selected keys, and the dense reference beside it. MQA: one key and
#    one value per token shared by all query heads, so each query gathers its k entries once.


def sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    idx: torch.Tensor,
    valid: torch.Tensor,
    need_probs: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each query attends to its own selected keys only.

    q (B, Lq, H, D), k and v (B, Lk, D), idx and valid (B, Lq, K) -> out (B, Lq, H, D) and, if asked,
    probs (B, Lq, H, K). Queries go a few at a time so the gathered keys and values stay small.
    """
    B, Lq, H, D = q.shape
    Lk, K = k.shape[1], idx.shape[-1]
    q = q * D**-0.5
    flat_k, flat_v = k.reshape(B * Lk, D), v.reshape(B * Lk, D)
    flat_idx = idx + torch.arange(B, device=idx.device)[:, None, None] * Lk  # index into (B*Lk) rows
    hidden = None if bool(valid.all()) else ~valid[:, :, None, :]  # (B, Lq, 1, K): short rows only
    step = max(1, GATHER_BUDGET // (B * K * D))
    outs, probs = [], []
    for s in range(0, Lq, step):
        e = min(Lq, s + step)
        rows = flat_idx[:, s:e].reshape(-1)
        ks = flat_k.index_select(0, rows).view(B, e - s, K, D)  # the only reads of the KV entries
        vs = flat_v.index_select(0, rows).view(B, e - s, K, D)
        att = torch.matmul(q[:, s:e], ks.transpose(-1, -2))  # (B, c, H, D) @ (B, c, D, K)
        if hidden is not None:
            att = att.masked_fill(hidden[:, s:e], NEG_INF)
        att = att.softmax(-1)  # (B, c, H, K)
        outs.append(torch.matmul(att, vs))  # (B, c, H, K) @ (B, c, K, D) -> (B, c, H, D)
        if need_probs:
            probs.append(att)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
    return out, ((probs[0] if len(probs) == 1 else torch.cat(probs, 1)) if need_probs else None)


def dense_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, visible: Visible | None, need_probs: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reference attention over all visible keys.

    q (B, Lq, H, D), k and v (B, Lk, D); visible None means plain causal with Lq == Lk.
    Uses torch SDPA unless the probabilities (B, Lq, H, Lk) are needed for the indexer's target.
    """
    if not need_probs:
        qh, kh, vh = q.transpose(1, 2), k.unsqueeze(1), v.unsqueeze(1)  # (B, H, Lq, D), (B, 1, Lk, D)
        mask = None if visible is None else visible.full().unsqueeze(1)  # (1|B, 1, Lq, Lk)
        out = F.scaled_dot_product_attention(
            qh, kh, vh, attn_mask=mask, is_causal=visible is None, enable_gqa=True
        )
        return out.transpose(1, 2), None
    if visible is None:
        visible = visible_keys(torch.arange(q.shape[1], device=q.device), k.shape[1])
    mask = visible.full()  # (1|B, Lq, Lk)
    att = torch.einsum("blhd,bsd->blhs", q, k) * q.shape[-1] ** -0.5  # (B, Lq, H, Lk)
    att = att.masked_fill(~mask[:, :, None, :], NEG_INF).softmax(-1)
    return torch.einsum("blhs,bsd->blhd", att, v), att


def dense_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One query per row over all its keys: q (B, 1, H, D), k and v (B, Lk, D) -> (B, 1, H, D).

    Two matmuls: for a single query they beat SDPA on CPU, and no mask is built.
    """
    B, _, H, D = q.shape
    if B == 1 and q.dtype == torch.float32:  # plain 2-D GEMMs: cheaper to launch than batched ones
        # the scale rides on the GEMM (alpha) rather than on a scaled copy of q: one op less per step
        att = torch.addmm(_ZERO, q.reshape(H, D), k[0].T, beta=0, alpha=D**-0.5).softmax(-1)  # (H, Lk)
        return torch.mm(att, v[0]).view(1, 1, H, D)
    att = torch.matmul(q[:, 0] * D**-0.5, k.transpose(1, 2)).softmax(-1)  # (B, H, Lk)
    return torch.matmul(att, v)[:, None]


_ZERO = torch.zeros(())
"""The addmm input that beta = 0 ignores (a 0-dim tensor broadcasts without a copy)."""


# ---------------------------------------------------------------------------------------------
# 4. Indexer losses. Dense warm-up: KL(p || softmax(I)) over all keys, p the main attention summed
#    over heads and L1-normalized. Sparse stage: the same KL over the selected keys only.


def indexer_kl(probs: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum over queries of KL(p || softmax(I)).

    probs (B, Lq, H, S) main attention (a detached target), scores (B, Lq, S) index scores with -inf
    outside valid (1|B, Lq, S). Returns a scalar; divide by the number of queries for the mean.
    """
    p = probs.detach().sum(2)
    p = p / p.sum(-1, keepdim=True)  # (B, Lq, S), L1-normalized over the keys
    log_q = scores.log_softmax(-1)
    keep = valid & (p > 0)
    kl = torch.where(keep, torch.xlogy(p, p) - p * log_q, 0.0)
    return kl.sum()


# ---------------------------------------------------------------------------------------------
# 5. The whole DSA attention, chunked over queries so memory stays O(chunk * L) at long L.


def dsa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    iq: torch.Tensor,
    iw: torch.Tensor,
    ik: torch.Tensor | Int8Keys,
    *,
    top_k: int | None,
    q_offset: int = 0,
    key_valid: torch.Tensor | None = None,
    chunk: int = 512,
    precision: str = "fp32",
    indexer_loss: bool = False,
    buffers: DecodeBuffers | None = None,
    auto: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Queries at positions q_offset.. attend to keys 0..Lk-1 (the cache plus themselves).

    q (B, Lq, H, D); k, v (B, Lk, D); iq (B, Lq, H_I, d_I), iw (B, Lq, H_I), ik (B, Lk, d_I) or the
    int8 cache's Int8Keys. top_k None is dense causal attention; otherwise each query sees only its
    top_k keys by index score. With buffers and Int8Keys, a one-token decode step scores and selects
    in the fused kernel (decode_select). With auto, top_k applies only from the phase's calibrated
    crossover on (auto_sparse); below it the call is dense. Returns out (B, Lq, H, D) and, if
    indexer_loss, the mean over queries of the indexer KL.
    """
    B, Lq = q.shape[:2]
    Lk = k.shape[1]
    if auto and top_k is not None and Lk > top_k and not auto_sparse(top_k, Lk, Lq):
        top_k = None  # decided here, in the call the model makes anyway: auto adds no step of its own
    all_keys = top_k is None or Lk <= top_k  # dense, or k covers every key: the same attention
    if all_keys and not indexer_loss and key_valid is None:  # no padding: no mask needed
        if q_offset == 0 and Lk == Lq:
            return dense_attention(q, k, v, None)[0], None
        if Lq == 1:
            return dense_decode(q, k, v), None
    packed = None
    if isinstance(ik, Int8Keys):
        if Lq == 1 and buffers is not None and top_k is not None and Lk > top_k and not indexer_loss:
            idx, valid = decode_select(iq, iw, ik, top_k, buffers, key_valid)
            out = fused_sparse_attention(q, k, v, idx, valid, buffers)
            return (sparse_attention(q, k, v, idx, valid)[0] if out is None else out), None
        if Lq > 1 and top_k is not None and Lk > top_k and not indexer_loss:
            # prefill in the kernel: scores and top-k per query, without the (chunk, Lk) score matrix
            packed = pack_keys(ik, Lk)
        if Lq > 1 and packed is None:  # the torch path: the int8 values as floats once for all chunks
            ik = ik.as_float()
    outs, kl_total = [], q.new_zeros(())
    for s in range(0, Lq, chunk):
        e = min(Lq, s + chunk)
        n_keys = q_offset + e  # causal: later keys are invisible to this chunk
        q_pos = torch.arange(q_offset + s, q_offset + e, device=q.device)
        valid_keys = None if key_valid is None else key_valid[:, :n_keys]
        kc, vc = k[:, :n_keys], v[:, :n_keys]
        ikc = ik.prefix(n_keys) if isinstance(ik, Int8Keys) else ik[:, :n_keys]
        visible = visible_keys(q_pos, n_keys, valid_keys)
        sparse = top_k is not None and n_keys > top_k
        scores = None
        if (sparse and packed is None) or indexer_loss:
            scores = index_scores(iq[:, s:e], iw[:, s:e], ikc, visible, precision)  # (B, c, n_keys)
        if sparse:
            if packed is not None:
                idx, valid = prefill_select(iq[:, s:e], iw[:, s:e], packed, top_k, q_offset + s, valid_keys)
            else:
                idx, valid = select_topk(scores, top_k)  # (B, c, k)
            out = None if indexer_loss else fused_sparse_attention(q[:, s:e], kc, vc, idx, valid, buffers)
            if out is None:
                out, probs = sparse_attention(q[:, s:e], kc, vc, idx, valid, need_probs=indexer_loss)
            if indexer_loss:
                kl_total = kl_total + indexer_kl(probs, scores.gather(-1, idx), valid)
        else:
            plain_causal = valid_keys is None and q_offset + s == 0 and e == n_keys
            out, probs = dense_attention(q[:, s:e], kc, vc, None if plain_causal else visible, indexer_loss)
            if indexer_loss:
                kl_total = kl_total + indexer_kl(probs, scores, visible.full())
        outs.append(out)
    out = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
    return out, (kl_total / (B * Lq) if indexer_loss else None)


# ---------------------------------------------------------------------------------------------
# 6. Auto mode: below a crossover length dense attention is faster than the indexer plus top-k
#    (DeepSeek-V3.2 also runs short sequences densely). The crossover is measured per machine by
#    `toolgym model bench --calibrate`; until then the defaults below hold.

CROSSOVER_FILE = "dsa_crossover.json"
DEFAULT_CROSSOVER = {"prefill": 8.0, "decode": 2.0}
"""Without a calibration: sparse from 8k keys in prefill and 2k in decode, as multiples of top_k."""


def crossover_path() -> Path:
    return _cache_root() / CROSSOVER_FILE


def save_crossover(by_k: dict[int, dict[str, int]], path: Path | None = None) -> Path:
    """Store {top_k: {"prefill": L, "decode": L}} measured on this machine (other k stay); returns the file."""
    path = path or crossover_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**_read_crossover(path), **by_k}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({str(k): v for k, v in sorted(merged.items())}, indent=1) + "\n")
    os.replace(tmp, path)
    forget_crossover()
    return path


def _read_crossover(path: Path) -> dict[int, dict[str, int]]:
    try:
        data = json.loads(path.read_text())
        return {int(k): {p: int(v[p]) for p in ("prefill", "decode")} for k, v in data.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # absent or damaged: the defaults hold


_crossovers: dict[tuple[int, str], int] = {}
"""crossover() per (k, phase), read once per process: auto mode asks at every layer of every decode step,
and a lookup that reads the environment (to find the cache) took 4-5% of a 4k decode step, with cold caches."""


def forget_crossover() -> None:
    """Read the crossover file again at the next crossover() (after it changed, or the cache moved)."""
    _crossovers.clear()


def crossover(top_k: int, phase: str) -> int:
    """Keys from which sparse attention beats dense in this phase ("prefill" or "decode").

    From the calibration of the nearest top_k (scaled by the ratio of the k values), else the default.
    """
    found = _crossovers.get((top_k, phase))
    if found is None:
        measured = _read_crossover(crossover_path())
        if not measured:
            found = int(DEFAULT_CROSSOVER[phase] * top_k)
        else:
            near = min(measured, key=lambda k: abs(math.log(k / top_k)))
            found = int(measured[near][phase] * top_k / near)
        _crossovers[(top_k, phase)] = found
    return found


def auto_sparse(top_k: int, n_keys: int, n_queries: int) -> bool:
    """Auto mode's choice for one call: sparse once the keys reach the phase's crossover (and exceed k)."""
    phase = "decode" if n_queries == 1 else "prefill"
    return n_keys > top_k and n_keys >= crossover(top_k, phase)
