"""The in-process policy: a causal LM in this process, behind the same `/v1/completions` contract as a server.

`LocalEngine` generates for every episode in flight at once (continuous batching: a request joins the running
batch at the next decoding step, a finished one leaves it; a KV cache row per sequence, left-padded) in one worker
thread, so the event loop keeps driving tools and sandboxes meanwhile. `LocalTransport` answers
`CompletionsClient`'s HTTP requests from that engine without a socket, so `LocalPolicy` is `LLMPolicy` over a
`CompletionsClient`: the same encodings, stop strings, thinking rule, budgets, parsing and usage as a served model.
Each request samples with its own `torch.Generator` seeded per (episode, turn): what batch it shares never changes
its tokens. A finished sequence's KV cache stays in a `PrefixCache` (LRU, bounded in tokens), so the next turn of
an episode, whose prompt begins with the previous prompt and completion, prefills only what is new, and episodes
that start with one system prompt prefill it once (vLLM's prefix caching, in process). Keys and values grow in
place (no per-token copy of the cache). Models: any Hugging Face causal LM (Llama, Qwen2, ...) and toolgym's own
`DSALM` (no prefix reuse).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .clients import CompletionsClient, RetryPolicy
from .policies import LLMPolicy, Turn
from .thinking import ThinkingContext, token_counter

LOCAL_URL = "http://local.toolgym"
"""The base URL the local client 'calls': no socket is opened, `LocalTransport` answers in-process."""


def request_seed(episode_seed: int, turn: int) -> int:
    """The sampling seed of one model turn: fixed by the episode's seed and the turn's index, nothing else."""
    digest = hashlib.sha256(f"{episode_seed}:{turn}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # below 2**63: any torch.Generator takes it


class ContextTooLong(ValueError):
    """The prompt does not fit the model's context window."""


@dataclass
class _Request:
    ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stops: tuple[str, ...]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    out: list[int] = field(default_factory=list)
    generator: Any = None
    reused: int = 0
    """Prompt tokens whose keys and values came from the prefix cache."""


@dataclass
class EngineStats:
    """What the engine did, for benchmarks: tokens, decoding steps, time busy, how full its batches were."""

    requests: int = 0
    prompt_tokens: int = 0
    """Prompt tokens of every request: computed plus reused."""
    prompt_tokens_computed: int = 0
    """Prompt tokens run through the model at prefill (padding excluded)."""
    prompt_tokens_reused: int = 0
    """Prompt tokens whose keys and values came from the prefix cache instead."""
    prefix_hits: int = 0
    """Requests that reused a cached prefix."""
    completion_tokens: int = 0
    steps: int = 0
    """Decoding steps (one token for every row of the batch)."""
    row_steps: int = 0
    """Rows summed over steps: row_steps / steps is the mean batch size."""
    prefills: int = 0
    busy_s: float = 0.0

    @property
    def mean_batch(self) -> float:
        return self.row_steps / self.steps if self.steps else 0.0


# ---------------------------------------------------------------------------------------------
# The prefix cache: finished sequences' keys and values, for the requests that begin with the same tokens.


@dataclass
class _Prefix:
    ids: Any
    """The token ids the keys and values cover (a 1-D LongTensor)."""
    kv: list[tuple[Any, Any]]
    """Per layer (keys, values), each (1, kv heads, len(ids), head dim)."""


class PrefixCache:
    """Keys and values of finished sequences, least recently used first out, at most `max_tokens` tokens in all.

    An agent's next turn re-renders the whole conversation: its prompt begins with the previous prompt and most
    of the completion. `find` returns the entry sharing the longest token prefix with a new prompt; an entry
    that another one extends is dropped, so an episode holds one entry, its latest.
    """

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max(0, int(max_tokens))
        self.tokens = 0
        self._entries: dict[int, _Prefix] = {}  # insertion order = recency: the first is evicted first
        self._ids = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _common(a: Any, b: Any) -> int:
        n = min(len(a), len(b))
        differ = (a[:n] != b[:n]).nonzero()
        return int(differ[0]) if len(differ) else n

    def find(self, ids: Any) -> tuple[_Prefix | None, int]:
        """(entry, length of the longest prefix `ids` shares with it), or (None, 0); the entry becomes recent."""
        best, best_key, length = None, None, 0
        for key, entry in self._entries.items():
            n = self._common(entry.ids, ids)
            if n > length:
                best, best_key, length = entry, key, n
        if best_key is not None:
            self._entries[best_key] = self._entries.pop(best_key)
        return best, length

    def add(self, ids: Any, kv: list[tuple[Any, Any]]) -> None:
        """Keep `kv` for `ids`, dropping entries `ids` extends, then the least recently used past the bound."""
        if not 0 < len(ids) <= self.max_tokens:
            return
        for key, entry in list(self._entries.items()):
            n = self._common(entry.ids, ids)
            if n == len(ids):  # an entry already covers these ids and more: it becomes recent, nothing new
                self._entries[key] = self._entries.pop(key)
                return
            if n == len(entry.ids):
                del self._entries[key]
                self.tokens -= n
        self._entries[next(self._ids)] = _Prefix(ids, kv)
        self.tokens += len(ids)
        while self.tokens > self.max_tokens:
            oldest = next(iter(self._entries))
            self.tokens -= len(self._entries.pop(oldest).ids)

    def clear(self) -> None:
        self._entries.clear()
        self.tokens = 0


# ---------------------------------------------------------------------------------------------
# Model runners: prefill a group of prompts, decode one token per row, drop rows, merge two batches.


@functools.cache
def _growing_layer() -> type:
    """`DynamicLayer` with room to grow: a decoding step writes its column in place.

    transformers' `DynamicLayer` concatenates every step, which copies the whole cache of every layer once per
    token: at 8 rows of 1,000 tokens that copy costs more than the step's attention. Here the keys and values
    live in a buffer a quarter longer than needed; `keys` and `values` are views of its filled part. Assigning
    them (merging, selecting rows, cutting padding) installs a full buffer that the next step regrows.
    """
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):
        def __init__(self, **kwargs: Any) -> None:
            self._k = self._v = None
            self._nk = self._nv = 0  # filled columns: equal but set apart (merging assigns keys, then values)
            super().__init__(**kwargs)

        @property
        def keys(self) -> Any:
            return None if self._k is None else self._k[:, :, : self._nk]

        @keys.setter
        def keys(self, value: Any) -> None:
            self._k, self._nk = value, 0 if value is None else value.shape[-2]

        @property
        def values(self) -> Any:
            return None if self._v is None else self._v[:, :, : self._nv]

        @values.setter
        def values(self, value: Any) -> None:
            self._v, self._nv = value, 0 if value is None else value.shape[-2]

        def lazy_initialization(self, key_states: Any, value_states: Any) -> None:
            self.device = key_states.device
            self.keys = self.values = None
            self.is_initialized = True

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n, new = self._nk, key_states.shape[-2]
            if self._k is None or n + new > min(self._k.shape[-2], self._v.shape[-2]):
                # A fresh buffer (never one handed in: a cached prefix's tensors are read, not written).
                room = n + new + max(64, (n + new) // 4)
                shape = (key_states.shape[0], key_states.shape[1], room)
                k = key_states.new_empty(*shape, key_states.shape[3])
                v = value_states.new_empty(*shape, value_states.shape[3])
                if n:
                    k[:, :, :n], v[:, :, :n] = self.keys, self.values
                self._k, self._v = k, v
            self._k[:, :, n : n + new] = key_states
            self._v[:, :, n : n + new] = value_states
            self._nk = self._nv = n + new
            return self.keys, self.values

    return GrowingLayer


class _HFRunner:
    """A Hugging Face causal LM with a `DynamicCache`; rows are left-padded and carry their own positions."""

    merges = True

    def __init__(self, model: Any) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        config = model.config
        self.window = int(getattr(config, "max_position_embeddings", 0) or 0) or None
        ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids = ids if isinstance(ids, list) else [ids] if ids is not None else []
        cfg_eos = getattr(config, "eos_token_id", None)
        ids += cfg_eos if isinstance(cfg_eos, list) else [cfg_eos] if cfg_eos is not None else []
        self.eos_ids = {int(i) for i in ids}
        from toolgym.model.finetune import cache_argument

        self.cache_arg = cache_argument(model)
        self._plain: bool | None = None  # whether its cache layers are plain K/V (known at the first cache)

    def _kv(self, out: Any) -> Any:
        return getattr(out, self.cache_arg, None) if self.cache_arg == "cache" else out.past_key_values

    def prefill(
        self, prompts: list[list[int]], room: int, reuse: Sequence[tuple[_Prefix, int] | None] = ()
    ) -> tuple[dict, Any]:
        """Prefill a group of prompts, left-padded; row i takes its first n keys and values from `reuse[i]`
        = (cached prefix, n) and runs only the rest, at positions n, n+1, ... on top of them."""
        import torch

        taken = [item[1] if item else 0 for item in (list(reuse) or [None] * len(prompts))]
        width = max(len(p) - n for p, n in zip(prompts, taken, strict=True))
        past = max(taken)
        ids = torch.zeros(len(prompts), width, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(prompts), past + width, dtype=torch.long, device=self.device)
        for i, (p, n) in enumerate(zip(prompts, taken, strict=True)):
            ids[i, width - (len(p) - n) :] = torch.tensor(p[n:], dtype=torch.long)
            mask[i, past - n : past] = 1
            mask[i, past + width - (len(p) - n) :] = 1
        positions = ((mask.cumsum(-1) - 1).clamp(min=0))[:, past:]
        cache = self._new_cache()
        if past:
            self._past(cache, reuse, taken, past)
        extra = {self.cache_arg: cache} if cache is not None else {}
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **extra,
        )
        state = {"cache": self._kv(out), "mask": mask, "next": mask.sum(-1)}
        return state, out.logits[:, -1].float()

    def _new_cache(self) -> Any:
        """An empty `DynamicCache` of growing layers, or None where this model's layers are not plain K/V."""
        from transformers.cache_utils import DynamicCache, DynamicLayer

        if self._plain is False:
            return None
        try:
            cache = DynamicCache(config=self.model.config)
        except Exception:  # noqa: BLE001 - a config this transformers cannot read: the model makes its own
            self._plain = False
            return None
        self._plain = bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)
        if not self._plain:
            return None
        cache.layers = [_growing_layer()() for _ in cache.layers]
        return cache

    def _past(
        self, cache: Any, reuse: Sequence[tuple[_Prefix, int] | None], taken: list[int], past: int
    ) -> None:
        """Fill `cache` with `past` columns: row i's last taken[i] hold its prefix's keys and values, the rest
        padding."""
        donors = [(i, item[0], n) for i, (item, n) in enumerate(zip(reuse, taken, strict=True)) if n]
        # A prefix may hold more layers than the model's own (a DSA-retrofitted model keeps its indexer keys in
        # layers after them): every one is seeded alike, or the model's layers and those would fall out of step.
        while len(cache.layers) < len(donors[0][1].kv):
            cache.layers.append(_growing_layer()())
        for layer_index, layer in enumerate(cache.layers):
            if len(reuse) == 1:  # one row: a view of its prefix, which the layer copies into its own buffer
                _, prefix, n = donors[0]
                keys, values = (t[:, :, :n] for t in prefix.kv[layer_index])
            else:
                k0, v0 = donors[0][1].kv[layer_index]
                keys = k0.new_zeros(len(reuse), k0.shape[1], past, k0.shape[3])
                values = v0.new_zeros(len(reuse), v0.shape[1], past, v0.shape[3])
                for i, prefix, n in donors:
                    k, v = prefix.kv[layer_index]
                    keys[i, :, past - n :], values[i, :, past - n :] = k[0, :, :n], v[0, :, :n]
            layer.update(keys, values)

    def prefix_ready(self) -> bool:
        """Whether this model's cache is plain growing K/V layers, which a cached prefix can seed."""
        return self._new_cache() is not None

    def row_kv(self, state: dict, row: int, length: int) -> list[tuple[Any, Any]] | None:
        """Row `row`'s keys and values (its last `length` columns, copied out of the batch), or None."""
        layers = self._layers(state)
        if layers is None or int(state["next"][row]) != length or int(state["mask"][row].sum()) != length:
            return None
        return [
            (layer.keys[row : row + 1, :, -length:].clone(), layer.values[row : row + 1, :, -length:].clone())
            for layer in layers
        ]

    def step(self, state: dict, tokens: Any) -> Any:
        import torch

        mask = torch.cat([state["mask"], state["mask"].new_ones(len(tokens), 1)], dim=1)
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=mask,
            position_ids=state["next"][:, None],
            use_cache=True,
            **{self.cache_arg: state["cache"]},
        )
        state["mask"], state["cache"] = mask, self._kv(out)
        state["next"] = state["next"] + 1
        return out.logits[:, -1].float()

    @staticmethod
    def _layers(state: dict) -> list | None:
        """The cache's layers when each is a plain growing K/V pair (what merging and trimming rewrite)."""
        from transformers.cache_utils import DynamicLayer

        plain = (DynamicLayer, _growing_layer())
        layers = getattr(state["cache"], "layers", None)
        if layers and all(type(layer) in plain and layer.keys is not None for layer in layers):
            return layers
        return None

    def select(self, state: dict, rows: Any) -> None:
        state["cache"].batch_select_indices(rows)
        state["mask"], state["next"] = state["mask"][rows], state["next"][rows]
        # Columns that are padding in every remaining row cost attention at every step: cut them.
        used = state["mask"].any(0).nonzero()
        cut = int(used[0]) if len(used) else 0
        layers = self._layers(state)
        if cut and layers is not None:
            for layer in layers:
                layer.keys, layer.values = layer.keys[:, :, cut:], layer.values[:, :, cut:]
            state["mask"] = state["mask"][:, cut:]

    def can_merge(self, state: dict | None) -> bool:
        return state is not None and self._layers(state) is not None

    def merge(self, a: dict, b: dict) -> dict:
        """One batch of `a`'s rows then `b`'s, left-padded to the longer."""
        import torch
        from torch.nn.functional import pad

        la, lb = self._layers(a), self._layers(b)
        if la is None or lb is None:
            raise ValueError("this model's cache layers cannot be merged")
        width = max(a["mask"].shape[1], b["mask"].shape[1])

        def widen(t: Any, dim_from_end: int) -> Any:
            extra = width - t.shape[-dim_from_end]
            return pad(t, (0, 0) * (dim_from_end - 1) + (extra, 0)) if extra else t

        for x, y in zip(la, lb, strict=True):
            x.keys = torch.cat([widen(x.keys, 2), widen(y.keys, 2)])
            x.values = torch.cat([widen(x.values, 2), widen(y.values, 2)])
        a["mask"] = torch.cat([widen(a["mask"], 1), widen(b["mask"], 1)])
        a["next"] = torch.cat([a["next"], b["next"]])
        return a


class _DSARunner:
    """toolgym's `DSALM` (model/lm.py) with its preallocated `Cache`: batches start together (no merge)."""

    merges = False

    def __init__(self, model: Any) -> None:
        self.model = model.eval()
        self.device = model.embed.weight.device
        self.window = model.cfg.max_seq_len
        self.eos_ids: set[int] = set()

    def prefill(self, prompts: list[list[int]], room: int, reuse: Sequence[Any] = ()) -> tuple[dict, Any]:
        import torch
        from toolgym.model.lm import Cache

        if any(reuse):
            raise ValueError("DSALM prefills whole prompts: its cache takes no prefix")

        width = max(len(p) for p in prompts)
        ids = torch.zeros(len(prompts), width, dtype=torch.long, device=self.device)
        valid = torch.zeros(len(prompts), width, dtype=torch.bool, device=self.device)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            valid[i, width - len(p) :] = True
        cache = Cache(self.model.cfg, len(prompts), width + room, self.model.embed.weight.dtype, self.device)
        logits = self.model(ids, cache=cache, key_valid=valid).logits[:, -1]
        return {"cache": cache}, logits.float()

    def step(self, state: dict, tokens: Any) -> Any:
        return self.model(tokens[:, None], cache=state["cache"]).logits[:, -1].float()

    def select(self, state: dict, rows: Any) -> None:
        cache = state["cache"]
        for layer in cache.layers:
            layer.k, layer.v, layer.ik_t = layer.k[rows], layer.v[rows], layer.ik_t[rows]
        cache.key_valid = cache.key_valid[rows]

    def prefix_ready(self) -> bool:
        return False  # its indexer keys live beside K/V in a preallocated Cache: whole prompts only

    def row_kv(self, state: dict, row: int, length: int) -> None:
        return None

    def can_merge(self, state: dict | None) -> bool:
        return False  # its Cache is preallocated per batch: a batch runs to its end, then the next starts

    def merge(self, a: dict, b: dict) -> dict:
        raise ValueError("DSALM batches cannot be merged")


# ---------------------------------------------------------------------------------------------
# The engine.


DEFAULT_PREFIX_CACHE_TOKENS = 32768
"""Tokens of finished sequences kept for prefix reuse: a few turns of every episode in flight at --in-flight 8."""

SHARED_PREFIX = 64
"""Tokens a newcomer must share with another (beyond the cache) to wait a round and reuse that one's prompt."""

PREFILL_SLACK = 0.25
"""Prompts prefill together while padding stays under this share of their tokens (plus 32): on a CPU a batched
prefill saves little, so one long prompt should not make short continuations pay its width."""


class LocalEngine:
    """Batched generation for concurrent requests on one model, in a worker thread.

    `model` is a Hugging Face causal LM (with its tokenizer) or a `DSALM` (with toolgym's `Tokenizer`).
    `max_batch` caps the rows decoded together. Requests run until a stop string, an end-of-sequence token or
    `max_tokens`; a cancelled request leaves the batch at the next step. `prefix_cache_tokens` bounds the
    finished sequences' keys and values kept for prefix reuse (0: none; Hugging Face models only; the embedded
    SmolLM2-135M in float32 holds 46,080 bytes a token, so the default is about 1.4 GiB when full). `threads`
    sets torch's intra-op threads for the decoding thread (None: one core fewer than the machine has, at most
    torch's default, leaving one to the event loop and the sandboxes).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch: int = 16,
        name: str | None = None,
        prefix_cache_tokens: int = DEFAULT_PREFIX_CACHE_TOKENS,
        threads: int | None = None,
    ) -> None:
        if tokenizer is None:
            raise ValueError(
                "LocalPolicy needs the model's tokenizer: pass tokenizer=, or load with from_pretrained(path)."
            )
        from toolgym.model.lm import DSALM

        self.tokenizer = tokenizer
        self.max_batch = max(1, int(max_batch))
        if isinstance(model, DSALM):
            self.runner: Any = _DSARunner(model)
            self.runner.eos_ids = {tokenizer.eos_id}
        else:
            self.runner = _HFRunner(model)
            if getattr(tokenizer, "eos_token_id", None) is not None:
                self.runner.eos_ids.add(int(tokenizer.eos_token_id))
        self._dsa = isinstance(model, DSALM)
        self.prefixes = PrefixCache(prefix_cache_tokens if self.runner.prefix_ready() else 0)
        if threads is None:
            import os

            import torch

            # One core stays with the event loop, sandboxes and env servers: on this 2-core machine 1 thread
            # decodes 2.8x faster than 2 (43.6 vs 15.0 tok/s at batch 8), which fight them for both cores.
            threads = max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))
        self.threads = int(threads)
        # The event loop encodes while the worker thread decodes: a fast tokenizer must not be used by both at once.
        self._tokenizer_lock = threading.Lock()
        path = getattr(getattr(model, "config", None), "_name_or_path", "") or ""
        self.name = name or (Path(path).name if path else type(model).__name__)
        self.window: int | None = self.runner.window
        self.stats = EngineStats()
        self.starts: Counter[str] = Counter()
        """Episodes begun per task id by the policies sharing this engine (see LocalPolicy.start)."""
        self.trace: dict[int, tuple[list[int], list[int]]] | None = None
        """When a dict: every finished request's (prompt ids, sampled ids) by its seed, what a trainer needs to
        learn from exactly the tokens drawn (toolgym.agent.training reads it for GRPO)."""
        self._pending: list[_Request] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def _encode(self, text: str) -> list[int]:
        """Prompt ids as a server makes them: the tokenizer's own special tokens added (DSALM: its BOS)."""
        with self._tokenizer_lock:
            if self._dsa:
                return [self.tokenizer.bos_id, *self.tokenizer.encode(text)]
            return list(self.tokenizer(text)["input_ids"])

    def _decode(self, ids: list[int]) -> str:
        """Text with special tokens kept (DSML and Hermes tags may be special tokens)."""
        with self._tokenizer_lock:
            if self._dsa:
                return self.tokenizer.decode(ids)
            return self.tokenizer.decode(ids, skip_special_tokens=False)

    async def generate(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int = 0,
        stop: Sequence[str] = (),
    ) -> dict[str, Any]:
        """Complete `prompt`: {"text", "finish_reason" ("stop" | "length"), "prompt_tokens", "completion_tokens",
        "cached_tokens" (of the prompt's, those taken from the prefix cache)}.

        Raises ContextTooLong when the prompt leaves no room in the context window.
        """
        ids = self._encode(prompt)
        room = max_tokens if self.window is None else min(max_tokens, self.window - len(ids))
        if not ids or room <= 0:
            raise ContextTooLong(
                f"This model's maximum context length is {self.window} tokens; the prompt has {len(ids)}."
            )
        loop = asyncio.get_running_loop()
        request = _Request(
            ids,
            room,
            float(temperature),
            float(top_p),
            int(seed) % 2**63,
            tuple(stop),
            loop,
            loop.create_future(),
        )
        with self._cond:
            if self._closed:
                raise RuntimeError("the local engine was closed; create a new LocalPolicy.")
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="toolgym-local-engine", daemon=True)
                self._thread.start()
            self._pending.append(request)
            self._cond.notify()
        out: list[int] = await request.future
        return self._finish(request, out)

    def _finish(self, request: _Request, out: list[int]) -> dict[str, Any]:
        ended = bool(out) and out[-1] in self.runner.eos_ids
        if self.trace is not None:
            self.trace[request.seed] = (list(request.ids), list(out))
        text = self._decode(out[:-1] if ended else out)
        cut = min((text.index(s) for s in request.stops if s in text), default=None)
        if cut is not None:
            text = text[:cut]
        return {
            "text": text,
            "finish_reason": "stop" if ended or cut is not None else "length",
            "prompt_tokens": len(request.ids),
            "completion_tokens": len(out),
            "cached_tokens": request.reused,
        }

    def close(self) -> None:
        """Stop the worker thread (requests still waiting fail)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    # -- the worker thread -------------------------------------------------------------------

    @staticmethod
    def _resolve(request: _Request, result: Any = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if not request.future.done():
                if error is not None:
                    request.future.set_exception(error)
                else:
                    request.future.set_result(result)

        try:
            request.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # its event loop has ended: nobody waits for it any more
            pass

    def _stopped(self, request: _Request) -> bool:
        out = request.out
        if out[-1] in self.runner.eos_ids or len(out) >= request.max_tokens:
            return True
        if request.stops:
            longest = max(len(s) for s in request.stops)
            tail = self._decode(out[-(2 * longest + 2) :])  # a token decodes to a character or more
            return any(s in tail for s in request.stops)
        return False

    def _plan(
        self, fresh: list[_Request]
    ) -> tuple[list[tuple[list[_Request], list[tuple[_Prefix, int] | None]]], list[_Request]]:
        """(prefill groups, requests deferred to the next round).

        Each request takes its longest cached prefix (one token at least left to run, for its logits). One that
        shares SHARED_PREFIX tokens more with an earlier newcomer than with the cache waits a round: that one's
        prompt is cached once prefilled (episodes of one environment start with the same system prompt and
        tools). The rest go in groups of similar remaining length; in a group of width W a row runs its last W
        tokens and takes the rest from its prefix (recomputing what padding would have cost anyway)."""
        import torch

        found: list[tuple[_Prefix | None, int]] = [(None, 0)] * len(fresh)
        deferred: list[_Request] = []
        if self.prefixes.max_tokens:
            found, kept, ids = [], [], []
            for r in fresh:
                t = torch.tensor(r.ids, dtype=torch.long)
                entry, n = self.prefixes.find(t)
                shared = max((PrefixCache._common(t, other) for other in ids), default=0)
                if min(shared, len(r.ids) - 1) - n >= SHARED_PREFIX:
                    deferred.append(r)
                    continue
                kept.append(r)
                ids.append(t)
                found.append((entry, min(n, len(r.ids) - 1)))
            fresh = kept
        order = sorted(range(len(fresh)), key=lambda i: len(fresh[i].ids) - found[i][1], reverse=True)
        groups: list[list[int]] = []
        for i in order:
            need = len(fresh[i].ids) - found[i][1]
            group = groups[-1] if groups else None
            if group and self.runner.merges:
                # The group's first is its widest: sorted by need, descending.
                width = len(fresh[group[0]].ids) - found[group[0]][1]
                real = sum(len(fresh[j].ids) - found[j][1] for j in group) + need
                if width * (len(group) + 1) > (1 + PREFILL_SLACK) * real + 32:
                    group = None
            if group is None:
                groups.append([i])
            else:
                group.append(i)
        plans = []
        for group in groups:
            width = len(fresh[group[0]].ids) - found[group[0]][1]
            reuse: list[tuple[_Prefix, int] | None] = []
            for j in group:
                entry, _ = found[j]
                taken = max(0, len(fresh[j].ids) - width) if entry is not None else 0
                reuse.append((entry, taken) if entry is not None and taken else None)
                self.stats.prompt_tokens_computed += len(fresh[j].ids) - taken
                self.stats.prompt_tokens_reused += taken
                self.stats.prefix_hits += bool(taken)
                fresh[j].reused = taken
            plans.append(([fresh[j] for j in group], reuse))
        return plans, deferred

    def _keep_prompts(self, group: list[_Request], state: dict) -> None:
        """Freshly prefilled prompts into the prefix cache (those with SHARED_PREFIX new tokens or more), for the
        newcomers that begin the same way; the request's own entry replaces its prompt's when it finishes."""
        if not self.prefixes.max_tokens:
            return
        for row, r in enumerate(group):
            if len(r.ids) - r.reused >= SHARED_PREFIX:
                self._store(r.ids, state, row)

    def _keep(self, request: _Request, state: dict, row: int) -> None:
        """A finished row's keys and values into the prefix cache: its prompt and completion but the last token
        (sampled, never run through the model)."""
        if self.prefixes.max_tokens:
            self._store(request.ids + request.out[:-1], state, row)

    def _store(self, ids: list[int], state: dict, row: int) -> None:
        import torch

        try:
            kv = self.runner.row_kv(state, row, len(ids))
            if kv is not None:
                self.prefixes.add(torch.tensor(ids, dtype=torch.long), kv)
        except RuntimeError:  # out of memory for the copy: the cache is an optimisation, the answer is not
            self.prefixes.clear()

    def _serve(self) -> None:
        import torch
        from toolgym.model.lm import sample_next

        torch.set_num_threads(int(self.threads))
        rows: list[_Request] = []
        state: dict | None = None
        logits = None
        while True:
            with self._cond:
                while not self._pending and not rows and not self._closed:
                    self._cond.wait()
                if self._closed:
                    for request in rows + self._pending:
                        self._resolve(request, error=RuntimeError("the local engine was closed"))
                    return
                self._pending = [r for r in self._pending if not r.future.done()]
                # Newcomers join a running batch only where its cache can take them; else they wait for it.
                room = self.max_batch - len(rows) if not rows or self.runner.can_merge(state) else 0
                fresh, self._pending = self._pending[:room], self._pending[room:]
            began = time.perf_counter()
            try:
                with torch.inference_mode():
                    if fresh:
                        plans, deferred = self._plan(fresh)
                        if deferred:
                            with self._cond:
                                self._pending[:0] = deferred
                            fresh = [r for group, _ in plans for r in group]
                        for group, reuse in plans:
                            new_state, new_logits = self.runner.prefill(
                                [r.ids for r in group], max(r.max_tokens for r in group), reuse
                            )
                            self._keep_prompts(group, new_state)
                            state = self.runner.merge(state, new_state) if rows else new_state
                            logits = torch.cat([logits, new_logits]) if rows else new_logits
                            rows = rows + group
                            self.stats.prefills += 1
                        for r in fresh:
                            r.generator = torch.Generator(device=logits.device).manual_seed(r.seed)
                        self.stats.requests += len(fresh)
                        self.stats.prompt_tokens += sum(len(r.ids) for r in fresh)
                        fresh = []
                    keep = []
                    for i, r in enumerate(rows):
                        token = sample_next(logits[i : i + 1], r.temperature, r.top_p, r.generator)
                        r.out.append(int(token[0]))
                        if r.future.done():
                            continue  # cancelled (its episode timed out): drop it
                        if self._stopped(r):
                            self._keep(r, state, i)
                            self._resolve(r, list(r.out))
                        else:
                            keep.append(i)
                    self.stats.steps += 1
                    self.stats.row_steps += len(rows)
                    self.stats.completion_tokens += len(rows)
                    if len(keep) < len(rows):
                        rows = [rows[i] for i in keep]
                        if not rows:
                            state = logits = None
                            continue
                        index = torch.tensor(keep, dtype=torch.long, device=logits.device)
                        self.runner.select(state, index)
                        logits = logits[index]
                    tokens = torch.tensor([r.out[-1] for r in rows], dtype=torch.long, device=logits.device)
                    logits = self.runner.step(state, tokens)
            except Exception as exc:  # noqa: BLE001 - a failed batch fails its requests, not the thread
                for request in rows + fresh:
                    self._resolve(
                        request, error=RuntimeError(f"local generation failed: {type(exc).__name__}: {exc}")
                    )
                rows, state, logits = [], None, None
            finally:
                self.stats.busy_s += time.perf_counter() - began


# ---------------------------------------------------------------------------------------------
# The transport: CompletionsClient's HTTP requests, answered by the engine.


class LocalTransport(httpx.AsyncBaseTransport):
    """`POST /v1/completions` answered in-process by a `LocalEngine`, with vLLM's request and answer shapes."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        self._ids = itertools.count()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/completions"):
            return httpx.Response(404, json={"error": {"message": f"no route {request.url.path}"}})
        body = json.loads(await request.aread())
        stop = body.get("stop") or ()
        try:
            done = await self.engine.generate(
                body.get("prompt") or "",
                max_tokens=int(body.get("max_tokens") or 256),
                temperature=float(body.get("temperature", 1.0)),
                top_p=float(body.get("top_p", 1.0)),
                seed=int(body["seed"]) if body.get("seed") is not None else next(self._ids),
                stop=(stop,) if isinstance(stop, str) else tuple(stop),
            )
        except ContextTooLong as exc:
            return httpx.Response(
                400, json={"error": {"message": str(exc), "code": "context_length_exceeded"}}
            )
        usage = {"prompt_tokens": done["prompt_tokens"], "completion_tokens": done["completion_tokens"]}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        usage["prompt_tokens_details"] = {
            "cached_tokens": done["cached_tokens"]
        }  # as vLLM reports prefix hits
        choice = {"index": 0, "text": done["text"], "finish_reason": done["finish_reason"]}
        return httpx.Response(200, json={"object": "text_completion", "choices": [choice], "usage": usage})


# ---------------------------------------------------------------------------------------------
# The policy.


def load_model(path: str | Path, *, dtype: str = "float32") -> tuple[Any, Any]:
    """(model, tokenizer) from a Hugging Face checkpoint folder or a toolgym DSALM checkpoint folder."""
    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"{folder} holds no model (no config.json): pass a Hugging Face checkpoint folder, or --model default."
        )
    from toolgym.model.retrofit import is_sparse_checkpoint, load_sparse_model

    if is_sparse_checkpoint(folder):  # `toolgym model retrofit` output: loads in sparse mode
        return load_sparse_model(folder, dtype=dtype)
    if "model_type" not in json.loads(config.read_text()):
        from toolgym.model.train import load_checkpoint

        model, tokenizer = load_checkpoint(folder)
        if tokenizer is None:
            raise FileNotFoundError(
                f"{folder} has no tokenizer.json: save the checkpoint with its tokenizer."
            )
        return model, tokenizer
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    return model.eval(), tokenizer


def resolve_model_path(path_or_default: str) -> Path:
    """A model folder: the path itself, or for "default" the embedded default model (converted on first use)."""
    if path_or_default != "default":
        return Path(path_or_default)
    try:
        from toolgym.model.default import resolve_model
    except ImportError:
        raise ValueError(
            "the embedded default model is not available in this install: pass --model PATH to a checkpoint."
        ) from None
    return Path(resolve_model(path_or_default))


class LocalPolicy(LLMPolicy):
    """A model run in this process: `LLMPolicy` over a `CompletionsClient` whose requests a `LocalEngine` answers.

    `model` is a Hugging Face causal LM or a `DSALM` (with its `tokenizer`), or a `LocalEngine` to share.
    `encoding` is a text encoding (hermes, deepseek_v32). `seed` fixes the sampling: each turn samples with
    `request_seed(episode seed, turn)`, whatever else the engine runs at the time (the agent loop passes each
    episode's seed to `start`). `max_batch`, `prefix_cache_tokens` and `threads` go to the `LocalEngine`. Untrusted: its tool calls run
    in sandboxes like any model's. Use `fork()` for one policy per rollout worker over the same engine.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        encoding: str = "hermes",
        thinking: bool = False,
        context: ThinkingContext | None = None,
        seed: int = 0,
        max_batch: int = 16,
        prefix_cache_tokens: int = DEFAULT_PREFIX_CACHE_TOKENS,
        threads: int | None = None,
        name: str | None = None,
        client: CompletionsClient | None = None,
        **sampling: Any,
    ) -> None:
        self.engine = (
            model
            if isinstance(model, LocalEngine)
            else LocalEngine(
                model,
                tokenizer,
                max_batch=max_batch,
                prefix_cache_tokens=prefix_cache_tokens,
                threads=threads,
            )
        )
        if client is None:
            client = CompletionsClient(
                LOCAL_URL,
                self.engine.name,
                encoding=encoding,
                transport=LocalTransport(self.engine),
                timeout_s=None,  # a queue behind a busy CPU is not a hung server
                retry=RetryPolicy(max_retries=0),  # the same request fails the same way again
                max_concurrency=1 << 16,  # the engine's max_batch is the limit
            )
        if context is None:
            context = ThinkingContext(
                window_tokens=self.engine.window, count_tokens=token_counter(self.engine.tokenizer)
            )
        super().__init__(client, thinking=thinking, context=context, name=name or f"local:{self.engine.name}")
        self.sampling = {"max_tokens": 1024, **sampling}
        self.seed = seed
        self._episode_seed = seed
        self._turn = 0

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: str = "float32", **kwargs: Any) -> LocalPolicy:
        """A policy over the checkpoint at `path` (Hugging Face or DSALM folder; "default": the embedded model)."""
        model, tokenizer = load_model(resolve_model_path(str(path)), dtype=dtype)
        return cls(model, tokenizer, **kwargs)

    def fork(self) -> LocalPolicy:
        """A new policy (its own episode state) over the same engine, client and settings."""
        return LocalPolicy(
            self.engine,
            client=self.client,
            thinking=self.thinking,
            context=ThinkingContext(
                rule=self.context.rule,
                window_tokens=self.context.window_tokens,
                budget_fraction=self.context.budget_fraction,
                overflow=self.context.overflow,
                count_tokens=self.context.count_tokens,
                render_text=self.context.render_text,
            ),
            seed=self.seed,
            name=self.name,
            **self.sampling,
        )

    def start(self, task: Any, seed: int | None = None) -> None:
        """A new episode. `seed` is the episode's seed; without it, it comes from (policy seed, task id, how many
        episodes of that task the engine's policies began before), so repeated samples of a task differ."""
        super().start(task)
        if seed is None:
            task_id = str(getattr(task, "id", ""))
            seed = request_seed(self.seed, self.engine.starts[task_id]) ^ int.from_bytes(
                hashlib.sha256(task_id.encode()).digest()[:7], "big"
            )
            self.engine.starts[task_id] += 1
        self._episode_seed = seed
        self._turn = 0

    async def act(self, messages: list[dict], tools: list[dict]) -> Turn:
        seed = request_seed(self._episode_seed, self._turn)
        self._turn += 1
        sampling = self.sampling
        self.sampling = {**sampling, "seed": seed}
        try:
            return await super().act(messages, tools)
        finally:
            self.sampling = sampling

    def close(self) -> None:
        """Stop the engine's worker thread."""
        self.engine.close()
