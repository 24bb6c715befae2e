"""Retrofit DSA onto a dense Hugging Face Llama/Qwen2 model: attach indexers, train them, run the model sparse.

The dense model stays frozen. Hooks on each layer's self-attention capture its input hidden states and (with
eager attention) its attention probabilities, the targets of the indexer KL. In sparse mode a pre-hook on each
layer scores the layer's new queries against every indexer key of its row (a KV cache keeps them, as extra
cache layers), keeps the top-k visible keys and turns that choice into the layer's attention mask; with k at
least the visible length nothing changes, so the model is exactly the dense one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .dsa import LightningIndexer, Visible, index_scores, indexer_kl, select_topk, visible_keys
from .rope import apply_rope, rope_angles
from .train import Progress, StageConfig, _run

INDEXER_WEIGHTS = "indexers.safetensors"
INDEXER_CONFIG = "indexers.json"
"""A folder holding this file beside a Hugging Face checkpoint is a retrofitted (sparse) model."""
CHECKPOINT_FORMAT = "toolgym-dsa-retrofit"


def _layers(hf_model: nn.Module) -> nn.ModuleList:
    inner = getattr(hf_model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not all(hasattr(layer, "self_attn") for layer in layers):
        raise ValueError(
            f"{type(hf_model).__name__} is not a Llama/Qwen2-style causal LM (model.layers[i].self_attn): "
            "use LlamaForCausalLM or Qwen2ForCausalLM."
        )
    return layers


def _hidden_states(args: tuple, kwargs: dict) -> torch.Tensor:
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


def _rope_theta(config: Any) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    theta = params.get("rope_theta") if isinstance(params, dict) else None
    return float(theta or getattr(config, "rope_theta", None) or 10000.0)


def indexer_projections(
    indexer: LightningIndexer, x: torch.Tensor, positions: torch.Tensor, keys_only: bool = False
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """LightningIndexer.forward with a position per row: x (B, L, d), positions (B|1, L).

    Left-padded rows start their positions later; RoPE makes the scores depend on relative positions only,
    so these are the scores of the unpadded row. Returns q (B, L, H_I, d_I), w (B, L, H_I), k (B, L, d_I).
    """
    B, L, _ = x.shape
    cos, sin = rope_angles(positions.expand(B, L).reshape(-1), indexer.rope_dim, indexer.rope_theta)
    cos, sin = cos.view(B, L, -1), sin.view(B, L, -1)  # (B, L, r/2)
    k = apply_rope(indexer.wk(x), cos, sin)
    if keys_only:
        return None, None, k
    H, d = indexer.n_heads, indexer.head_dim
    q = indexer.wq(x).view(B * L, H, d)  # 3D so that (B*L, 1, r/2) broadcasts over the heads
    q = apply_rope(q, cos.view(B * L, 1, -1), sin.view(B * L, 1, -1)).view(B, L, H, d)
    return q, indexer.ww(x) * indexer.weight_scale, k


_CACHE_OUT_OF_STEP = (
    "the attention sees {kv} keys but the sparse model's indexer key cache holds {ik}: whatever builds, copies, "
    "crops or merges its KV cache must treat every cache layer alike, including the indexer key layers after "
    "the model's own (cache.layers[num_hidden_layers:])."
)


def _visibility(mask: Any, implementation: str, B: int, Lq: int, Lk: int, dtype: torch.dtype, device):
    """(visible (B|1, Lq, Lk) bool, the 4D mask as given or built, the value that hides a key)."""
    if mask is None:  # SDPA skips the mask of unpadded causal batches: build it
        visible = visible_keys(torch.arange(Lk - Lq, Lk, device=device), Lk).full()  # (1, Lq, Lk)
        if implementation == "eager":
            min_value = torch.finfo(dtype).min
            return (
                visible,
                torch.zeros(1, 1, Lq, Lk, dtype=dtype, device=device).masked_fill_(
                    ~visible[:, None], min_value
                ),
                min_value,
            )
        return visible, visible[:, None], False
    if not isinstance(mask, torch.Tensor):
        raise ValueError(
            f"sparse mode cannot rewrite a {type(mask).__name__} attention mask: load the model with "
            "attn_implementation='eager' or 'sdpa'."
        )
    if mask.shape[-1] != Lk or mask.shape[-2] != Lq:
        raise RuntimeError(_CACHE_OUT_OF_STEP.format(kv=mask.shape[-1], ik=Lk))
    if mask.dtype == torch.bool:
        return mask[:, 0], mask, False
    min_value = torch.finfo(mask.dtype).min
    return mask[:, 0] > min_value / 2, mask, min_value


class RetrofitDSA(nn.Module):
    """A frozen dense causal LM plus one trainable LightningIndexer per layer."""

    def __init__(
        self,
        hf_model: nn.Module,
        index_heads: int = 4,
        index_dim: int = 64,
        index_rope_dim: int = 32,
        top_k: int = 2048,
        rope_theta: float | None = None,
        attn_implementation: str = "eager",
    ):
        super().__init__()
        if hasattr(hf_model, "set_attn_implementation"):
            # eager is the only implementation that returns probabilities (training, recall); sdpa also runs sparse
            hf_model.set_attn_implementation(attn_implementation)
        else:
            hf_model.config._attn_implementation = attn_implementation
        hf_model.requires_grad_(False).eval()
        self.hf = hf_model
        self.top_k = top_k
        cfg = hf_model.config
        theta = float(rope_theta) if rope_theta else _rope_theta(cfg)
        self.index_config = dict(index_heads=index_heads, index_dim=index_dim, index_rope_dim=index_rope_dim)
        self.rope_theta = theta
        self.indexers = nn.ModuleList(
            LightningIndexer(cfg.hidden_size, index_heads, index_dim, index_rope_dim, theta)
            for _ in _layers(hf_model)
        )
        self._sparse_handles: list = []
        self._active_top_k: int | None = None
        self._record: dict[int, dict[str, Any]] | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> RetrofitDSA:
        """Load a local checkpoint folder (nothing is downloaded); a retrofitted one comes with its indexers."""
        from transformers import AutoModelForCausalLM

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(
                f"No model directory at {path}: pass a local Llama/Qwen2 checkpoint folder."
            )
        saved = read_index_config(path)
        if saved:
            kwargs = {
                **{k: saved[k] for k in ("index_heads", "index_dim", "index_rope_dim", "top_k")},
                **kwargs,
            }
            kwargs.setdefault("rope_theta", saved.get("rope_theta"))
        implementation = kwargs.get("attn_implementation", "eager")
        hf = AutoModelForCausalLM.from_pretrained(
            str(path), attn_implementation=implementation, local_files_only=True, dtype=torch.float32
        )
        model = cls(hf, **kwargs)
        if saved:
            model.load_indexers(path)
        return model

    # -- indexer scores and attention maps (training and evaluation, no padding) ----------------

    def _indexer_scores(self, layer: int, hidden: torch.Tensor) -> torch.Tensor:
        """Index scores (B, L, L) of one layer for the hidden states entering its attention."""
        L = hidden.shape[1]
        positions = torch.arange(L, device=hidden.device)
        iq, iw, ik = indexer_projections(self.indexers[layer], hidden.detach().float(), positions[None])
        return index_scores(iq, iw, ik, visible_keys(positions, L))

    def _capture(self, tokens: torch.Tensor, head_sum: bool = False) -> dict[int, tuple]:
        """Run the model (sparse if sparse mode is on) on tokens (B, L): per layer its input and attention."""
        captured: dict[int, tuple] = {}

        def capture(i):
            def hook(_module, args, kwargs, output):
                probs = output[1]
                if probs is None:
                    raise RuntimeError(
                        "The attention returned no probabilities: the model must use eager attention."
                    )
                probs = probs.float().transpose(1, 2)  # (B, L, H, L)
                captured[i] = (
                    _hidden_states(args, kwargs),
                    probs.sum(2, keepdim=True) if head_sum else probs,
                )

            return hook

        handles = [
            layer.self_attn.register_forward_hook(capture(i), with_kwargs=True)
            for i, layer in enumerate(_layers(self.hf))
        ]
        try:
            with torch.no_grad():
                self.hf(input_ids=tokens, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        return captured

    def attention_maps(self, tokens: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer: dense attention probabilities (B, L, H, L) and index scores (B, L, L)."""
        with self.dense():
            captured = self._capture(tokens)
        return [(captured[i][1], self._indexer_scores(i, captured[i][0])) for i in range(len(self.indexers))]

    def indexer_loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Warm-up loss: sum over layers of the mean KL(p || softmax(I)), p the head-summed attention."""
        B, L = tokens.shape
        visible = visible_keys(torch.arange(L, device=tokens.device), L).full()
        with self.dense():
            captured = self._capture(tokens, head_sum=True)
        return sum(
            indexer_kl(captured[i][1], self._indexer_scores(i, captured[i][0]), visible) / (B * L)
            for i in range(len(self.indexers))
        )

    def sparse_indexer_loss(
        self, tokens: torch.Tensor, top_k: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse-stage loss (DeepSeek-V3.2 stage b): the model runs on each layer's top-k keys, and each
        indexer learns KL(p || softmax(I)) over its selected keys only, p the sparse attention summed over heads.

        tokens (B, L + 1). Returns (indexer loss summed over layers, the sparse model's next-token loss).
        """
        x, y = tokens[:, :-1], tokens[:, 1:]
        B, L = x.shape
        self._record = {}
        try:
            with self.sparse(top_k):
                captured: dict[int, tuple] = {}

                def capture(i):
                    def hook(_module, _args, _kwargs, output):
                        captured[i] = output[1].float().transpose(1, 2).sum(2, keepdim=True)  # (B, L, 1, L)

                    return hook

                handles = [
                    layer.self_attn.register_forward_hook(capture(i), with_kwargs=True)
                    for i, layer in enumerate(_layers(self.hf))
                ]
                try:
                    with torch.no_grad():
                        logits = self.hf(input_ids=x, use_cache=False).logits
                finally:
                    for h in handles:
                        h.remove()
            record = self._record
        finally:
            self._record = None
        lm = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        full = visible_keys(torch.arange(L, device=x.device), L).full()
        total = x.new_zeros((), dtype=torch.float32)
        for i in range(len(self.indexers)):
            hidden, idx, valid = record[i]["hidden"], record[i].get("idx"), record[i].get("valid")
            scores = self._indexer_scores(i, hidden)  # (B, L, L), with gradient to the indexer
            probs = captured[i]
            if idx is None:  # the whole window fits in k: every key is selected
                total = total + indexer_kl(probs, scores, full) / (B * L)
            else:
                picked = probs.gather(-1, idx[:, :, None, :])  # (B, L, 1, k)
                total = total + indexer_kl(picked, scores.gather(-1, idx), valid) / (B * L)
        return total, lm

    # -- stages ---------------------------------------------------------------------------------

    def warmup(self, tokens: torch.Tensor, stage: StageConfig, progress: Progress | None = None):
        """Stage (a) on the dense model: only the indexers train, by KL to the dense attention."""

        def loss_fn(_m, x, _y):
            loss = self.indexer_loss(x)
            return {"loss": loss, "kl": loss}

        self.indexers.train()
        history = _run(self, tokens, stage, list(self.indexers.parameters()), loss_fn, progress)
        self.hf.eval()
        return history

    def train_sparse(
        self,
        tokens: torch.Tensor,
        stage: StageConfig,
        progress: Progress | None = None,
        top_k: int | None = None,
    ):
        """Stage (b), top-k on: the indexers learn KL over their selected keys; the dense weights stay frozen
        (on a CPU the LM loss is only reported, as `lm`)."""

        def loss_fn(_m, x, y):
            kl, lm = self.sparse_indexer_loss(torch.cat([x, y[:, -1:]], 1), top_k)
            return {"loss": kl, "kl": kl, "lm": lm}

        self.indexers.train()
        history = _run(self, tokens, stage, list(self.indexers.parameters()), loss_fn, progress)
        self.hf.eval()
        return history

    # -- evaluation -------------------------------------------------------------------------------

    @torch.no_grad()
    def lm_loss(
        self, windows: torch.Tensor, sparse: bool, top_k: int | None = None, batch_size: int = 4
    ) -> float:
        """Mean next-token loss over windows (N, L + 1), dense or with each layer's top-k keys only."""
        total, count = 0.0, 0
        with self.sparse(top_k) if sparse else self.dense():
            for s in range(0, len(windows), batch_size):
                w = windows[s : s + batch_size]
                logits = self.hf(input_ids=w[:, :-1], use_cache=False).logits
                loss = torch.nn.functional.cross_entropy(
                    logits.flatten(0, 1).float(), w[:, 1:].flatten(), reduction="sum"
                )
                total, count = total + float(loss), count + w[:, 1:].numel()
        return total / count

    @torch.no_grad()
    def recall(self, windows: torch.Tensor, top_k: int | None = None, batch_size: int = 4) -> dict[str, Any]:
        """How well each indexer's top-k matches the dense attention, on windows (N, L + 1) with L > k.

        `overlap`: share of the dense attention's own top-k keys (head-summed probabilities) that the
        indexer's top-k also holds. `mass`: share of the dense attention mass on the indexer's top-k, beside
        the k most recent keys (`window`) and the best k keys (`oracle`). Over queries that see more than k keys.
        """
        k = top_k or self.top_k
        L = windows.shape[1] - 1
        if L <= k:
            raise ValueError(f"windows of {L} tokens are too short for top-k = {k}: use longer windows.")
        n_layers = len(self.indexers)
        sums = {"overlap": [0.0] * n_layers, "mass": [0.0] * n_layers, "window": 0.0, "oracle": 0.0}
        count = 0
        recent = (torch.arange(L)[:, None] - torch.arange(L)[None, :]) < k  # (L, L)
        for s in range(0, len(windows), batch_size):
            x = windows[s : s + batch_size, :-1]
            with self.dense():
                captured = self._capture(x, head_sum=True)
            for i in range(n_layers):
                p = captured[i][1][:, :, 0]  # (B, L, L)
                p = p / p.sum(-1, keepdim=True)
                idx, valid = select_topk(self._indexer_scores(i, captured[i][0]), k)
                best = p.topk(k, dim=-1).indices  # (B, L, k)
                chosen = torch.zeros_like(p, dtype=torch.bool).scatter_(-1, idx, valid)
                overlap = chosen.gather(-1, best).float().mean(-1)  # (B, L)
                sums["overlap"][i] += float(overlap[:, k:].sum())
                sums["mass"][i] += float((p * chosen)[:, k:].sum())
                sums["oracle"] += float(p.gather(-1, best)[:, k:].sum())
                sums["window"] += float((p * recent)[:, k:].sum())
            count += x.shape[0] * (L - k)
        per_layer_overlap = [v / count for v in sums["overlap"]]
        per_layer_mass = [v / count for v in sums["mass"]]
        return {
            "k": k,
            "seq_len": L,
            "queries": count,
            "overlap": sum(per_layer_overlap) / n_layers,
            "mass": sum(per_layer_mass) / n_layers,
            "window": sums["window"] / (count * n_layers),
            "oracle": sums["oracle"] / (count * n_layers),
            "per_layer_overlap": per_layer_overlap,
            "per_layer_mass": per_layer_mass,
        }

    # -- sparse mode: top-k attention masks, with or without a KV cache ---------------------------

    def enable_sparse(self, top_k: int | None = None) -> nn.Module:
        """Turn sparse mode on (until `disable_sparse`) and return the Hugging Face model that now runs it.

        That model keeps its own forward: any caller (generate, toolgym's LocalPolicy) drives it as before,
        cache included; each layer then attends to its top_k keys (default: this model's top_k).
        """
        self._active_top_k = int(top_k or self.top_k)
        if self._active_top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self._active_top_k}.")
        if not self._sparse_handles:
            self._sparse_handles = [
                layer.self_attn.register_forward_pre_hook(self._sparse_hook(i), with_kwargs=True)
                for i, layer in enumerate(_layers(self.hf))
            ]
        return self.hf

    def disable_sparse(self) -> nn.Module:
        """Back to dense attention; returns the Hugging Face model."""
        for handle in self._sparse_handles:
            handle.remove()
        self._sparse_handles, self._active_top_k = [], None
        return self.hf

    @property
    def is_sparse(self) -> bool:
        return bool(self._sparse_handles)

    @contextmanager
    def sparse(self, top_k: int | None = None) -> Iterator[nn.Module]:
        """Sparse mode inside a `with` block; the mode (and k) in force before comes back after it."""
        before = self._active_top_k if self.is_sparse else None
        self.enable_sparse(top_k)
        try:
            yield self.hf
        finally:
            self.enable_sparse(before) if before else self.disable_sparse()

    @contextmanager
    def dense(self) -> Iterator[nn.Module]:
        """Dense attention inside a `with` block (the targets of the indexer losses)."""
        before = self._active_top_k if self.is_sparse else None
        self.disable_sparse()
        try:
            yield self.hf
        finally:
            if before:
                self.enable_sparse(before)

    def _indexer_keys(self, cache: Any, layer: int, ik: torch.Tensor) -> torch.Tensor:
        """Append this step's indexer keys (B, Lq, d_I) to the row's cache and return all of them (B, Lk, d_I).

        They live in plain `DynamicLayer`s after the model's own cache layers (keys (B, 1, Lk, d_I), values a
        (B, 1, Lk, 1) placeholder), so whatever selects rows, trims padding columns or merges two caches by
        treating every layer alike (as toolgym's LocalEngine does) keeps them in step with the KV cache.
        """
        from transformers.cache_utils import DynamicLayer

        layers = getattr(cache, "layers", None)
        if layers is None:
            raise ValueError(
                f"sparse mode keeps its indexer keys in the cache's layers; a {type(cache).__name__} has none: "
                "use a transformers DynamicCache (the default)."
            )
        slot = len(self.indexers) + layer
        while len(layers) <= slot:
            layers.append(DynamicLayer())
        B, Lq = ik.shape[:2]
        keys, _ = layers[slot].update(ik[:, None], ik.new_zeros(B, 1, Lq, 1))
        return keys[:, 0]

    def _sparse_hook(self, layer: int):
        def hook(module, args, kwargs):
            hidden = _hidden_states(args, kwargs)
            B, Lq = hidden.shape[:2]
            indexer = self.indexers[layer]
            if indexer.wk.weight.device != hidden.device:
                self.indexers.to(hidden.device)
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            positions = kwargs.get("position_ids")
            if positions is None:
                past = cache.get_seq_length(module.layer_idx) if cache is not None else 0
                positions = torch.arange(past, past + Lq, device=hidden.device)[None]
            top_k = self._active_top_k or self.top_k
            x = hidden.detach().float()
            _, _, ik = indexer_projections(indexer, x, positions, keys_only=True)
            keys = self._indexer_keys(cache, layer, ik) if cache is not None else ik
            Lk = keys.shape[1]
            if cache is not None and Lk != cache.get_seq_length(module.layer_idx) + Lq:
                raise RuntimeError(
                    _CACHE_OUT_OF_STEP.format(kv=cache.get_seq_length(module.layer_idx) + Lq, ik=Lk)
                )
            if self._record is not None:
                self._record[layer] = {"hidden": hidden.detach()}
            if Lk <= top_k:
                return None  # every visible key fits: exactly the dense layer
            iq, iw, _ = indexer_projections(indexer, x, positions)
            implementation = getattr(module.config, "_attn_implementation", "eager")
            mask = kwargs.get("attention_mask")
            visible, mask, hide = _visibility(mask, implementation, B, Lq, Lk, hidden.dtype, hidden.device)
            scores = index_scores(iq, iw, keys, Visible(0, visible.expand(B, Lq, Lk)))  # (B, Lq, Lk)
            idx, valid = select_topk(scores, top_k)  # (B, Lq, k)
            keep = torch.zeros(B, Lq, Lk, dtype=torch.bool, device=hidden.device).scatter_(-1, idx, valid)
            # Invisible keys keep their own mask value (padding rows stay exactly as the model made them).
            kwargs["attention_mask"] = torch.where((keep | ~visible)[:, None], mask, hide)
            if self._record is not None:
                self._record[layer].update(idx=idx, valid=valid)
            return args, kwargs

        return hook

    # -- checkpoints ------------------------------------------------------------------------------

    def save_indexers(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in self.indexers.state_dict().items()},
            str(directory / INDEXER_WEIGHTS),
        )
        config = {
            "format": CHECKPOINT_FORMAT,
            **self.index_config,
            "rope_theta": self.rope_theta,
            "top_k": self.top_k,
        }
        (directory / INDEXER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    def load_indexers(self, directory: str | Path) -> None:
        self.indexers.load_state_dict(load_file(str(Path(directory) / INDEXER_WEIGHTS)))

    def save_pretrained(self, directory: str | Path, tokenizer: Any = None) -> Path:
        """A Hugging Face checkpoint (the dense model, loadable by anything) plus the indexers beside it."""
        directory = Path(directory)
        self.hf.save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        return self.save_indexers(directory)


def read_index_config(path: str | Path) -> dict | None:
    """The indexers' settings saved in a retrofitted checkpoint folder, or None for any other folder."""
    file = Path(path) / INDEXER_CONFIG
    if not file.is_file():
        return None
    try:
        config = json.loads(file.read_text())
    except ValueError:
        raise ValueError(f"{file} is not JSON: re-run `toolgym model retrofit` to write it again.") from None
    missing = [k for k in ("index_heads", "index_dim", "index_rope_dim", "top_k") if k not in config]
    if missing or not (Path(path) / INDEXER_WEIGHTS).is_file():
        raise ValueError(
            f"{path} is an incomplete retrofitted model (missing {', '.join(missing) or INDEXER_WEIGHTS}): "
            "re-run `toolgym model retrofit`."
        )
    return config


def is_sparse_checkpoint(path: str | Path) -> bool:
    """Whether a folder is a retrofitted model (a Hugging Face checkpoint with DSA indexers beside it)."""
    return (Path(path) / INDEXER_CONFIG).is_file()


def load_sparse_model(
    path: str | Path, *, top_k: int | None = None, dtype: str = "float32", attn_implementation: str = "eager"
) -> tuple[nn.Module, Any]:
    """(model, tokenizer) of a retrofitted folder, the model in sparse mode with the saved (or given) top_k.

    The model is the Hugging Face causal LM itself (same forward, cache and generate), so it goes wherever a
    dense one does: `LocalPolicy(model, tokenizer)`. Its `RetrofitDSA` is `model.retrofit_dsa` (not a
    submodule: the model's state dict stays the dense checkpoint's).
    """
    from transformers import AutoTokenizer

    if read_index_config(path) is None:
        raise FileNotFoundError(
            f"{path} has no {INDEXER_CONFIG}: pass a folder written by `toolgym model retrofit`."
        )
    dsa = RetrofitDSA.from_pretrained(path, attn_implementation=attn_implementation)
    if dtype != "float32":
        dsa.hf.to(getattr(torch, dtype))
    model = dsa.enable_sparse(top_k)
    object.__setattr__(model, "retrofit_dsa", dsa)  # plain attribute: a submodule would loop the module tree
    return model, AutoTokenizer.from_pretrained(str(path))
