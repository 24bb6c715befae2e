"""`toolgym model train | quality | generate | corpus | bench` end to end, through the argparse entry."""

import argparse
import json

import pytest
import torch
from toolgym.model import bench
from toolgym.model.cli import add_parser, main
from toolgym.model.quality import attention_recall


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny run of all three stages through the CLI."""
    root = tmp_path_factory.mktemp("dsa")
    data = root / "recall.jsonl"
    assert main(["model", "corpus", "--out", str(data), "--docs", "300"]) == 0
    code = main(
        ["model", "train", "--data", str(data), "--out", str(root / "run"), "--vocab-size", "400",
         "--dense-steps", "80", "--warmup-steps", "40", "--sparse-steps", "20", "--seq-len", "128",
         "--warmup-lr", "3e-3"]
    )  # fmt: skip
    assert code == 0
    return root, data


def test_train_writes_a_checkpoint_per_stage(trained_run):
    root, _ = trained_run
    for stage in ("dense", "warmup", "sparse"):
        assert {p.name for p in (root / "run" / stage).iterdir()} == {
            "config.json",
            "model.safetensors",
            "tokenizer.json",
        }
    assert json.loads((root / "run" / "sparse" / "config.json").read_text())["sparse"] is True
    assert json.loads((root / "run" / "dense" / "config.json").read_text())["top_k"] == 16  # L/8


def test_quality_reports_recall_in_unit_interval_and_losses(trained_run, capsys):
    root, data = trained_run
    assert main(["model", "quality", "--run", str(root / "run"), "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["top_k"] == report["seq_len"] // 8
    for name in ("recall_warmup", "recall_sparse"):
        r = report[name]
        assert 0.0 <= r["recall"] <= r["oracle"] <= 1.0
        assert 0.0 <= r["window"] <= 1.0
        assert r["recall"] > 0.3  # the warmed-up indexer finds a real share of the attention
    for key in ("loss_dense_dense", "loss_sparse_sparse", "loss_warmup_sparse"):
        assert 0.0 < report[key] < 8.0
    assert main(["model", "quality", "--run", str(root / "run"), "--data", str(data)]) == 0
    assert "recall after warmup" in capsys.readouterr().out


def test_generate_command_prints_completions(trained_run, capsys):
    root, _ = trained_run
    args = ["model", "generate", "--checkpoint", str(root / "run" / "sparse"), "--prompt", "facts: ada=",
            "--prompt", "query", "--max-new-tokens", "8", "--seed", "3"]  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 2 and lines[0].startswith("facts: ada=")


def test_user_errors_are_one_sentence(tmp_path, capsys):
    assert main(["model", "train", "--data", str(tmp_path / "missing.txt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No corpus at") and "Traceback" not in err
    assert main(["model", "quality", "--data", str(tmp_path / "x.txt")]) == 2


def test_recall_counts_mass_on_the_selected_keys():
    L, k = 16, 2
    probs = torch.zeros(1, L, 1, L)
    for t in range(L):
        probs[0, t, 0, 0] = 0.5  # half the mass on the first token, half on the previous one
        probs[0, t, 0, max(t - 1, 0)] += 0.5
    visible = torch.ones(L, L).tril().bool()
    scores = torch.where(visible, 0.0, float("-inf"))[None]
    scores[0, :, 0] = 1.0  # an indexer that finds the first token and the previous one
    scores[0, torch.arange(1, L), torch.arange(0, L - 1)] = 1.0
    report = attention_recall([(probs, scores)], k)
    assert report["recall"] == pytest.approx(1.0)
    assert report["window"] == pytest.approx(0.5)  # the last two keys miss the first token
    assert report["oracle"] == pytest.approx(1.0)
    scores[0, :, 0] = -1.0  # now it misses the first token: half the mass
    assert attention_recall([(probs, scores)], k)["recall"] == pytest.approx(0.5)


def test_add_parser_registers_the_commands_with_examples():
    parser = argparse.ArgumentParser(prog="toolgym")
    add_parser(parser.add_subparsers(dest="command"))
    model_parser = parser._subparsers._group_actions[0].choices["model"]
    commands = model_parser._subparsers._group_actions[0].choices
    assert {"bench", "train", "quality", "generate", "corpus"} <= set(commands)
    for name in ("bench", "train", "quality"):
        assert "example:" in commands[name].format_help()
    args = parser.parse_args(["model", "bench", "--quick", "--json"])
    assert args.quick and args.json and args.func.__name__ == "run_bench"


def test_bench_json_rows_have_the_documented_keys(capsys):
    code = main(["model", "bench", "--json", "--lengths", "256,512", "--top-k", "64,128", "--heads", "4",
                 "--head-dim", "16"])  # fmt: skip
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 * 2 * 2  # lengths x k x {prefill, decode}
    for row in rows:
        assert set(row) == {"L", "k", "mode", "dense_s", "dsa_s", "indexer_s", "auto_s", "auto_sparse",
                            "auto_vs_best", "dense_bytes", "dsa_bytes"}  # fmt: skip
        assert row["mode"] in ("prefill", "decode")
        assert 0 < row["indexer_s"] and 0 < row["dsa_s"] and 0 < row["dense_s"]
    assert {(r["L"], r["k"]) for r in rows} == {(256, 64), (256, 128), (512, 64), (512, 128)}


def test_bench_quick_stops_at_8k_and_the_table_reports_ratios(monkeypatch, capsys):
    seen = {}

    def fake_run(cfg, progress=None):
        seen["lengths"] = cfg.lengths
        return [
            bench.Row(L, k, m, 2.0, 1.0, 0.25, 10.0, 2.0)
            for L in (1024, 2048)
            for k in cfg.top_ks
            for m in ("prefill", "decode")
        ]

    monkeypatch.setattr(bench, "run", fake_run)
    assert main(["model", "bench", "--quick"]) == 0
    assert seen["lengths"] == (1024, 2048, 4096, 8192)
    table = capsys.readouterr().out
    assert "| 2048 | 256 | prefill | 2.00 s | 1.00 s | 25% | 2.00x | 1.00 |" in table
