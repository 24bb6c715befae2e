"""Datasets from rollouts: cold-start SFT samples and RL prompts / GRPO groups.

SFT: successful trajectories as OpenAI-format chat samples (JSONL and parquet), and the same rendered in the
DeepSeek-V3.2 encoding with the character spans the model must learn (assistant output only), plus token ids
and labels when a tokenizer is given. RL: verl-style prompt rows with a rule reward spec naming the env and its
verifier, and GRPO groups (G rollouts of one task with rewards and advantages R - mean(R), no std division).
Every file is written whole or not at all (a temporary name, fsynced, renamed).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from .encodings import render
from .runstore import atomic_write

# The three cold-start system prompts of DeepSeek-V3.2 (report §3.2.2), in our words.
COLD_START_PROMPTS = {
    "reasoning": "Think the problem through step by step inside <think></think> before you answer. After "
    "</think>, give only the final answer.",
    "tools": "You can call the tools listed below. Call a tool exactly in the format described, one call per "
    "step when each depends on the last, and answer only once the results support it.",
    "tools_in_reasoning": "While thinking, call the Python tool to compute and check: call it early and often "
    "(at most 20 times), prefer code over prose, and after </think> give the final answer "
    "without any tool call.",
}
MESSAGE_KEYS = ("role", "content", "reasoning_content", "tool_calls", "tool_call_id", "name")


def _fixed_message(m: dict) -> dict:
    """Every message with the same keys (None where absent), so parquet readers see one schema."""
    out = {k: m.get(k) for k in MESSAGE_KEYS}
    if out["tool_calls"] is not None:
        out["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]},
            }
            for c in out["tool_calls"]
        ] or None
    return out


def with_system_prompt(messages: list[dict], prompt: str | None) -> list[dict]:
    """Put a cold-start prompt before the environment's own system text (or alone when there is none)."""
    if not prompt:
        return messages
    text = COLD_START_PROMPTS.get(prompt, prompt)
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{text}\n\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def sft_samples(rows: list[dict], *, min_reward: float = 1.0, system_prompt: str | None = None) -> list[dict]:
    samples = []
    for r in rows:
        if r["status"] != "ok" or r["reward"] < min_reward:
            continue
        messages = with_system_prompt(r["messages"], system_prompt)
        samples.append(
            {
                "id": r["key"],
                "task_id": r["task_id"],
                "env_id": r["env_id"],
                "category": r["category"],
                "reward": r["reward"],
                "messages": [_fixed_message(m) for m in messages],
                "tools": json.dumps(r["tools"], ensure_ascii=False),
            }
        )
    return samples


def rendered_turns(messages: list[dict], tools: list[dict], *, thinking: bool = True) -> list[dict]:
    """One text per user turn in the DeepSeek-V3.2 encoding, and the spans the model writes in it.

    Within a user turn the encoding only appends (earlier reasoning is dropped only when a user message
    arrives), so each assistant message's text is what rendering it adds to the prefix before it. Earlier user
    turns stay as context, their reasoning dropped exactly as the model will see them.
    """
    clean = [{k: v for k, v in m.items() if v is not None} for m in messages]
    users = [i for i, m in enumerate(clean) if m["role"] == "user"]
    out = []
    for n, start in enumerate(users):
        end = users[n + 1] if n + 1 < len(users) else len(clean)
        spans = []
        text = None
        for j in range(start + 1, end):
            if clean[j]["role"] != "assistant":
                continue
            before = render("deepseek_v32", clean[:j], tools, thinking=thinking)
            after = render("deepseek_v32", clean[: j + 1], tools, thinking=thinking)
            if not after.startswith(before):
                raise ValueError("the encoding is not prefix-stable inside a user turn")
            spans.append([len(before), len(after)])
            text = after
        if text is not None:
            full = render("deepseek_v32", clean[:end], tools, thinking=thinking)
            if not full.startswith(text):
                raise ValueError("the encoding is not prefix-stable inside a user turn")
            out.append({"turn": n, "text": full, "train_spans": spans})
    return out


def token_labels(tokenizer, text: str, spans: list[list[int]]) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 outside the trained spans) from a fast tokenizer's offsets."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for tok, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        inside = any(s <= a and b <= e for s, e in spans) and b > a
        labels.append(tok if inside else -100)
    return enc["input_ids"], labels


def _write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def export_sft(
    rows: list[dict],
    out_dir: str | Path,
    *,
    min_reward: float = 1.0,
    system_prompt: str | None = None,
    thinking: bool = True,
    tokenizer: str | None = None,
) -> dict[str, Any]:

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    samples = sft_samples(rows, min_reward=min_reward, system_prompt=system_prompt)

    def jsonl(tmp: Path) -> None:
        with open(tmp, "w") as f:
            for s in samples:
                f.write(json.dumps({**s, "tools": json.loads(s["tools"])}, ensure_ascii=False) + "\n")

    atomic_write(out / "sft.jsonl", jsonl)
    _write_parquet(samples, out / "sft.parquet")
    tok = None
    if tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer)
    rendered, skipped = [], 0
    for s in samples:
        try:
            turns = rendered_turns(s["messages"], json.loads(s["tools"]), thinking=thinking)
        except ValueError:
            skipped += 1
            continue
        for t in turns:
            row = {
                "id": f"{s['id']}/{t['turn']}",
                "task_id": s["task_id"],
                "text": t["text"],
                "train_spans": t["train_spans"],
            }
            if tok is not None:
                row["input_ids"], row["labels"] = token_labels(tok, t["text"], t["train_spans"])
            rendered.append(row)
    _write_parquet(rendered, out / "sft_deepseek_v32.parquet")
    return {
        "samples": len(samples),
        "rendered": len(rendered),
        "skipped_not_prefix_stable": skipped,
        "files": [str(out / n) for n in ("sft.jsonl", "sft.parquet", "sft_deepseek_v32.parquet")],
    }


def rl_prompt_rows(corpus) -> list[dict]:
    """verl-style rows: data_source, prompt (system + first user turn), ability, reward_model, extra_info."""
    from toolgym.envs.spec import load_env_spec

    specs = {env_id: load_env_spec(d) for env_id, d in corpus.env_dirs.items()}
    rows = []
    for i, t in enumerate(corpus.tasks):
        spec = specs[t.env_id]
        rows.append(
            {
                "data_source": f"toolgym/{t.category}",
                # the first user turn as the episode opens it (a multi-turn task's may be a message list)
                "prompt": [{"role": "system", "content": spec.description}, *t.turn_list()[0].messages()],
                "ability": t.category,
                "reward_model": {
                    "style": "rule",
                    "ground_truth": json.dumps(
                        {"env_id": t.env_id, "task_id": t.id, "verifier": t.verifier, "params": t.params},
                        sort_keys=True,
                        ensure_ascii=False,
                    ),
                },
                "extra_info": {
                    "index": i,
                    "env_id": t.env_id,
                    "task_id": t.id,
                    "difficulty": t.difficulty,
                    "domain": spec.domain,
                    "later_user_turns": json.dumps(t.prompt[1:], ensure_ascii=False),
                    "tools": json.dumps(spec.openai_tools(), ensure_ascii=False),
                },
            }
        )
    return rows


def grpo_groups(rows: list[dict]) -> list[dict]:
    """G rollouts per task with rewards and advantages R_i - mean(R) (DeepSeek-V3.2: no std division)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        if r["status"] != "infra_error":
            groups[r["task_id"]].append(r)
    out = []
    for task_id, members in sorted(groups.items()):
        members.sort(key=lambda r: r["sample"])
        rewards = [float(r["reward"]) for r in members]
        mean = sum(rewards) / len(rewards)
        out.append(
            {
                "task_id": task_id,
                "env_id": members[0]["env_id"],
                "category": members[0]["category"],
                "group_size": len(members),
                "samples": [r["sample"] for r in members],
                "rewards": rewards,
                "advantages": [r_i - mean for r_i in rewards],
                "messages": [json.dumps(r["messages"], ensure_ascii=False) for r in members],
            }
        )
    return out


def export_rl(out_dir: str | Path, *, corpus=None, rows: list[dict] | None = None) -> dict[str, Any]:

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    if corpus is not None:
        prompts = rl_prompt_rows(corpus)
        _write_parquet(prompts, out / "rl_prompts.parquet")
        written["prompts"] = len(prompts)
    if rows is not None:
        groups = grpo_groups(rows)
        _write_parquet(groups, out / "grpo_groups.parquet")
        written["groups"] = len(groups)
    return written
