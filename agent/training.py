"""The train loop: trajectories and rollouts turned into token sequences for `toolgym.model.finetune`, and the
held-out success measured through the real rollout path (sandboxes, the local engine) before and after.

SFT sequences are built the way the policy reads and writes: for each assistant message, the prompt is the
conversation before it under the thinking rule, rendered in the policy's encoding (the engine's own ids), and
the trained tokens are what the model writes (its body and the stop token). Successive steps of one tool loop
share one sequence when the next prompt extends the last token for token (`merge_steps`); a user message
starts a new one, since the rule then drops earlier reasoning. GRPO trains on the ids the engine sampled,
recorded per request (`LocalEngine.trace`), never on re-tokenized text.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .encodings import get as get_encoding
from .encodings import render
from .evaluate import bootstrap, wilson
from .local import LocalPolicy, load_model, request_seed, resolve_model_path
from .loop import Budgets
from .rollout import load_trajectories, rollout
from .thinking import apply_thinking_rule

Log = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# Token data.


def step_texts(
    messages: list[dict],
    tools: list[dict],
    *,
    encoding: str = "hermes",
    thinking: bool = True,
    rule: str = "deepseek_v32",
) -> list[tuple[str, str]]:
    """(prompt, completion) texts of every assistant message: what the policy read, and what it wrote up to and
    including the encoding's stop string."""
    stops = getattr(get_encoding(encoding), "STOP_STRINGS", ())
    if not stops:
        raise ValueError(f"encoding {encoding!r} has no text form to train on; use hermes or deepseek_v32")
    msgs = [{k: v for k, v in m.items() if v is not None} for m in messages]
    out = []
    for j, msg in enumerate(msgs):
        if msg.get("role") != "assistant":
            continue
        view = apply_thinking_rule(msgs[:j], rule)
        before = render(encoding, view, tools, thinking)
        after = render(encoding, [*view, msg], tools, thinking)
        if not after.startswith(before):
            raise ValueError("the encoding is not prefix-stable at an assistant message")
        written = after[len(before) :]
        cut = min((written.index(s) + len(s) for s in stops if s in written), default=len(written))
        out.append((before, written[:cut]))
    return out


def _hf_tokenizer(tokenizer: Any) -> Any:
    if not callable(tokenizer):
        raise TypeError(
            "training takes a Hugging Face model and tokenizer (toolgym's DSALM trains with `toolgym model train`)"
        )
    return tokenizer


def sft_sequences(
    rows: list[dict],
    tokenizer: Any,
    *,
    encoding: str = "hermes",
    thinking: bool = True,
    rule: str = "deepseek_v32",
    max_tokens: int | None = None,
    min_reward: float = 1.0,
) -> tuple[list[Any], dict[str, Any]]:
    """Token sequences of the successful rows (loss on the assistant's own tokens only) and what was kept."""
    from toolgym.model.finetune import merge_steps

    tok = _hf_tokenizer(tokenizer)
    seqs, info = [], {"rows": 0, "too_long": 0, "not_prefix_stable": 0}
    for r in rows:
        if r.get("status") != "ok" or float(r.get("reward") or 0.0) < min_reward:
            continue
        messages = json.loads(r["messages"]) if isinstance(r["messages"], str) else r["messages"]
        tools = json.loads(r["tools"]) if isinstance(r["tools"], str) else r["tools"]
        try:
            pairs = step_texts(messages, tools, encoding=encoding, thinking=thinking, rule=rule)
        except ValueError:
            info["not_prefix_stable"] += 1
            continue
        steps = [
            (list(tok(p)["input_ids"]), list(tok(c, add_special_tokens=False)["input_ids"])) for p, c in pairs
        ]
        made = merge_steps(steps)
        if max_tokens is not None and any(len(s.ids) > max_tokens for s in made):
            info["too_long"] += 1
            continue
        for s in made:
            s.group, s.meta = r["task_id"], {"category": r["category"], "key": r["key"]}
        seqs += made
        info["rows"] += 1
    info.update(_counts(seqs))
    return seqs, info


def _counts(seqs: list[Any]) -> dict[str, Any]:
    by: dict[str, set] = defaultdict(set)
    for s in seqs:
        by[s.meta["category"]].add(s.meta["key"])
    return {
        "by_category": {c: len(v) for c, v in sorted(by.items())},
        "sequences": len(seqs),
        "tokens": sum(len(s.ids) for s in seqs),
        "trained_tokens": sum(s.trained for s in seqs),
    }


def sampled_sequences(rows: list[dict], trace: dict[int, tuple[list[int], list[int]]]) -> list[Any]:
    """GRPO sequences of rollout rows from the engine's record of each request (prompt ids, sampled ids)."""
    from toolgym.model.finetune import merge_steps

    seqs = []
    for r in rows:
        if r.get("status") == "infra_error":
            continue
        steps = [
            trace[k]
            for t in range(int(r["n_steps"]))
            if (k := request_seed(int(r["seed"]), t) % 2**63) in trace
        ]
        for s in merge_steps(steps):
            s.group = r["task_id"]
            s.meta = {"category": r["category"], "key": r["key"], "reward": float(r["reward"] or 0.0)}
            seqs.append(s)
    return seqs


# ---------------------------------------------------------------------------------------------
# Measuring.


@dataclass
class EvalSettings:
    """How the held-out episodes run: greedy by default, so before and after see the same draws."""

    per_category: int = 24
    max_difficulty: int | None = None
    max_steps: int = 8
    max_tokens: int = 256
    """Tokens per model turn."""
    temperature: float = 0.0
    in_flight: int = 12
    episode_timeout_s: float = 3600.0
    """Generous: a CPU model serving many episodes at once is slow by nature, and a timed-out episode would
    be scored as the model's failure (the rollout's default is 600 s, for served models)."""
    seed: int = 0
    encoding: str = "hermes"
    thinking: bool = True
    categories: list[str] | None = None
    """Only these task categories (all when None): the held-out measurement and SFT's samples."""


def run_policy(
    model: Any,
    tokenizer: Any,
    corpus: Any,
    out: Path,
    *,
    settings: EvalSettings,
    backend: str = "auto",
    samples: int = 1,
    seed: int = 0,
    trace: dict | None = None,
) -> list[dict]:
    """Roll `model` out over `corpus` in sandboxes (`samples` per task) and return the rows."""
    import os

    policy = LocalPolicy(
        model,
        tokenizer,
        encoding=settings.encoding,
        thinking=settings.thinking,
        seed=seed,
        threads=os.cpu_count() or 1,  # the sandboxes mostly wait on the model
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
    )
    policy.engine.trace = trace
    try:
        asyncio.run(
            rollout(
                corpus,
                policy.fork,
                out,
                samples_per_task=samples,
                in_flight=settings.in_flight,
                backend=backend,
                budgets=Budgets(max_steps=settings.max_steps),
                episode_timeout_s=settings.episode_timeout_s,
                seed=seed,
                progress="auto",  # a bar on a terminal, a line every 10 s in a log
            )
        )
    finally:
        policy.close()
    return load_trajectories(out)


def success_by_category(rows: list[dict]) -> dict[str, dict[str, Any]]:
    """Per category (and "overall"): episodes, successes, rate and its 95% Wilson interval."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["status"] != "infra_error":
            groups[r["category"]].append(r)
            groups["overall"].append(r)
    out = {}
    for c, rs in sorted(groups.items()):
        wins = sum(bool(r["success"]) for r in rs)
        out[c] = {
            "episodes": len(rs),
            "successes": wins,
            "rate": wins / len(rs),
            "ci": list(wilson(wins, len(rs))),
        }
    return out


def compare_by_category(before: list[dict], after: list[dict]) -> dict[str, dict[str, Any]]:
    """Before and after on the same tasks and seeds: rates, the paired difference and its bootstrap interval
    over episodes (the same resampling `toolgym eval --compare` uses)."""
    a = {r["key"]: r for r in before if r["status"] != "infra_error"}
    b = {r["key"]: r for r in after if r["status"] != "infra_error"}
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for k in sorted(a.keys() & b.keys()):
        pair = (float(bool(a[k]["success"])), float(bool(b[k]["success"])))
        by[a[k]["category"]].append(pair)
        by["overall"].append(pair)
    out = {}
    for c, pairs in sorted(by.items()):
        diffs = [y - x for x, y in pairs]
        low, high = bootstrap(diffs)
        n = len(pairs)
        out[c] = {
            "episodes": n,
            "before": sum(x for x, _ in pairs) / n,
            "after": sum(y for _, y in pairs) / n,
            "before_ci": list(wilson(int(sum(x for x, _ in pairs)), n)),
            "after_ci": list(wilson(int(sum(y for _, y in pairs)), n)),
            "diff": sum(diffs) / n,
            "diff_ci_low": low,
            "diff_ci_high": high,
        }
    return out


# ---------------------------------------------------------------------------------------------
# The two jobs.


@dataclass
class SFTJob:
    model: str = "default"
    data: list[str] = field(default_factory=list)
    """Run folders (their successful rows are the samples)."""
    out: str = "runs/sft"
    held_out: str | None = None
    eval: EvalSettings = field(default_factory=EvalSettings)
    epochs: int = 1
    lr: float = 5e-5
    batch_tokens: int = 4096
    max_seq_tokens: int = 3072
    max_samples: int | None = None
    """At most this many trajectories (a seeded draw balanced over categories), to bound the time."""
    backend: str = "auto"
    seed: int = 0
    skip_before: bool = False
    before_from: str | None = None
    """An earlier SFT job's folder whose before-training measurement (same model, held-out corpus and
    evaluation settings) is reused instead of measured again: compare data mixes against one baseline."""
    detach_prompt: bool = False
    """Train without gradient through each batch's prompt before its first trained token (`sft_train`)."""


def _round_robin(rows: list[dict], seed: int) -> list[dict]:
    """The rows in a seeded order that takes one of each category in turn, so that the first n of it are
    balanced over categories (and a large category cannot crowd out the rest of a small budget)."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["key"]):
        by[r["category"]].append(r)
    rng = random.Random(seed)
    for v in by.values():
        rng.shuffle(v)
    out: list[dict] = []
    while any(by.values()):
        for c in sorted(by):
            if by[c]:
                out.append(by[c].pop())
    return out


def _release() -> None:
    """Hand the training step's freed memory back before the engine's caches grow (glibc keeps it otherwise:
    a 135M model's SFT process held 17 GB when its held-out rollouts began)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def _save(model: Any, tokenizer: Any, folder: Path) -> None:
    _release()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _held_out_sample(job_held_out: str | None, settings: EvalSettings):
    if not job_held_out:
        return None
    from toolgym.envs.corpus import load_corpus

    return load_corpus(job_held_out).per_category(
        settings.per_category,
        seed=settings.seed,
        max_difficulty=settings.max_difficulty,
        categories=settings.categories,
    )


def train_sft(job: SFTJob, log: Log = print) -> dict[str, Any]:
    """SFT on the runs' successful trajectories; held-out success before and after when a corpus is given.
    Writes OUT/model (the fine-tuned checkpoint), OUT/report.json and OUT/report.html."""
    from toolgym.model.finetune import sft_train

    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    path = resolve_model_path(job.model)
    model, tokenizer = load_model(path)
    _hf_tokenizer(tokenizer)
    rows = [r for d in job.data for r in load_trajectories(d)]
    if not rows:
        raise ValueError(f"no trajectories in {', '.join(job.data) or 'no run folder'}: pass --data RUN")
    ok = [
        r
        for r in rows
        if r["status"] == "ok"
        and float(r["reward"] or 0) >= 1.0
        and (job.eval.max_difficulty is None or (r.get("difficulty") or 0) <= job.eval.max_difficulty)
        and (not job.eval.categories or r["category"] in job.eval.categories)
    ]
    # round-robin over categories, skipping what does not fit: a length cap must not empty a category
    seqs, info = [], {"rows": 0, "too_long": 0, "not_prefix_stable": 0}
    for r in _round_robin(ok, job.seed):
        if job.max_samples is not None and info["rows"] >= job.max_samples:
            break
        made, one = sft_sequences(
            [r],
            tokenizer,
            encoding=job.eval.encoding,
            thinking=job.eval.thinking,
            max_tokens=job.max_seq_tokens,
        )
        seqs += made
        for k in ("rows", "too_long", "not_prefix_stable"):
            info[k] += one[k]
    info.update(_counts(seqs))
    log(
        f"SFT data: {info['rows']} trajectories ({info['by_category']}), {info['sequences']} sequences, "
        f"{info['tokens']} tokens of which {info['trained_tokens']} trained; {info['too_long']} over "
        f"{job.max_seq_tokens} tokens skipped"
    )
    sample = _held_out_sample(job.held_out, job.eval)
    report: dict[str, Any] = {"job": "sft", "model": str(path), "data": info, "settings": _settings(job)}

    def measure(name: str) -> list[dict]:
        t0 = time.perf_counter()
        rows = run_policy(
            model, tokenizer, sample, out / f"held-out-{name}", settings=job.eval, backend=job.backend
        )
        report[name] = success_by_category(rows)
        report[f"{name}_s"] = round(time.perf_counter() - t0, 1)
        log(f"held-out {name}: {_rates(report[name])} ({report[f'{name}_s']} s)")
        return rows

    if sample is not None and job.before_from:
        before = _reused_before(job, path, report)
        log(f"held-out before: {_rates(report['before'])} (reused from {job.before_from})")
    else:
        before = measure("before") if sample is not None and not job.skip_before else []

    def progress(done: int, total: int, s: dict) -> None:
        if done == total or done % max(1, total // 20) == 0:
            log(f"  SFT step {done}/{total}: loss {s['loss']:.3f}, {s['tokens_per_s']:.0f} tokens/s")

    stats = sft_train(
        model,
        seqs,
        epochs=job.epochs,
        lr=job.lr,
        batch_tokens=job.batch_tokens,
        pad_id=_pad_id(tokenizer),
        seed=job.seed,
        detach_prompt=job.detach_prompt,
        progress=progress,
    )
    report["sft"] = stats.as_dict()
    report["sft"]["losses"] = stats.losses
    log(
        f"SFT: {stats.steps} steps, {stats.tokens} tokens in {stats.seconds:.0f} s ({stats.tokens_per_s:.0f} tokens/s)"
    )
    _save(model, tokenizer, out / "model")
    _write_report(out, report)  # what training measured survives a failure of the measurement after it
    if sample is not None:
        after = measure("after")
        if before:
            report["compare"] = compare_by_category(before, after)
    _write_report(out, report)
    return report


def _reused_before(job: SFTJob, model_path: Path, report: dict[str, Any]) -> list[dict]:
    """The before rows of job.before_from, refused unless they measured the same thing."""
    folder = Path(job.before_from or "")
    try:
        earlier = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"--before-from {folder}: no readable report.json of an SFT job there ({err})"
        ) from err
    mine = _settings(job)
    differs = [
        name
        for name, a, b in (
            ("model", earlier.get("model"), str(model_path)),
            ("held-out corpus", earlier.get("settings", {}).get("held_out"), mine["held_out"]),
            ("evaluation settings", earlier.get("settings", {}).get("eval"), mine["eval"]),
        )
        if a != b
    ]
    if differs or "before" not in earlier:
        why = f"its {', '.join(differs)} differ" if differs else "it measured no model before training"
        raise ValueError(f"--before-from {folder}: {why}; measure again without --before-from")
    rows = load_trajectories(folder / "held-out-before")
    report["before"], report["before_s"] = earlier["before"], earlier.get("before_s")
    report["before_from"] = str(folder)
    return rows


@dataclass
class GRPOJob:
    model: str = "default"
    corpus: str = ""
    """The training tasks (a corpus)."""
    out: str = "runs/grpo"
    held_out: str | None = None
    eval: EvalSettings = field(default_factory=EvalSettings)
    iterations: int = 2
    tasks_per_iteration: int = 8
    group_size: int = 4
    temperature: float = 0.8
    lr: float = 1e-6
    epochs: int = 1
    batch_tokens: int = 4096
    kl_coef: float = 0.02
    clip: float = 0.2
    offpolicy_delta: float = 0.5
    max_difficulty: int | None = None
    categories: list[str] | None = None
    """Only training tasks of these categories (all when None): rollouts of a category the policy never
    solves are all-zero groups, which cost their time and carry no signal."""
    backend: str = "auto"
    seed: int = 0


def train_grpo(job: GRPOJob, log: Log = print) -> dict[str, Any]:
    """GRPO iterations: G rollouts per task from the current policy in sandboxes, environment rewards,
    group-normalised advantages, one update; reward on the training tasks and held-out success tracked per
    iteration. Writes OUT/model, OUT/report.json and OUT/report.html."""
    from toolgym.envs.corpus import load_corpus
    from toolgym.model.finetune import GRPOConfig, group_advantages, grpo_train

    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    path = resolve_model_path(job.model)
    model, tokenizer = load_model(path)
    _hf_tokenizer(tokenizer)
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    train = load_corpus(job.corpus)
    sample = _held_out_sample(job.held_out, job.eval)
    cfg = GRPOConfig(
        clip=job.clip, kl_coef=job.kl_coef, offpolicy_delta=job.offpolicy_delta, temperature=job.temperature
    )
    rollout_settings = EvalSettings(**{**asdict(job.eval), "temperature": job.temperature})
    report: dict[str, Any] = {"job": "grpo", "model": str(path), "settings": _settings(job), "iterations": []}
    if sample is not None:
        held = run_policy(
            model, tokenizer, sample, out / "held-out-0", settings=job.eval, backend=job.backend
        )
        report["iterations"].append({"iteration": 0, "held_out": success_by_category(held)})
        log(f"iteration 0: held-out {_rates(report['iterations'][0]['held_out'])}")
    for it in range(1, job.iterations + 1):
        t0 = time.perf_counter()
        kinds = set(job.categories or {t.category for t in train.tasks})
        tasks = train.per_category(
            max(1, job.tasks_per_iteration // max(1, len(kinds))),
            seed=job.seed * 1000 + it,
            max_difficulty=job.max_difficulty,
            categories=job.categories,
        )
        trace: dict = {}
        rows = run_policy(
            model,
            tokenizer,
            tasks,
            out / f"rollouts-{it}",
            settings=rollout_settings,
            backend=job.backend,
            samples=job.group_size,
            seed=job.seed * 1000 + it,
            trace=trace,
        )
        rows = [r for r in rows if r["status"] != "infra_error"]
        rewards = [float(r["reward"] or 0.0) for r in rows]
        advantages = dict(
            zip(
                (r["key"] for r in rows), group_advantages(rewards, [r["task_id"] for r in rows]), strict=True
            )
        )
        seqs = sampled_sequences(rows, trace)
        for s in seqs:
            s.advantage = advantages[s.meta["key"]]
        learning = [s for s in seqs if s.advantage != 0.0]
        entry: dict[str, Any] = {
            "iteration": it,
            "tasks": len(tasks.tasks),
            "episodes": len(rows),
            "train_reward": sum(rewards) / len(rewards) if rewards else 0.0,
            "groups_with_signal": len({s.group for s in learning}),
            "sequences": len(learning),
        }
        rollout_s = time.perf_counter() - t0
        if learning:
            log(
                f"iteration {it}: updating on {len(learning)} sequences of {entry['groups_with_signal']} groups"
            )

            def progress(done: int, total: int, s: dict) -> None:
                if done == total or done % max(1, total // 10) == 0:
                    log(f"  GRPO step {done}/{total}: loss {s['loss']:.4f}, KL {s['kl']:.5f}")

            stats = grpo_train(
                model,
                ref,
                learning,
                cfg,
                lr=job.lr,
                epochs=job.epochs,
                batch_tokens=job.batch_tokens,
                pad_id=_pad_id(tokenizer),
                seed=job.seed + it,
                progress=progress,
            )
            entry["update"] = stats.as_dict()
            entry["kl"] = sum(e["kl"] for e in stats.extra) / len(stats.extra)
            entry["masked_samples"] = sum(e["masked_samples"] for e in stats.extra)
            _release()
        entry["rollout_s"] = round(rollout_s, 1)
        entry["update_s"] = round(time.perf_counter() - t0 - rollout_s, 1)
        if sample is not None:
            held = run_policy(
                model, tokenizer, sample, out / f"held-out-{it}", settings=job.eval, backend=job.backend
            )
            entry["held_out"] = success_by_category(held)
        report["iterations"].append(entry)
        log(
            f"iteration {it}: train reward {entry['train_reward']:.3f} over {entry['episodes']} episodes, "
            f"{entry['groups_with_signal']} groups with signal"
            + (f"; held-out {_rates(entry['held_out'])}" if "held_out" in entry else "")
        )
    _save(model, tokenizer, out / "model")
    _write_report(out, report)
    return report


def _pad_id(tokenizer: Any) -> int:
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad if pad is not None else tokenizer.eos_token_id)


def _rates(groups: dict[str, dict]) -> str:
    return ", ".join(f"{c} {g['successes']}/{g['episodes']}" for c, g in groups.items())


def _settings(job: Any) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(job), default=str))


def _write_report(out: Path, report: dict[str, Any]) -> None:
    from .runstore import atomic_write
    from .train_report import to_html

    report["model_out"] = str(out / "model")
    report["report_html"] = str(out / "report.html")
    text = json.dumps(report, indent=2, sort_keys=True)
    atomic_write(out / "report.json", lambda tmp: tmp.write_text(text))
    page = to_html(report)
    atomic_write(out / "report.html", lambda tmp: tmp.write_text(page))
