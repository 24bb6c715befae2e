"""Fine-tuning a causal LM on token data: the SFT loss, GRPO as DeepSeek-V3.2 modified it, and their steps.

Everything here works on token ids and per-token masks, so it knows nothing of messages or environments
(toolgym.agent.training turns trajectories into `Sequence`s). A `Sequence` is one text the model reads with
the token positions it is trained on (its own output: assistant spans in SFT, sampled tokens in GRPO).

GRPO (REFERENCE.md, "RL: GRPO as modified in the report"):
- advantages R_i - mean(R) over a task's group, no division by the standard deviation;
- the KL to the reference policy by the unbiased k3 estimator weighted by pi_theta / pi_old:
  (pi_theta / pi_old) * (pi_ref / pi_theta - log(pi_ref / pi_theta) - 1), per token;
- off-policy sequence masking: a sample whose advantage is negative and whose mean log(pi_old / pi_theta)
  over its tokens exceeds `offpolicy_delta` is left out of the policy term;
- the clipped ratio objective, each sample's tokens averaged (1/|o_i|), then the mean over samples.
Log-probabilities are taken at the sampling temperature, so pi_theta is the distribution the sampler drew
from (the engine samples without top-p/top-k truncation here, so there is no truncation mask to keep).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

IGNORE = -100


@dataclass
class Sequence:
    """Token ids and the positions trained on (`mask[i]`: token i is the model's own output)."""

    ids: list[int]
    mask: list[bool]
    advantage: float = 0.0
    old_logprobs: list[float] | None = None
    """pi_old of each masked token, in order (GRPO; None: taken before the first update)."""
    group: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.mask):
            raise ValueError(f"a sequence has {len(self.ids)} ids but {len(self.mask)} mask entries")

    @property
    def trained(self) -> int:
        return sum(self.mask)


def labels_of(seq: Sequence) -> list[int]:
    """The labels a Hugging Face trainer takes: the id where trained, -100 elsewhere."""
    return [t if m else IGNORE for t, m in zip(seq.ids, seq.mask, strict=True)]


def sft_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled positions (labels -100 elsewhere); logits [B, T, V]."""
    shifted = logits[:, :-1].float()
    target = labels[:, 1:]
    return F.cross_entropy(shifted.reshape(-1, shifted.shape[-1]), target.reshape(-1), ignore_index=IGNORE)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(ids[t+1] | ids[:t+1]) for every t, at `temperature`: [B, T-1]."""
    logp = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
    return logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def group_advantages(rewards: Seq[float], groups: Seq[str]) -> list[float]:
    """R_i - mean(R) over the samples of each group (no std division, as DeepSeek-V3.2)."""
    sums: dict[str, list[float]] = {}
    for r, g in zip(rewards, groups, strict=True):
        sums.setdefault(g, []).append(float(r))
    means = {g: sum(v) / len(v) for g, v in sums.items()}
    return [float(r) - means[g] for r, g in zip(rewards, groups, strict=True)]


@dataclass
class GRPOConfig:
    clip: float = 0.2
    """The ratio pi_theta / pi_old is clipped to [1 - clip, 1 + clip] in the surrogate."""
    kl_coef: float = 0.02
    offpolicy_delta: float = 0.5
    """Mean log(pi_old / pi_theta) over a negative-advantage sample above which it is masked."""
    temperature: float = 1.0


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cfg: GRPOConfig,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss (to minimise) for samples [B, T]: per-token log-probs under pi_theta, pi_old and pi_ref,
    advantages [B], and the trained-token mask [B, T]. Returns (loss, stats)."""
    mask = mask.float()
    count = mask.sum(-1).clamp(min=1.0)
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    adv = advantages.unsqueeze(-1)
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - cfg.clip, 1 + cfg.clip) * adv)
    # Unbiased KL: k3 of pi_ref against pi_theta, importance-weighted by pi_theta / pi_old.
    d = ref_logp - logp
    kl = ratio.detach() * (torch.exp(d) - d - 1)
    # Off-policy sequence masking, on the sample's mean log(pi_old / pi_theta) (no gradient through the test).
    drift = ((-log_ratio).detach() * mask).sum(-1) / count
    keep = ~((advantages < 0) & (drift > cfg.offpolicy_delta))
    per_token = -surrogate * keep.float().unsqueeze(-1) + cfg.kl_coef * kl
    per_sample = (per_token * mask).sum(-1) / count
    loss = per_sample.mean()
    with torch.no_grad():
        stats = {
            "loss": float(loss),
            "kl": float(((kl * mask).sum(-1) / count).mean()),
            "masked_samples": int((~keep).sum()),
            "clipped_fraction": float(
                (((ratio - 1).abs() > cfg.clip).float() * mask).sum() / mask.sum().clamp(min=1)
            ),
        }
    return loss, stats


# ---------------------------------------------------------------------------------------------
# Batching and steps.


def batches(seqs: Seq[Sequence], max_tokens: int) -> list[list[int]]:
    """Indices grouped into batches of at most `max_tokens` padded tokens (longest first keeps padding low)."""
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i].ids))
    out: list[list[int]] = []
    for i in order:
        # the first of a batch is its longest: it sets the padded width
        if out and (len(out[-1]) + 1) * len(seqs[out[-1][0]].ids) <= max_tokens:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _pad(seqs: Seq[Sequence], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention mask, trained mask) right-padded to the longest sequence."""
    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    trained = torch.zeros((len(seqs), width), dtype=torch.bool)
    for row, s in enumerate(seqs):
        ids[row, : len(s.ids)] = torch.tensor(s.ids)
        attn[row, : len(s.ids)] = 1
        trained[row, : len(s.ids)] = torch.tensor(s.mask)
    return ids, attn, trained


def _logits(model, ids: torch.Tensor, attn: torch.Tensor, precision: str | None = None) -> torch.Tensor:
    """The model's logits; `precision="bf16"` runs the forward under bfloat16 autocast (weights, gradients and
    the optimizer stay float32): 1.5x the tokens/s of float32 on this CPU (AVX512-BF16), more on a GPU."""
    device = next(model.parameters()).device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        return model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits.float()


def cache_argument(model) -> str:
    """The name of a Hugging Face model's KV cache, as its forward's argument and in its output: transformers
    5.x says `cache`, 4.x said `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _shared_prompt(trained: torch.Tensor) -> int:
    """How many leading positions of a batch no loss term reads through its own logit: up to the token before
    the earliest trained one of any row (that token's logit predicts it). 0 when a row trains its first token."""
    rows = trained.any(dim=1)
    if not bool(rows.all()):
        return 0
    return max(0, int(trained.float().argmax(dim=1).min()) - 1)


def _logits_from(
    model, ids: torch.Tensor, attn: torch.Tensor, start: int, precision: str | None = None
) -> torch.Tensor:
    """The logits of positions start.. ([B, T - start, V]), the first `start` positions run without gradient.

    Their keys and values enter the rest as constants (a KV cache), so backward and the saved activations cover
    only the tail. In SFT the prompt before the first trained token (system prompt, tool schemas, task) is about
    half of an oracle trajectory: its positions then cost a forward pass, not forward and backward. What is
    dropped is the gradient that would reach the loss through the prompt's own representations; the tail's
    attention to the prompt is still trained.
    """
    if start <= 0:
        return _logits(model, ids, attn, precision)
    device = next(model.parameters()).device
    ids, attn = ids.to(device), attn.to(device)
    name = cache_argument(model)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        with torch.no_grad():
            head = model(input_ids=ids[:, :start], attention_mask=attn[:, :start], use_cache=True)
        out = model(
            input_ids=ids[:, start:], attention_mask=attn, use_cache=False, **{name: getattr(head, name)}
        )
    return out.logits.float()


@dataclass
class TrainStats:
    steps: int = 0
    tokens: int = 0
    """Every token read (prompt and trained), the usual unit of training throughput."""
    trained_tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        return {
            "steps": self.steps,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "first_loss": self.losses[0] if self.losses else None,
            "last_loss": self.losses[-1] if self.losses else None,
        }


Progress = Callable[[int, int, dict], None]
"""progress(done, total, stats of the last step)."""


def _optimizer(model, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay
    )


def _lr(step: int, total: int, warmup: int) -> float:
    """Linear warm-up then cosine decay to 10%, as a multiplier."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))


def _plan(seqs: Seq[Sequence], epochs: int, batch_tokens: int, seed: int) -> list[list[int]]:
    """The batches of every epoch, each epoch's in a seeded order."""
    gen = torch.Generator().manual_seed(seed)
    plan: list[list[int]] = []
    for _ in range(epochs):
        groups = batches(seqs, batch_tokens)
        plan += [groups[i] for i in torch.randperm(len(groups), generator=gen).tolist()]
    return plan


def _step(
    model, opt, loss: torch.Tensor, grad_clip: float, stats: TrainStats, group: list, t0: float
) -> None:
    """One optimizer step on `loss`, and its counts."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    stats.steps += 1
    stats.tokens += sum(len(s.ids) for s in group)
    stats.trained_tokens += sum(s.trained for s in group)
    stats.seconds += time.perf_counter() - t0
    stats.losses.append(round(loss.item(), 6))


def sft_train(
    model,
    seqs: Seq[Sequence],
    *,
    epochs: int = 1,
    lr: float = 2e-5,
    batch_tokens: int = 4096,
    pad_id: int = 0,
    grad_clip: float = 1.0,
    seed: int = 0,
    precision: str | None = "bf16",
    detach_prompt: bool = False,
    progress: Progress | None = None,
) -> TrainStats:
    """Supervised fine-tuning on the trained positions of `seqs`; one optimizer step per batch.

    `detach_prompt`: run each batch's shared prompt (up to its earliest trained token) without gradient, as a
    KV cache the rest attends to (`_logits_from`); Hugging Face models only (they take `past_key_values`)."""
    if not seqs or not any(s.trained for s in seqs):
        raise ValueError("no tokens to train on: every sequence's mask is empty")
    plan = _plan(seqs, epochs, batch_tokens, seed)
    opt = _optimizer(model, lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr(s, len(plan), max(1, len(plan) // 10)))
    stats = TrainStats()
    model.train()
    for n, idx in enumerate(plan):
        t0 = time.perf_counter()
        group = [seqs[i] for i in idx]
        ids, attn, trained = _pad(group, pad_id)
        labels = torch.where(trained, ids, torch.full_like(ids, IGNORE))
        start = _shared_prompt(trained) if detach_prompt else 0
        logits = _logits_from(model, ids, attn, start, precision)
        loss = sft_loss(logits, labels[:, start:].to(logits.device))
        _step(model, opt, loss, grad_clip, stats, group, t0)
        sched.step()
        if progress:
            progress(n + 1, len(plan), {"loss": loss.item(), "tokens_per_s": stats.tokens_per_s})
    model.zero_grad(set_to_none=True)  # the last step's gradients would stay allocated beside the model
    model.eval()
    return stats


@torch.no_grad()
def sequence_logprobs(
    model,
    seqs: Seq[Sequence],
    *,
    temperature: float,
    batch_tokens: int,
    pad_id: int,
    precision: str | None = "bf16",
) -> list[list[float]]:
    """Each sequence's log-probs of its trained tokens, in order, under `model` at `temperature`."""
    was_training = model.training
    model.eval()
    out: list[list[float]] = [[] for _ in seqs]
    for idx in batches(seqs, batch_tokens):
        group = [seqs[i] for i in idx]
        ids, attn, trained = _pad(group, pad_id)
        logits = _logits(model, ids, attn, precision)
        logp = token_logprobs(logits, ids.to(logits.device), temperature).cpu()
        for row, i in enumerate(idx):
            out[i] = logp[row][trained[row, 1:]].tolist()
    model.train(was_training)
    return out


def grpo_train(
    model,
    ref_model,
    seqs: Seq[Sequence],
    cfg: GRPOConfig,
    *,
    lr: float = 1e-6,
    epochs: int = 1,
    batch_tokens: int = 4096,
    pad_id: int = 0,
    grad_clip: float = 1.0,
    seed: int = 0,
    precision: str | None = "bf16",
    progress: Progress | None = None,
) -> TrainStats:
    """Policy-gradient steps on sampled sequences with their advantages (one optimizer step per batch).

    pi_old is each sequence's `old_logprobs` (else taken here, before the first update); pi_ref from
    `ref_model`, frozen. Sequences with zero advantage still carry the KL term.
    """
    seqs = [s for s in seqs if s.trained]
    if not seqs:
        raise ValueError("no sampled tokens to train on")

    def logprobs(m, of: list[Sequence]) -> list[list[float]]:
        return sequence_logprobs(
            m, of, temperature=cfg.temperature, batch_tokens=batch_tokens, pad_id=pad_id, precision=precision
        )

    missing = [s for s in seqs if s.old_logprobs is None]
    for s, lp in zip(missing, logprobs(model, missing) if missing else [], strict=True):
        s.old_logprobs = lp
    refs = logprobs(ref_model, seqs)
    plan = _plan(seqs, epochs, batch_tokens, seed)
    opt = _optimizer(model, lr)
    stats = TrainStats()
    model.train()
    for n, idx in enumerate(plan):
        t0 = time.perf_counter()
        group = [seqs[i] for i in idx]
        ids, attn, trained = _pad(group, pad_id)
        mask = trained[:, 1:]
        old = torch.zeros(mask.shape)
        ref = torch.zeros(mask.shape)
        for row, i in enumerate(idx):
            old[row][mask[row]] = torch.tensor(seqs[i].old_logprobs, dtype=torch.float32)
            ref[row][mask[row]] = torch.tensor(refs[i], dtype=torch.float32)
        adv = torch.tensor([s.advantage for s in group], dtype=torch.float32)
        logits = _logits(model, ids, attn, precision)
        dev = logits.device
        logp = token_logprobs(logits, ids.to(dev), cfg.temperature)
        loss, step_stats = grpo_loss(logp, old.to(dev), ref.to(dev), adv.to(dev), mask.to(dev), cfg)
        _step(model, opt, loss, grad_clip, stats, group, t0)
        stats.extra.append(step_stats)
        if progress:
            progress(n + 1, len(plan), step_stats)
    model.zero_grad(set_to_none=True)  # the last step's gradients would stay allocated beside the model
    model.eval()
    return stats


def merge_steps(steps: Iterable[tuple[list[int], list[int]]]) -> list[Sequence]:
    """(prompt ids, output ids) of successive model calls as few sequences as their prompts allow.

    A call whose prompt starts with the previous sequence's ids (the earlier prompt, the output, and what
    followed) extends that sequence, its output trained; otherwise it starts a new one. So a tool loop becomes
    one forward pass, and nothing is trained in a context the model did not see token for token.
    """
    out: list[Sequence] = []
    for prompt, output in steps:
        if not output:
            continue
        last = out[-1] if out else None
        if last is not None and len(prompt) >= len(last.ids) and prompt[: len(last.ids)] == last.ids:
            extra = prompt[len(last.ids) :]
            last.ids += extra + list(output)
            last.mask += [False] * len(extra) + [True] * len(output)
        else:
            out.append(Sequence(list(prompt) + list(output), [False] * len(prompt) + [True] * len(output)))
    return out
