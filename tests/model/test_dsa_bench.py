"""`toolgym model bench`'s new parts: --calibrate (the stored crossover), cache bytes, auto mode, --agent."""

import json
import statistics

import pytest
import toolgym.model.dsa as dsa
import torch
from toolgym.model.bench import agent_episode, central, crossing, format_agent_table, paired_ratio
from toolgym.model.quality import int8_topk_overlap

from toolgym.cli import main

SMALL = ["--heads", "4", "--head-dim", "16"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOLGYM_CACHE", str(tmp_path / "cache"))
    dsa.forget_crossover()


def test_crossing_interpolates_where_dsa_overtakes_dense_for_good():
    # speed-up 0.5x at 1k, 2x at 4k: log-linear in log L crosses 1x halfway, at 2k
    assert crossing([(1024, 1.0, 2.0), (4096, 2.0, 1.0)]) == 2048
    assert crossing([(1024, 2.0, 1.0), (2048, 2.0, 1.0)]) == 1024  # DSA faster everywhere
    assert crossing([(1024, 1.0, 2.0), (2048, 1.0, 2.0)]) == 1 << 31  # never
    # a lucky win below a loss does not count: DSA must stay faster from the crossover on
    assert crossing([(1024, 2.0, 1.0), (2048, 1.0, 2.0), (4096, 2.0, 1.0)]) > 2048


def test_calibrate_stores_a_crossover_per_k_and_phase_that_auto_mode_reads(tmp_path, capsys):
    code = main(["model", "bench", "--calibrate", "--json", "--lengths", "256,512", "--top-k", "64", *SMALL])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    stored = json.loads((tmp_path / "cache" / "dsa_crossover.json").read_text())
    assert out["file"] == str(tmp_path / "cache" / "dsa_crossover.json")
    assert set(stored) == {"64"} and set(stored["64"]) == {"prefill", "decode"}
    for phase in ("prefill", "decode"):
        assert stored["64"][phase] >= 256
        assert dsa.crossover(64, phase) == stored["64"][phase] == out["crossover"]["64"][phase]


def test_bench_rows_carry_auto_time_and_cache_bytes(capsys):
    args = ["model", "bench", "--json", "--lengths", "256", "--top-k", "64", *SMALL]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["mode"] for r in rows} == {"prefill", "decode"}
    for r in rows:
        assert r["auto_s"] > 0 and isinstance(r["auto_sparse"], bool) and r["auto_vs_best"] > 0
        assert r["dense_bytes"] == 2 * 16 * 4  # fp32 key and value of one MQA head
        assert r["dsa_bytes"] == r["dense_bytes"] + 64 + 4  # int8 indexer key plus its scale
    assert (
        main(["model", "bench", "--lengths", "256", "--top-k", "64", "--index-precision", "fp32", *SMALL])
        == 0
    )
    table = capsys.readouterr().out
    assert "| auto | auto / best | dense B/token | DSA B/token |" in table
    assert "| 128 | 384 |" in table  # fp32 indexer keys: 4 bytes per dim


def test_agent_episode_reports_decode_speed_per_context():
    rows = agent_episode((300, 600), 256, tokens_per_turn=2)
    assert [r.context for r in rows] == [300, 600]
    for r in rows:
        assert r.dense_tok_s > 0 and r.dsa_tok_s > 0 and r.auto_tok_s > 0
        assert r.dsa_cache_mib > r.dense_cache_mib
    assert [r.auto_sparse for r in rows] == [False, True]  # the default decode crossover: 2k = 512
    table = format_agent_table(rows, 256, 1)
    assert table.count("\n| 300 |") == 1 and "(dense)" in table and "(DSA)" in table


def test_int8_indexer_keeps_the_fp32_top_k(make_model):
    model = make_model(index_dim=64, index_rope_dim=32)
    tokens = torch.randint(0, 1024, (2, 200))
    report = int8_topk_overlap(model, tokens, 25)
    assert len(report["per_layer"]) == model.cfg.n_layers
    assert 0.95 <= report["overlap"] <= 1.0


def test_a_cell_time_is_the_mean_of_the_middle_half():
    # two modes, as decode steps have here: the median jumps to whichever mode holds the middle sample
    warm, cold = [0.4] * 9, [0.9] * 10
    assert central(warm + cold) == pytest.approx(statistics.fmean(sorted(warm + cold)[4:15]))
    assert central([3.0, 1.0, 2.0]) == 2.0  # few samples: the median


def test_auto_over_best_pairs_samples_by_round():
    slow_moments = [1.0, 5.0, 1.0, 5.0, 1.0]  # the machine's load, the same for both in a round
    assert paired_ratio([t * 1.02 for t in slow_moments], slow_moments) == pytest.approx(1.02)
    with pytest.raises(ValueError):
        paired_ratio([1.0], [1.0, 2.0])
