"""Model configuration for the small DSA language model.

One dataclass holds every size; `tiny()` is for tests, `small()` is the ~30M-parameter model that
still trains on a CPU. The config round-trips through JSON beside the safetensors weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

INDEX_PRECISIONS = ("fp32", "bf16", "int8")


@dataclass
class DSAConfig:
    """Sizes of a decoder-only LM whose attention layers are DeepSeek Sparse Attention."""

    vocab_size: int = 1024
    """Token ids are in [0, vocab_size)."""
    d_model: int = 64
    """Width of the residual stream."""
    n_layers: int = 2
    """Number of transformer blocks."""
    n_heads: int = 4
    """Query heads of the main attention; all share one key/value head (MQA, as DSA on MLA)."""
    head_dim: int = 16
    """Dimension of each query head and of the shared key and value."""
    d_ff: int = 128
    """Hidden width of the SwiGLU feed-forward."""
    index_heads: int = 2
    """H_I: heads of the lightning indexer."""
    index_dim: int = 16
    """d_I: dimension of each indexer query and of the shared indexer key."""
    index_rope_dim: int = 8
    """RoPE is applied to the first index_rope_dim dims of the indexer query/key (non-interleaved)."""
    index_precision: str = "fp32"
    """Precision of the index scores at inference: fp32, bf16 or int8 (training always uses fp32)."""
    top_k: int = 64
    """Keys each query attends to in sparse mode (DeepSeek-V3.2 uses 2048)."""
    sparse: bool = False
    """Default attention mode: False is dense causal attention, True is top-k sparse attention."""
    chunk_size: int = 512
    """Queries processed together, so index scores and gathers stay O(chunk * L) in memory."""
    max_seq_len: int = 1024
    """Longest sequence the model is trained or evaluated on (RoPE has no hard limit)."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    norm_eps: float = 1e-6
    """RMSNorm epsilon."""

    def validate(self) -> DSAConfig:
        """Check the sizes up front; raise ValueError naming the field to fix."""
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}.")
        if self.index_rope_dim % 2 or not 0 <= self.index_rope_dim <= self.index_dim:
            raise ValueError(
                f"index_rope_dim must be even and at most index_dim ({self.index_dim}), got {self.index_rope_dim}."
            )
        if self.index_precision not in INDEX_PRECISIONS:
            raise ValueError(
                f"index_precision must be one of {INDEX_PRECISIONS}, got {self.index_precision!r}."
            )
        for name in (
            "vocab_size",
            "d_model",
            "n_layers",
            "n_heads",
            "d_ff",
            "index_heads",
            "top_k",
            "chunk_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DSAConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown config keys {unknown}: remove them from config.json.")
        return cls(**data).validate()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> DSAConfig:
        return cls.from_json(Path(path).read_text())


def tiny(**overrides) -> DSAConfig:
    """A model of a few hundred thousand parameters for tests: trains in seconds."""
    return DSAConfig(**overrides).validate()


def small(**overrides) -> DSAConfig:
    """About 30M parameters (8k vocabulary, 8 layers of width 512): trains on a CPU in hours."""
    base = dict(
        vocab_size=8192,
        d_model=512,
        n_layers=8,
        n_heads=8,
        head_dim=64,
        d_ff=1536,
        index_heads=4,
        index_dim=64,
        index_rope_dim=32,
        top_k=256,
        max_seq_len=2048,
        index_precision="int8",  # the int8 key cache and fused kernels: what inference should run
    )
    base.update(overrides)
    return DSAConfig(**base).validate()


PRESETS = {"tiny": tiny, "small": small}
