"""A small decoder-only language model whose attention layers are DeepSeek Sparse Attention.

RMSNorm, RoPE, SwiGLU and DSA attention (MQA + lightning indexer), then the decoding caches (keys,
values and indexer keys) and batched, seeded sampling with temperature, top-p and stop strings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import DSAConfig
from .dsa import (
    DecodeBuffers,
    Int8Keys,
    LightningIndexer,
    dense_attention,
    dsa_attention,
    index_scores,
    quantize_keys,
    visible_keys,
)
from .rope import apply_rope, rope_angles


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_gate = nn.Linear(d_model, d_ff, bias=False)
        self.w_up = nn.Linear(d_model, d_ff, bias=False)
        self.w_down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


# ---------------------------------------------------------------------------------------------
# Decoding caches: per layer the keys and values (read only at the k selected positions in sparse
# mode) and the indexer keys (read in full, but they are small).


class LayerCache:
    """Preallocated keys (B, T, D), values (B, T, D) and indexer keys of one layer.

    Indexer keys are read in full at every decode step, so they are kept small: with index_precision
    "int8" as Int8Keys (Hadamard-rotated int8 (B, T, d_I) plus a scale per token, rounded once on
    append: 1 byte per dim, as DeepSeek-V3.2 keeps them in FP8), else transposed (B, d_I, T), the
    layout the score GEMM reads, in bf16 or the model's dtype.
    """

    def __init__(self, cfg: DSAConfig, batch: int, max_len: int, dtype: torch.dtype, device: torch.device):
        self.k = torch.zeros(batch, max_len, cfg.head_dim, dtype=dtype, device=device)
        self.v = torch.zeros(batch, max_len, cfg.head_dim, dtype=dtype, device=device)
        self.ik: Int8Keys | None = None
        self.ik_t: torch.Tensor | None = None
        if cfg.index_precision == "int8":
            self.ik = Int8Keys(
                torch.zeros(batch, max_len, cfg.index_dim, dtype=torch.int8, device=device),
                torch.zeros(batch, max_len, dtype=torch.float32, device=device),
            )
        else:
            ik_dtype = torch.bfloat16 if cfg.index_precision == "bf16" else dtype
            self.ik_t = torch.zeros(batch, cfg.index_dim, max_len, dtype=ik_dtype, device=device)
        self.buffers = DecodeBuffers()  # the decode kernel's scores and top-k, reused every step
        self.length = 0

    def append(
        self, k: torch.Tensor, v: torch.Tensor, ik: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | Int8Keys]:
        """Store the new entries and return views over everything cached so far."""
        n, L = self.length, k.shape[1]
        if n + L > self.k.shape[1]:
            raise ValueError(f"Cache holds {self.k.shape[1]} positions; create it with a larger max_len.")
        self.k[:, n : n + L], self.v[:, n : n + L] = k, v
        self.length = n + L
        if self.ik is not None:
            q = quantize_keys(ik)
            self.ik.values[:, n : n + L], self.ik.scale[:, n : n + L] = q.values, q.scale
            return self.k[:, : n + L], self.v[:, : n + L], self.ik.prefix(n + L)
        self.ik_t[:, :, n : n + L] = ik.transpose(1, 2)
        return self.k[:, : n + L], self.v[:, : n + L], self.ik_t[:, :, : n + L].transpose(1, 2)

    def bytes_per_token(self) -> int:
        """Cache bytes each token costs in this layer: key, value and indexer key (with its scale)."""
        kv = self.k[0, 0].nbytes + self.v[0, 0].nbytes
        if self.ik is not None:
            return kv + self.ik.values[0, 0].nbytes + self.ik.scale[0, 0].nbytes
        return kv + self.ik_t[0, :, 0].nbytes


class Cache:
    """The caches of all layers plus which cached positions are real tokens (not left padding)."""

    def __init__(self, cfg: DSAConfig, batch: int, max_len: int, dtype=torch.float32, device="cpu"):
        self.layers = [
            LayerCache(cfg, batch, max_len, dtype, torch.device(device)) for _ in range(cfg.n_layers)
        ]
        self.key_valid = torch.ones(batch, max_len, dtype=torch.bool, device=device)
        self.length = 0


# ---------------------------------------------------------------------------------------------
# The model.


class DSAttention(nn.Module):
    """Causal MQA attention whose keys are chosen per query by a lightning indexer (or all, in dense mode)."""

    def __init__(self, cfg: DSAConfig):
        super().__init__()
        self.cfg = cfg
        self.wq = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        self.wkv = nn.Linear(cfg.d_model, 2 * cfg.head_dim, bias=False)  # one key and one value: MQA
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)
        self.indexer = LightningIndexer(
            cfg.d_model, cfg.index_heads, cfg.index_dim, cfg.index_rope_dim, cfg.rope_theta
        )

    def project(
        self, x: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, L, d_model) -> q (B, L, H, D) and the shared k, v (B, L, D), RoPE applied to q and k."""
        cfg = self.cfg
        B, L, _ = x.shape
        cos, sin = rope_angles(positions, cfg.head_dim, cfg.rope_theta)
        q = apply_rope(self.wq(x).view(B, L, cfg.n_heads, cfg.head_dim), cos, sin)
        k, v = self.wkv(x).split(cfg.head_dim, dim=-1)
        return q, apply_rope(k, cos, sin), v

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense attention probabilities (B, L, H, L) and index scores (B, L, L) of a whole sequence."""
        positions = torch.arange(x.shape[1], device=x.device)
        q, k, v = self.project(x, positions)
        visible = visible_keys(positions, x.shape[1])
        _, probs = dense_attention(q, k, v, visible, need_probs=True)
        iq, iw, ik = self.indexer(x, positions)
        return probs, index_scores(iq, iw, ik, visible, self.cfg.index_precision)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        *,
        cache: LayerCache | None = None,
        key_valid: torch.Tensor | None = None,
        sparse: bool | str = False,
        indexer_loss: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """sparse: True (top-k), False (dense) or "auto" (dense below the measured crossover)."""
        cfg = self.cfg
        B, L, _ = x.shape
        q, k, v = self.project(x, positions)
        # The indexer reads a detached copy of the hidden states: its KL loss trains it alone, and
        # the LM loss never reaches it (top-k is not differentiable).
        iq, iw, ik = self.indexer(x.detach(), positions)
        offset = 0
        if cache is not None:
            offset = cache.length
            k, v, ik = cache.append(k, v, ik)  # now (B, offset + L, .)
        auto = sparse == "auto"
        if auto and indexer_loss:  # auto is an inference choice: with the indexer loss (training) it is dense
            sparse = auto = False
        out, kl = dsa_attention(
            q,
            k,
            v,
            iq,
            iw,
            ik,
            top_k=cfg.top_k if sparse else None,
            q_offset=offset,
            key_valid=key_valid,
            chunk=cfg.chunk_size,
            precision="fp32" if self.training else cfg.index_precision,
            indexer_loss=indexer_loss,
            buffers=cache.buffers if cache is not None else None,
            auto=auto,
        )
        return self.wo(out.reshape(B, L, -1)), kl


class Block(nn.Module):
    def __init__(self, cfg: DSAConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = DSAttention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.d_ff)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, **attn_kwargs):
        h, kl = self.attn(self.attn_norm(x), positions, **attn_kwargs)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), kl


@dataclass
class LMOutput:
    logits: torch.Tensor
    """(B, L, vocab_size)"""
    loss: torch.Tensor | None = None
    """Mean next-token cross-entropy, when targets were given."""
    indexer_loss: torch.Tensor | None = None
    """Indexer KL summed over layers (mean over queries), when asked for."""


class DSALM(nn.Module):
    """Token embedding, n_layers pre-norm blocks of DSA attention + SwiGLU, a tied output head."""

    def __init__(self, cfg: DSAConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by depth
            if name.endswith(("attn.wo.weight", "mlp.w_down.weight")):
                nn.init.normal_(p, std=0.02 / (2 * cfg.n_layers) ** 0.5)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def indexer_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if ".indexer." in n]

    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        cache: Cache | None = None,
        key_valid: torch.Tensor | None = None,
        sparse: bool | str | None = None,
        indexer_loss: bool = False,
    ) -> LMOutput:
        """tokens (B, L) -> logits (B, L, V). With a cache, tokens continue the cached sequence.

        key_valid (B, L) marks real tokens (False for left padding); sparse None uses cfg.sparse, "auto"
        picks dense or sparse per call by the crossover `toolgym model bench --calibrate` measured.
        """
        B, L = tokens.shape
        sparse = self.cfg.sparse if sparse is None else sparse
        offset = cache.length if cache is not None else 0
        positions = torch.arange(offset, offset + L, device=tokens.device)
        if cache is not None:
            if key_valid is not None:
                cache.key_valid[:, offset : offset + L] = key_valid
            key_valid = cache.key_valid[:, : offset + L]
            cache.length = offset + L
        if key_valid is not None and bool(key_valid.all()):
            key_valid = None  # nothing is padding: take the plain causal path
        x = self.embed(tokens)
        kl_total = None
        for i, block in enumerate(self.blocks):
            layer_cache = cache.layers[i] if cache is not None else None
            x, kl = block(
                x, positions, cache=layer_cache, key_valid=key_valid, sparse=sparse, indexer_loss=indexer_loss
            )
            if kl is not None:
                kl_total = kl if kl_total is None else kl_total + kl
        logits = self.head(self.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        return LMOutput(logits, loss, kl_total)


# ---------------------------------------------------------------------------------------------
# Generation.


def sample_next(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator
) -> torch.Tensor:
    """logits (B, V) -> token ids (B,). temperature 0 is greedy; top_p keeps the smallest nucleus."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p >= top_p  # mass before this token already reaches top_p
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_ids(
    model: DSALM,
    prompts: list[list[int]],
    max_new_tokens: int = 64,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    eos_id: int | None = None,
    pad_id: int = 0,
    sparse: bool | str | None = None,
    should_stop=None,
) -> list[list[int]]:
    """Batched sampling with caches: prompts are left-padded, then decoded one token per step.

    should_stop(row, new_ids) -> bool ends a row early (used for stop strings). Returns the new ids
    of each row (without the prompt; eos included when sampled).
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("Every prompt needs at least one token (start it with the BOS token).")
    was_training = model.training
    model.eval()
    device = model.embed.weight.device
    B, width = len(prompts), max(len(p) for p in prompts)
    tokens = torch.full((B, width), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros(B, width, dtype=torch.bool, device=device)
    for i, p in enumerate(prompts):
        tokens[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        valid[i, width - len(p) :] = True
    cache = Cache(model.cfg, B, width + max_new_tokens, model.embed.weight.dtype, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    new_ids: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    logits = model(tokens, cache=cache, key_valid=valid, sparse=sparse).logits[:, -1]  # prefill
    for _ in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_p, generator)  # every row samples: the stream is fixed
        for i in range(B):
            if done[i]:
                continue
            new_ids[i].append(int(nxt[i]))
            if (eos_id is not None and int(nxt[i]) == eos_id) or (should_stop and should_stop(i, new_ids[i])):
                done[i] = True
        if all(done):
            break
        logits = model(nxt[:, None], cache=cache, sparse=sparse).logits[:, -1]
    model.train(was_training)
    return new_ids


def generate(
    model: DSALM,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 64,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    stop: list[str] | None = None,
    seed: int = 0,
    sparse: bool | str | None = None,
) -> list[str]:
    """Complete each prompt; the text ends before the first stop string or the end-of-sentence token."""
    stop = stop or []

    def should_stop(_row: int, ids: list[int]) -> bool:
        text = tokenizer.decode(ids)
        return any(s in text for s in stop)

    prompt_ids = [[tokenizer.bos_id, *tokenizer.encode(p)] for p in prompts]
    outs = generate_ids(
        model,
        prompt_ids,
        max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
        sparse=sparse,
        should_stop=should_stop if stop else None,
    )
    texts = []
    for ids in outs:
        if ids and ids[-1] == tokenizer.eos_id:
            ids = ids[:-1]
        text = tokenizer.decode(ids)
        cut = min((text.index(s) for s in stop if s in text), default=len(text))
        texts.append(text[:cut])
    return texts
