"""The training exports fit other trainers as they are: the SFT export goes through TRL's own SFT data path
(SFTTrainer 1.16 preparing, collating and training one step on a tiny model) and the RL export passes the row
schema verl reads, checked without verl.

The rows come from real oracle rollouts of reference tasks (in-process env servers: the oracle is trusted).
The TRL half checks that the tokens TRL trains on are exactly the assistant output: for the chat samples, what
each assistant message adds to the rendered conversation; for the pre-tokenized DeepSeek-V3.2 export, our
own labels. The verl half encodes what verl 0.9.1 reads from a row (`RLHFDataset` in
verl/utils/dataset/rl_dataset.py, the naive reward manager in verl/workers/reward_manager/naive.py, which hands
`data_source`, the decoded response, `reward_model["ground_truth"]` and `extra_info` to the reward function) and
renders each prompt with a chat template as verl's prompt-length filter does.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("transformers")
pytest.importorskip("datasets")
pytest.importorskip("trl")

from datasets import load_dataset  # noqa: E402
from toolgym.agent.export import export_rl, export_sft  # noqa: E402
from toolgym.agent.policies import GiveUpPolicy, OraclePolicy  # noqa: E402
from toolgym.agent.rollout import load_trajectories, rollout  # noqa: E402
from toolgym.envs import IN_PROCESS  # noqa: E402
from toolgym.envs.corpus import load_corpus  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402
from trl.chat_template_utils import qwen2_5_chat_template, qwen3_chat_template  # noqa: E402

from tests.integration import tiny_hf_model  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> SimpleNamespace:
    """Oracle rollouts of one reference task per category, exported for SFT (tokenized with the tiny model's
    tokenizer) and RL (prompt rows of the whole reference corpus; GRPO groups mixing oracle and give-up runs)."""
    root = tmp_path_factory.mktemp("export-compat")
    model = tiny_hf_model.build(root / "tiny")
    tasks = load_corpus("reference").per_category(1)
    asyncio.run(
        rollout(tasks, OraclePolicy, root / "oracle", in_flight=4, backend=IN_PROCESS, progress=False)
    )
    asyncio.run(
        rollout(tasks, GiveUpPolicy, root / "give-up", in_flight=4, backend=IN_PROCESS, progress=False)
    )
    oracle = load_trajectories(root / "oracle")
    give_up = load_trajectories(root / "give-up")
    assert {r["status"] for r in oracle} == {"ok"} and {r["reward"] for r in oracle} == {1.0}
    out = root / "export"
    sft = export_sft(oracle, out, tokenizer=str(model))
    assert sft["samples"] == len(tasks.tasks) and sft["rendered"] >= len(tasks.tasks)
    # a group of two per task: the oracle (reward 1) as sample 0 and a give-up episode (reward 0) as sample 1
    merged = oracle + [{**r, "sample": r["sample"] + 1} for r in give_up]
    export_rl(out, corpus=load_corpus("reference"), rows=merged)
    return SimpleNamespace(root=root, out=out, model=model, tasks=tasks)


def _load(path: Path, root: Path):
    kind = "json" if path.suffix == ".jsonl" else "parquet"
    return load_dataset(kind, data_files=str(path), split="train", cache_dir=str(root / "hf-cache"))


def _qwen3_tokenizer(model: Path):
    """The tiny tokenizer (it has ChatML's and Qwen3's special tokens) with Qwen3's stock chat template."""
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = qwen3_chat_template
    return tokenizer


def _config(out: Path, **extra) -> SFTConfig:
    return SFTConfig(
        output_dir=str(out),
        max_steps=1,
        per_device_train_batch_size=1,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        max_length=None,  # no truncation: every assistant span is compared whole
        disable_tqdm=True,
        **extra,
    )


def _collated_labels(trainer, ids: list[str]) -> dict[str, list[int]]:
    """Labels of the prepared examples with these ids, as TRL's data collator batches them (padding cut)."""
    prepared = trainer.train_dataset
    rows = [prepared[i] for i in range(len(prepared))]
    by_id = {r["id"]: r for r in rows}
    features = [{"input_ids": by_id[i]["input_ids"], "labels": by_id[i]["labels"]} for i in ids]
    batch = trainer.data_collator(features)
    out = {}
    for n, i in enumerate(ids):
        length = len(by_id[i]["input_ids"])
        labels = batch["labels"][n].tolist()
        assert all(v == -100 for v in labels[length:]), "padding is trained on"
        assert batch["input_ids"][n].tolist()[:length] == by_id[i]["input_ids"]
        out[i] = labels[:length]
    return out


def _one_step(trainer, example_id: str) -> float:
    """Train one step on one (short) prepared example and return its logged loss."""
    trainer.train_dataset = trainer.train_dataset.filter(lambda r: r["id"] == example_id)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses, trainer.state.log_history
    return losses[0]


def _assistant_char_spans(tokenizer, template: str | None, messages: list[dict], tools) -> tuple[str, list]:
    """The rendered conversation and, per assistant message, the characters it adds after the generation
    prompt: rendering messages[:j] with the generation prompt must be a prefix of rendering messages[:j+1]."""

    def render(msgs, gen=False):
        return tokenizer.apply_chat_template(
            msgs, tools=tools, chat_template=template, tokenize=False, add_generation_prompt=gen
        )

    full = render(messages)
    spans = []
    for j, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before, after = render(messages[:j], gen=True), render(messages[: j + 1])
        assert after.startswith(before) and full.startswith(after)
        spans.append((len(before), len(after)))
    return full, spans


@pytest.mark.parametrize("name", ["sft.parquet", "sft.jsonl"])
def test_trl_sft_trains_on_the_chat_export_assistant_turns_only(exported, tmp_path, name):
    data = _load(exported.out / name, exported.root)
    assert {"messages", "tools"} <= set(data.column_names)
    tokenizer = _qwen3_tokenizer(exported.model)
    trainer = SFTTrainer(
        model=str(exported.model),
        args=_config(tmp_path / "trl", assistant_only_loss=True),
        train_dataset=data,
        processing_class=tokenizer,
    )
    # TRL swapped in its Qwen3 training template ({% generation %} markers): it is what it renders with
    assert trainer.chat_template and "generation" in trainer.chat_template
    labels = _collated_labels(trainer, data["id"])
    trained_somewhere = 0
    for sample in data:
        tools = sample["tools"]
        tools = json.loads(tools) if isinstance(tools, str) else tools
        full, spans = _assistant_char_spans(tokenizer, trainer.chat_template, sample["messages"], tools)
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        want = [any(s <= a and b <= e for s, e in spans) and b > a for a, b in enc["offset_mapping"]]
        got = [v != -100 for v in labels[sample["id"]]]
        assert len(got) == len(enc["input_ids"]), sample["id"]
        assert got == want, sample["id"]
        # and what is trained decodes to the assistant output (reasoning, calls, the answer), nothing else
        trained = tokenizer.decode([t for t, w in zip(enc["input_ids"], want, strict=True) if w])
        assert trained == "".join(full[s:e] for s, e in spans)
        n_assistant = sum(m["role"] == "assistant" for m in sample["messages"])
        assert trained.count("<|im_end|>") == n_assistant
        assert "<tool_response>" not in trained and sample["messages"][1]["content"] not in trained
        trained_somewhere += sum(got)
    assert trained_somewhere > 0
    shortest = min(data, key=lambda s: len(labels[s["id"]]))["id"]
    loss = _one_step(trainer, shortest)
    assert math.isfinite(loss) and loss > 0


@pytest.mark.parametrize("mask_as", ["labels", "assistant_masks"])
def test_trl_sft_trains_on_the_pretokenized_export_spans(exported, tmp_path, mask_as):
    """TRL 1.16 takes a dataset with `input_ids` as tokenized: a `labels` column is used as is, else labels
    are built from `assistant_masks` (or from `completion_mask`, only with completion_only_loss)."""
    data = _load(exported.out / "sft_deepseek_v32.parquet", exported.root)
    ours = {r["id"]: r for r in data}
    if mask_as == "assistant_masks":
        data = data.map(lambda r: {"assistant_masks": [int(v != -100) for v in r["labels"]]})
        data = data.remove_columns("labels")
    data = data.remove_columns(["text", "train_spans"])
    tokenizer = AutoTokenizer.from_pretrained(exported.model)
    trainer = SFTTrainer(
        model=str(exported.model),
        args=_config(tmp_path / "trl"),
        train_dataset=data,
        processing_class=tokenizer,
    )
    labels = _collated_labels(trainer, list(ours))
    for i, row in ours.items():
        assert labels[i] == row["labels"], i
        runs, run = [], []
        for t, v in zip(row["input_ids"], labels[i], strict=True):
            if v != -100:
                run.append(t)
            elif run:
                runs.append(run)
                run = []
        runs += [run] if run else []
        assert [tokenizer.decode(r) for r in runs] == [row["text"][s:e] for s, e in row["train_spans"]], i
    shortest = min(ours, key=lambda i: len(ours[i]["input_ids"]))
    loss = _one_step(trainer, shortest)
    assert math.isfinite(loss) and loss > 0


def _hf_messages(messages: list[dict]) -> list[dict]:
    """Our messages as Hugging Face chat templates document them: absent fields left out, tool-call arguments
    as objects (the export keeps OpenAI's JSON strings). Done at render time: stored back into an Arrow
    dataset, dict arguments of different tools would merge into one struct with null-filled keys."""
    out = []
    for m in messages:
        m = {k: v for k, v in m.items() if v is not None}
        if m.get("tool_calls"):
            m["tool_calls"] = [
                {**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                for c in m["tool_calls"]
            ]
        out.append(m)
    return out


def test_templates_that_serialise_arguments_need_them_parsed(exported):
    """Qwen3's template (and the tiny ChatML one) write string arguments as they are; Qwen2.5's, like several
    others, applies `tojson`, which quotes our JSON string a second time unless the arguments are parsed."""
    data = _load(exported.out / "sft.parquet", exported.root)
    tokenizer = AutoTokenizer.from_pretrained(exported.model)
    sample = next(s for s in data if s["category"] == "code_interpreter")
    call = next(m for m in sample["messages"] if m["tool_calls"])["tool_calls"][0]["function"]
    tools = json.loads(sample["tools"])

    def calls(template: str, messages: list[dict]) -> list[dict]:
        text = tokenizer.apply_chat_template(messages, tools=tools, chat_template=template, tokenize=False)
        found = []
        for block in text.split("<tool_call>\n")[1:]:
            try:  # the tools header's format example is not JSON
                found.append(json.loads(block.split("</tool_call>")[0]))
            except json.JSONDecodeError:
                pass
        return found

    want = {"name": call["name"], "arguments": json.loads(call["arguments"])}
    assert want in calls(qwen3_chat_template, sample["messages"])
    assert want not in calls(qwen2_5_chat_template, sample["messages"])
    assert {**want, "arguments": call["arguments"]} in calls(qwen2_5_chat_template, sample["messages"])
    assert want in calls(qwen2_5_chat_template, _hf_messages(sample["messages"]))


# --- verl ------------------------------------------------------------------------------------------------

VERL_ROLES = {"system", "user", "assistant", "tool"}


def verl_row_problems(row: dict, tokenizer) -> list[str]:
    """Why verl 0.9.1 could not use a row (as `datasets` loads it from parquet), or [] when it can.

    RLHFDataset reads `prompt` (its default prompt_key) as a chat message list and renders it with
    `tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)` to filter long prompts
    (a row that fails to render is dropped silently); `extra_info` is a dict (None is read as {}) whose
    `index` becomes the row's index and whose optional `tools_kwargs` / `interaction_kwargs` are dicts. The
    reward manager reads `data_source` (reward_fn_key) and `reward_model["ground_truth"]`.
    """
    problems = []
    if not isinstance(row.get("data_source"), str) or not row["data_source"]:
        problems.append("data_source is not a non-empty string")
    prompt = row.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        problems.append("prompt is not a non-empty list of messages")
    elif not all(
        isinstance(m, dict) and m.get("role") in VERL_ROLES and isinstance(m.get("content"), str)
        for m in prompt
    ):
        problems.append("a prompt message lacks a known role or string content")
    else:
        try:
            ids = tokenizer.apply_chat_template(
                prompt, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        except Exception as exc:  # what verl's filter swallows
            problems.append(f"the chat template cannot render the prompt: {exc}")
        else:
            if not ids:
                problems.append("the prompt renders to no tokens")
    reward_model = row.get("reward_model")
    if not isinstance(reward_model, dict) or reward_model.get("ground_truth") is None:
        problems.append("reward_model.ground_truth is missing")
    extra = row.get("extra_info")
    if extra is not None:
        if not isinstance(extra, dict):
            problems.append("extra_info is not a dict")
        else:
            if not isinstance(extra.get("index"), int):
                problems.append("extra_info.index is not an integer")
            for key in ("tools_kwargs", "interaction_kwargs"):
                if extra.get(key) is not None and not isinstance(extra[key], dict):
                    problems.append(f"extra_info.{key} is not a dict")
    return problems


def test_rl_prompt_rows_fit_verls_dataset_and_reward_schema(exported):
    rows = list(_load(exported.out / "rl_prompts.parquet", exported.root))
    reference = load_corpus("reference")
    assert len(rows) == len(reference.tasks)
    chatml = AutoTokenizer.from_pretrained(exported.model)
    qwen3 = _qwen3_tokenizer(exported.model)
    for row in rows:
        for tokenizer in (chatml, qwen3):
            assert verl_row_problems(row, tokenizer) == [], row["extra_info"]["task_id"]
        # our own contract inside verl's fields: the reward spec names the env, the task and its verifier
        truth = json.loads(row["reward_model"]["ground_truth"])
        assert {"env_id", "task_id", "verifier", "params"} <= set(truth)
        assert row["reward_model"]["style"] == "rule" and row["data_source"].startswith("toolgym/")
        assert truth["task_id"] == row["extra_info"]["task_id"]
        assert isinstance(json.loads(row["extra_info"]["tools"]), list)
        text = chatml.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
        assert row["prompt"][-1]["content"] in text and text.endswith("<|im_start|>assistant\n")
    assert sorted(r["extra_info"]["index"] for r in rows) == list(range(len(rows)))

    good = rows[0]
    broken = [
        {**good, "prompt": good["prompt"][-1]["content"]},  # a plain string
        {k: v for k, v in good.items() if k != "reward_model"},
        {**good, "reward_model": {"style": "rule"}},
        {**good, "prompt": [{"role": "user"}]},
        {**good, "prompt": [{"role": "robot", "content": "hi"}]},
        {**good, "data_source": None},
        {**good, "extra_info": {**good["extra_info"], "index": "0"}},
        {**good, "extra_info": json.dumps(good["extra_info"])},
        {**good, "extra_info": {**good["extra_info"], "tools_kwargs": "[]"}},
    ]
    for row in broken:
        assert verl_row_problems(row, chatml), row


def grpo_group_problems(group: dict) -> list[str]:
    """Why a GRPO group row is inconsistent: lists of group_size entries, advantages R - mean(R)."""
    n = group["group_size"]
    lists = ("samples", "rewards", "advantages", "messages")
    if any(len(group[k]) != n for k in lists):
        return [f"{', '.join(lists)} do not all have group_size={n} entries"]
    problems = []
    if abs(sum(group["advantages"])) > 1e-9:
        problems.append("advantages do not sum to 0")
    mean = sum(group["rewards"]) / n
    if any(abs(a - (r - mean)) > 1e-9 for a, r in zip(group["advantages"], group["rewards"], strict=True)):
        problems.append("advantages are not R - mean(R)")
    return problems


def test_grpo_group_rows_are_consistent(exported):
    groups = list(_load(exported.out / "grpo_groups.parquet", exported.root))
    assert len(groups) == len(exported.tasks.tasks)
    for g in groups:
        assert grpo_group_problems(g) == [], g["task_id"]
        assert g["group_size"] == 2 and g["samples"] == [0, 1]
        assert g["rewards"] == [1.0, 0.0] and g["advantages"] == [0.5, -0.5]  # oracle, then give-up
        assert all(isinstance(json.loads(m), list) for m in g["messages"])
    g = groups[0]
    for broken in (
        {**g, "advantages": g["rewards"]},  # not centred
        {**g, "advantages": [1.0, -1.0]},  # centred but scaled (a std division)
        {**g, "rewards": g["rewards"][:1]},
        {**g, "group_size": 3},
    ):
        assert grpo_group_problems(broken), broken
