"""Progress in logs: lines at most every N seconds and a final line (no carriage returns), a bar only on a
terminal, silence on request; through a real in-process rollout and the `toolgym rollout` command."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

import pytest
from toolgym.agent.policies import OraclePolicy
from toolgym.agent.progress import Progress, duration, resolve_mode, track
from toolgym.agent.rollout import load_trajectories, rollout
from toolgym.envs import IN_PROCESS
from toolgym.envs.corpus import load_corpus


class Clock:
    """Seconds that move only when told."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_resolve_mode_names_bools_and_a_one_sentence_error():
    assert [resolve_mode(m) for m in ("auto", "bar", "lines", "none")] == ["auto", "bar", "lines", "none"]
    assert resolve_mode(True) == "auto" and resolve_mode(False) == "none" and resolve_mode(None) == "none"
    for bad in ("Lines", "quiet", "", 1):
        with pytest.raises(ValueError) as err:
            resolve_mode(bad)
        message = str(err.value)
        assert "auto, bar, lines or none" in message and message.count(". ") == 0 and "\n" not in message


def test_lines_at_most_one_per_interval_then_a_final_line_with_the_totals():
    clock, out = Clock(), io.StringIO()
    p = Progress(40, "rollout", "ep", mode="lines", every_s=10.0, stream=out, clock=clock)
    for _ in range(40):  # one item a second, 40 seconds
        clock.t += 1.0
        p.update(1, success=f"{0.5:.1%}")
    p.close()
    p.close()  # a second close writes nothing more
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and text.endswith("\n")
    # lines at 10, 20 and 30 s (at most one per 10 s), then the final one at 40 s
    assert len(lines) == 4, lines
    assert lines[0] == "rollout: 10/40 ep (25.0%), 1.0 ep/s, success 50.0%, ETA 30s"
    assert lines[-1] == "rollout: 40/40 ep (100.0%), 1.0 ep/s, success 50.0%, in 40s"


def test_lines_never_more_often_than_every_s_however_fast_the_updates():
    clock, out = Clock(), io.StringIO()
    with Progress(10_000, "tasks", "env", mode="lines", every_s=5.0, stream=out, clock=clock) as p:
        for _ in range(10_000):  # 10,000 updates in 12 s
            clock.t += 0.0012
            p.update()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # at 5 s and 10 s, and the final line
    assert lines[-1].startswith("tasks: 10000/10000 env (100.0%), 833.3 env/s, in 12s")


def test_resumed_counts_rate_of_this_run_and_eta():
    clock, out = Clock(), io.StringIO()
    p = Progress(2000, "rollout", "ep", mode="lines", every_s=10.0, stream=out, initial=100, clock=clock)
    clock.t += 10.0
    p.update(20, success="45.0%")  # 20 new episodes in 10 s: 2.0 ep/s, 1880 left: 940 s
    assert out.getvalue() == "rollout: 120/2000 ep (6.0%), 2.0 ep/s, success 45.0%, ETA 15m40s\n"


def test_slow_rates_read_as_seconds_per_item_and_durations():
    clock, out = Clock(), io.StringIO()
    p = Progress(None, "model", "ep", mode="lines", every_s=10.0, stream=out, clock=clock)
    clock.t += 40.0
    p.update(2)
    assert out.getvalue() == "model: 2 ep, 20.0 s/ep\n"  # no total: no percentage, no ETA
    assert [duration(s) for s in (0, 45, 605, 7380)] == ["0s", "45s", "10m05s", "2h03m"]


def test_auto_picks_lines_off_a_terminal_and_a_bar_on_one():
    off = io.StringIO()
    p = Progress(3, "rollout", "ep", stream=off, every_s=0.0)
    assert p.mode == "lines"
    for _ in range(3):
        p.update()
    p.close()
    assert "\r" not in off.getvalue() and off.getvalue().splitlines()[-1].startswith(
        "rollout: 3/3 ep (100.0%)"
    )

    on = TTY()
    with Progress(3, "rollout", "ep", stream=on) as bar:
        assert bar.mode == "bar"
        bar.update(3, success="100.0%")
    assert "\r" in on.getvalue() and "3/3" in on.getvalue()  # tqdm's redraws, on a terminal only


def test_none_writes_nothing():
    out = io.StringIO()
    with Progress(5, "rollout", "ep", mode="none", stream=out, every_s=0.0) as p:
        for _ in range(5):
            p.update(1, success="1")
        p.set_postfix(infra=0)
    assert out.getvalue() == ""
    assert list(track(range(3), 3, "x", mode="none", stream=out)) == [0, 1, 2] and out.getvalue() == ""


def test_track_counts_the_items_and_ends_with_the_final_line():
    clock, out = Clock(), io.StringIO()
    seen = []
    for i in track(range(4), 4, "envs", "env", mode="lines", every_s=5.0, stream=out, clock=clock):
        clock.t += 3.0  # each item takes 3 s; it counts once the next one is asked for
        seen.append(i)
    assert seen == [0, 1, 2, 3]
    assert (
        out.getvalue().splitlines()
        == [
            "envs: 2/4 env (50.0%), 0.3 env/s, ETA 6s",  # at 6 s; at 12 s the total is reached: only the final line
            "envs: 4/4 env (100.0%), 0.3 env/s, in 12s",
        ]
    )


def test_set_postfix_takes_a_mapping_as_tqdm_does():
    clock, out = Clock(), io.StringIO()
    p = Progress(2, "  warmup", "step", mode="lines", stream=out, clock=clock)
    p.set_postfix({"kl": "0.1234"})
    clock.t += 1.0
    p.update(2)
    p.close()
    assert out.getvalue() == "  warmup: 2/2 step (100.0%), 2.0 step/s, kl 0.1234, in 1s\n"


def _oracle(out, progress):
    corpus = load_corpus("reference").per_category(1)
    stats = asyncio.run(
        rollout(corpus, OraclePolicy, out, in_flight=2, backend=IN_PROCESS, progress=progress)
    )
    return corpus, stats


def test_rollout_in_lines_mode_writes_lines_without_carriage_returns(tmp_path, capsys):
    corpus, stats = _oracle(tmp_path / "run", "lines")
    err = capsys.readouterr().err
    n = len(corpus.tasks)
    assert stats.episodes == n and len(load_trajectories(tmp_path / "run")) == n
    assert "\r" not in err
    final = [line for line in err.splitlines() if line.startswith("rollout: ")]
    assert final and final[-1].startswith(f"rollout: {n}/{n} ep (100.0%)") and "success 100.0%" in final[-1]


def test_rollout_progress_auto_false_and_a_wrong_name(tmp_path, capsys):
    _oracle(tmp_path / "auto", "auto")  # pytest's stderr is no terminal: lines
    err = capsys.readouterr().err
    assert "\r" not in err and "rollout: " in err
    _oracle(tmp_path / "quiet", False)  # the old bool still works
    assert "rollout: " not in capsys.readouterr().err
    with pytest.raises(ValueError, match="auto, bar, lines or none"):
        _oracle(tmp_path / "wrong", "fancy")
    assert not (tmp_path / "wrong").exists()  # refused before the run folder is touched


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "toolgym", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_cli_rollout_progress_lines_and_no_progress(tmp_path):
    base = ["rollout", "reference", "--policy", "oracle", "--limit", "3", "--backend", "inprocess"]
    done = _cli(*base, "--out", str(tmp_path / "lines"), "--progress", "lines")
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout + done.stderr
    assert "rollout: 3/3 ep (100.0%)" in done.stderr
    quiet = _cli(*base, "--out", str(tmp_path / "quiet"), "--no-progress")  # the old flag: --progress none
    assert quiet.returncode == 0, quiet.stderr
    assert "rollout: " not in quiet.stderr and "3 episodes" in quiet.stdout


def test_cli_progress_flag_on_every_command_and_its_choices():
    from toolgym.cli import build_parser

    parser = build_parser()
    for argv in (
        ["rollout", "reference", "--out", "x"],
        ["synth", "envs", "--out", "x"],
        ["synth", "tasks", "--out", "x"],
        [
            "synth",
            "filter",
            "reference",
            "--out",
            "x",
            "--policy",
            "oracle",
            "--k",
            "1",
            "--keep",
            "pass@k>0",
        ],
        ["demo"],
    ):
        assert parser.parse_args(argv).progress == "auto"
        assert parser.parse_args([*argv, "--progress", "lines"]).progress == "lines"
        assert parser.parse_args([*argv, "--no-progress"]).progress == "none"
    with pytest.raises(SystemExit):
        parser.parse_args(["rollout", "reference", "--out", "x", "--progress", "fancy"])
