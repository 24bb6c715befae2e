"""Rollouts, evaluation and exports through real files: resume after SIGKILL, pass@k, SFT/RL datasets."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from toolgym.agent.evaluate import evaluate, pass_at_k, wilson
from toolgym.agent.export import export_rl, export_sft, grpo_groups
from toolgym.agent.rollout import content, load_trajectories


def rollout(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "toolgym",
        "rollout",
        "reference",
        "--policy",
        "oracle",
        "--out",
        str(out),
        "--samples-per-task",
        "3",
        "--backend",
        "inprocess",
        "--no-progress",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_pass_at_k_and_intervals():
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25) and pass_at_k(4, 1, 2) == pytest.approx(0.5)
    lo, hi = wilson(5, 10)
    assert 0.2 < lo < 0.5 < hi < 0.8


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    full = tmp_path / "full"
    assert rollout(full).returncode == 0
    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toolgym",
            "rollout",
            "reference",
            "--policy",
            "oracle",
            "--out",
            str(cut),
            "--samples-per-task",
            "3",
            "--backend",
            "inprocess",
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((cut / "parts").glob("*.parquet")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert rollout(cut).returncode == 0
    a, b = load_trajectories(full), load_trajectories(cut)
    assert [r["key"] for r in a] == [r["key"] for r in b] and len({r["key"] for r in b}) == len(b)
    assert [content(r) for r in a] == [content(r) for r in b]


def test_evaluate_and_export(tmp_path):
    run = tmp_path / "run"
    assert rollout(run, "--limit", "6").returncode == 0
    rows = load_trajectories(run)
    report = evaluate(rows, ks=(1, 3, 8))
    assert report["overall"]["success_rate"] == 1.0 and report["overall"]["pass@3"] == 1.0
    assert "pass@8" not in report["overall"]  # only 3 samples per task
    assert report["tool_use"]["valid_call_rate"] == 1.0
    from toolgym.agent.evaluate import to_html

    page = to_html(report, rows)
    # the title and the summary line first, then the plots, then the tables
    assert page.index("<h1>") < page.index("<p>policy: oracle") < page.index("<svg") < page.index("<table>")
    sft = export_sft(rows, tmp_path / "sft", system_prompt="tools_in_reasoning")
    assert sft["samples"] == len(rows) and sft["rendered"] >= len(rows)
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "sft" / "sft.parquet"), split="train")
    assert ds[0]["messages"][0]["role"] == "system"
    text = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "sft" / "sft_deepseek_v32.parquet"), split="train"
    )[0]
    assert all(text["text"][a:b].endswith("<｜end▁of▁sentence｜>") for a, b in text["train_spans"])
    groups = grpo_groups(rows)
    assert all(g["group_size"] == 3 and g["advantages"] == [0.0] * 3 for g in groups)
    from toolgym.envs.corpus import load_corpus

    out = export_rl(tmp_path / "rl", corpus=load_corpus("reference"), rows=rows)
    rl = datasets.load_dataset(
        "parquet", data_files=str(tmp_path / "rl" / "rl_prompts.parquet"), split="train"
    )
    assert out["prompts"] == len(rl) and rl[0]["reward_model"]["style"] == "rule"


def test_env_chunks_keep_one_env_per_run_and_spread_big_envs():
    from types import SimpleNamespace

    from toolgym.agent.rollout import env_chunks

    items = [
        (SimpleNamespace(env_id=f"e{e}", id=f"e{e}-{i}"), s)
        for e in range(3)
        for i in range(40)
        for s in (0, 1)
    ]
    chunks = env_chunks(items, in_flight=4)
    assert [it for c in chunks for it in c] == items  # nothing lost, order kept
    assert all(len({t.env_id for t, _ in c}) == 1 for c in chunks)
    assert max(len(c) for c in chunks) == -(-len(items) // 16)  # a quarter of a worker's share
    assert len(chunks) >= 4 * 4
    assert env_chunks([], 8) == []
