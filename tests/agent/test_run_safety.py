"""No run loses data: one writer per run folder, atomic commits and finalize, resume re-runs infrastructure
failures, a full or read-only disk ends with one sentence and a resumable run, and eval / export on a killed
run say it is partial."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from toolgym.agent.evaluate import evaluate
from toolgym.agent.rollout import content, load_trajectories, rollout
from toolgym.agent.runstore import RunBusy, RunWriteError, TrajectoryStore, run_progress

ALL = 22 * 3  # the reference corpus's tasks, three samples each


def toolgym(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolgym", *args], capture_output=True, text=True, timeout=timeout
    )


def rollout_cli(out: Path, *extra: str, popen: bool = False):
    args = [
        "rollout",
        "reference",
        "--policy",
        "oracle",
        "--backend",
        "inprocess",
        "--no-progress",
        "--samples-per-task",
        "3",
        "--out",
        str(out),
        *extra,
    ]
    if popen:
        cmd = [sys.executable, "-m", "toolgym", *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return toolgym(*args)


def one_sentence(done: subprocess.CompletedProcess, *needles: str) -> str:
    """The command failed with one line on stderr, no traceback, saying each of `needles`."""
    assert done.returncode != 0, done.stdout
    err = done.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("toolgym: ") and all(n in err for n in needles), err
    return err


def keys(rows: list[dict]) -> list[str]:
    return [r["key"] for r in rows]


def expected_keys(n_tasks: int | None = None) -> list[str]:
    from toolgym.envs.corpus import load_corpus

    tasks = load_corpus("reference").tasks[:n_tasks]
    return sorted(f"{t.id}#{s}" for t in tasks for s in range(3))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """One complete oracle run of the reference corpus (3 samples per task), shared by the tests that read."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert rollout_cli(out).returncode == 0
    return out


# --- 1. one writer per run folder ------------------------------------------------------------------------


def test_a_second_rollout_on_a_held_folder_is_refused_in_one_sentence(tmp_path):
    out = tmp_path / "run"
    holder = TrajectoryStore(out)
    holder.acquire()  # this process holds the folder, as a running rollout does
    refused = rollout_cli(out, "--limit", "2")
    one_sentence(refused, str(out), "being written by another rollout", "another --out")
    assert not (out / "plan.json").exists() and not list((out / "parts").glob("*"))  # it wrote nothing
    holder.release()
    assert rollout_cli(out, "--limit", "2").returncode == 0
    assert keys(load_trajectories(out)) == expected_keys(2)


def test_a_second_rollout_in_the_same_process_is_refused(tmp_path):
    from toolgym.agent.policies import OraclePolicy
    from toolgym.envs import IN_PROCESS
    from toolgym.envs.corpus import load_corpus

    corpus = load_corpus("reference").select(limit=4)

    async def both():
        def run():
            return rollout(corpus, OraclePolicy, tmp_path / "run", backend=IN_PROCESS, progress=False)

        return await asyncio.gather(run(), run(), return_exceptions=True)

    first, second = asyncio.run(both())
    assert first.episodes == 4, first
    assert isinstance(second, RunBusy) and "being written by another rollout" in str(second)
    assert [r["key"] for r in load_trajectories(tmp_path / "run")] == sorted(
        f"{t.id}#0" for t in corpus.tasks
    )
    # the lock went with the first rollout: a third one resumes (nothing left to do)
    stats = asyncio.run(rollout(corpus, OraclePolicy, tmp_path / "run", backend=IN_PROCESS, progress=False))
    assert (stats.episodes, stats.skipped) == (0, 4)


def test_a_rollout_that_raised_leaves_the_folder_free_in_the_same_process(tmp_path):
    from toolgym.agent.clients import ChatClient
    from toolgym.agent.policies import LLMPolicy, OraclePolicy
    from toolgym.envs import IN_PROCESS
    from toolgym.envs.corpus import load_corpus

    corpus = load_corpus("reference").select(limit=2)

    def refused():  # a model's policy is refused in-process, after the rollout took the folder
        return LLMPolicy(ChatClient("http://127.0.0.1:9", "m"), thinking=False)

    with pytest.raises(ValueError, match="not trusted"):
        asyncio.run(rollout(corpus, refused, tmp_path / "run", backend=IN_PROCESS, progress=False))
    stats = asyncio.run(rollout(corpus, OraclePolicy, tmp_path / "run", backend=IN_PROCESS, progress=False))
    assert stats.episodes == 2


def test_two_rollouts_started_together_lose_nothing(tmp_path):
    out = tmp_path / "run"
    procs = [rollout_cli(out, popen=True) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert any(rc == 0 for rc, _, _ in results), results
    for rc, _, err in results:
        if rc:  # the loser said why, in one sentence
            assert "being written by another rollout" in err and "Traceback" not in err, err
    rows = load_trajectories(out)
    assert keys(rows) == expected_keys() and all(r["success"] for r in rows)


# --- 2. atomic commits and finalize ----------------------------------------------------------------------


def committed_in_parts(src: Path, dst: Path, size: int = 7) -> list[dict]:
    """`src`'s rows committed into `dst` as several parts (not finalized); returns them, sorted by key."""
    rows = TrajectoryStore(src).rows()
    with TrajectoryStore(dst).locked() as store:
        for i in range(0, len(rows), size):
            store.commit(rows[i : i + size])
    return rows


def test_two_finalizes_at_once_lose_no_rows(tmp_path, reference_run):
    rows = committed_in_parts(reference_run, tmp_path / "run")
    holder = TrajectoryStore(tmp_path / "run")
    holder.acquire()
    with pytest.raises(RunBusy):  # finalize takes the lock: not beside a rollout or another finalize
        TrajectoryStore(tmp_path / "run").finalize()
    holder.release()

    start, errors, done = threading.Barrier(4), [], []

    def finalize_a_few_times():
        start.wait()
        for _ in range(5):
            try:
                TrajectoryStore(tmp_path / "run").finalize(shard_size=20)
                done.append(1)
            except RunBusy:
                pass
            except Exception as exc:  # anything else is a failure of the test
                errors.append(exc)

    def read_meanwhile():
        start.wait()
        for _ in range(20):
            seen = keys(TrajectoryStore(tmp_path / "run").rows())
            if seen != keys(rows):
                errors.append(f"a reader saw {len(seen)} rows of {len(rows)}")

    threads = [threading.Thread(target=finalize_a_few_times) for _ in range(3)]
    threads.append(threading.Thread(target=read_meanwhile))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and done
    assert TrajectoryStore(tmp_path / "run").rows() == rows  # every row, once, unchanged
    assert (
        not list((tmp_path / "run" / "parts").glob("*")) and len(list((tmp_path / "run").glob(".traj*"))) == 0
    )
    assert len(list((tmp_path / "run" / "trajectories").glob("*.parquet"))) == -(-len(rows) // 20)


def test_a_finalize_cut_between_its_renames_is_recovered(tmp_path, reference_run):
    rows = committed_in_parts(reference_run, tmp_path / "run")
    run = tmp_path / "run"
    TrajectoryStore(run).finalize()
    # a crash after moving the old shards aside, before moving the new ones in (and with a half-written set)
    (run / "trajectories").rename(run / ".trajectories.old")
    (run / ".trajectories.new").mkdir()
    (run / ".trajectories.new" / "trajectories-00000.parquet").write_bytes(b"PAR1 half")
    assert TrajectoryStore(run).rows() == rows  # readers still see every row
    with TrajectoryStore(run).locked():  # the next lock holder puts things back
        assert (run / "trajectories").is_dir() and not (run / ".trajectories.old").exists()
        assert not (run / ".trajectories.new").exists()
    assert TrajectoryStore(run).rows() == rows


def test_writing_needs_the_lock(tmp_path, reference_run):
    rows = TrajectoryStore(reference_run).rows()
    with pytest.raises(RuntimeError, match="holding its lock"):
        TrajectoryStore(tmp_path / "run").commit(rows[:1])


# --- 3. resume re-runs infrastructure failures -----------------------------------------------------------


def test_resume_reruns_infra_errors_and_the_newest_row_wins(tmp_path, reference_run):
    run = tmp_path / "run"
    rows = [r for r in TrajectoryStore(reference_run).rows() if r["key"] in expected_keys(4)]
    failed = {r["key"] for r in rows[::4]}  # three of the twelve failed for the infrastructure, as recorded
    broken = [
        dict(
            r, status="infra_error", reward=0.0, success=False, stop_reason="model_error", error="overloaded"
        )
        for r in rows
        if r["key"] in failed
    ]
    with TrajectoryStore(run).locked() as store:
        store.commit(rows)
        store.commit(broken)  # newer than the first part: these rows win
    assert {r["key"] for r in load_trajectories(run) if r["status"] == "infra_error"} == failed
    assert TrajectoryStore(run).done_keys(retry_infra=True) == {r["key"] for r in rows} - failed

    kept = rollout_cli(run, "--limit", "4", "--no-retry-infra")
    assert kept.returncode == 0 and "0 episodes (12 already done)" in kept.stdout, kept.stdout
    assert {r["key"] for r in load_trajectories(run) if r["status"] == "infra_error"} == failed

    retried = rollout_cli(run, "--limit", "4")
    assert retried.returncode == 0 and "3 episodes (9 already done)" in retried.stdout, retried.stdout
    after = load_trajectories(run)
    assert keys(after) == expected_keys(4) and all(r["status"] == "ok" and r["success"] for r in after)
    assert evaluate(after, ks=(1,))["infra_errors"] == 0
    assert not list((run / "parts").glob("*"))  # finalize merged the replaced rows away


# --- 4. a full or read-only disk -------------------------------------------------------------------------


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode:
        raise OSError(done.stderr.strip())


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs (root only): `make(size)` mounts one and returns its folder."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        try:
            mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
        except OSError as exc:
            pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {exc}")
        mounted.append(where)
        return where

    yield make
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_disk_ends_in_one_sentence_and_the_run_resumes(tmp_path, tmpfs, reference_run):
    run = tmpfs("120k") / "run"
    full = rollout_cli(run)
    one_sentence(full, "No space left on device", "run the same command again to resume")
    committed = load_trajectories(run)  # what was committed stays readable
    assert 0 < len(committed) < ALL and len(set(keys(committed))) == len(committed)
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]  # no half-written file left behind
    mount("-o", "remount,size=4m", str(run.parent))
    assert rollout_cli(run).returncode == 0
    rows = load_trajectories(run)
    assert [content(r) for r in rows] == [content(r) for r in load_trajectories(reference_run)]


def test_a_full_disk_during_finalize_keeps_every_row(tmpfs, reference_run):
    run = tmpfs("1m") / "run"
    rows = committed_in_parts(reference_run, run)
    filler = run.parent / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last byte
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    with pytest.raises(RunWriteError, match="No space left on device"):
        TrajectoryStore(run).finalize()
    assert TrajectoryStore(run).rows() == rows and not (run / ".trajectories.new").exists()
    filler.unlink()
    TrajectoryStore(run).finalize()
    assert TrajectoryStore(run).rows() == rows and not list((run / "parts").glob("*"))


def test_a_read_only_folder_ends_in_one_sentence_and_the_run_resumes(tmp_path, tmpfs):
    disk = tmpfs("4m")
    run = disk / "run"
    assert rollout_cli(run, "--limit", "2").returncode == 0
    view = tmp_path / "ro"  # a read-only view of the same folder (root ignores chmod 0555)
    view.mkdir()
    try:
        mount("--bind", str(disk), str(view))
    except OSError as exc:
        pytest.skip(f"cannot bind-mount here: {exc}")
    try:
        mount("-o", "remount,bind,ro", str(view))
        ro = view / "run"
        one_sentence(rollout_cli(ro, "--limit", "4"), "Read-only file system", "resume")
        one_sentence(rollout_cli(view / "fresh", "--limit", "1"), "Read-only file system")
        # eval reads a read-only run; its reports go elsewhere (or it says why not)
        assert toolgym("eval", str(ro), "--report-dir", str(tmp_path / "eval")).returncode == 0
        one_sentence(toolgym("eval", str(ro)), "Read-only file system", "--report-dir")
        assert keys(load_trajectories(ro)) == expected_keys(2)
    finally:
        subprocess.run(["umount", str(view)], capture_output=True)
    assert rollout_cli(run, "--limit", "4").returncode == 0  # writable again: it resumes
    assert keys(load_trajectories(run)) == expected_keys(4)


# --- 5. plan, partial runs, eval and export on a killed run ----------------------------------------------

DIES = """
import asyncio, json, os, signal, sys
from pathlib import Path
from toolgym.agent.policies import OraclePolicy
from toolgym.agent.rollout import rollout
from toolgym.envs import IN_PROCESS
from toolgym.envs.corpus import load_corpus

out = Path(sys.argv[1])

class Dies(OraclePolicy):
    '''The oracle, killed (SIGKILL) once two parts are committed; notes whether the plan was there first.'''

    async def act(self, messages, tools):
        if not (out / "plan-seen").exists():
            (out / "plan-seen").write_text(json.dumps(json.loads((out / "plan.json").read_text())))
        if len(list((out / "parts").glob("*.parquet"))) >= 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return await super().act(messages, tools)

corpus = load_corpus("reference")
asyncio.run(rollout(corpus, Dies, out, samples_per_task=3, in_flight=1, backend=IN_PROCESS,
                    commit_every=5, progress=False))
"""


@pytest.fixture
def killed_run(tmp_path) -> Path:
    out = tmp_path / "killed"
    done = subprocess.run([sys.executable, "-c", DIES, str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr
    return out


def test_a_killed_run_is_partial_in_eval_and_exports(tmp_path, killed_run):
    run = killed_run
    plan = json.loads((run / "plan-seen").read_text())  # read by the first episode: written before it
    assert plan["episodes"] == ALL and plan["samples_per_task"] == 3 and len(plan["tasks"]) == 22
    rows = load_trajectories(run)
    assert len(rows) == 10 and not (run / "rollout.json").exists()
    progress = run_progress(run)
    assert (progress["planned"], progress["done"], progress["partial"], progress["finished"]) == (
        ALL,
        10,
        True,
        False,
    )

    report = tmp_path / "eval"
    done = toolgym("eval", str(run), "--k", "1", "--report-dir", str(report))
    assert done.returncode == 0, done.stderr
    flag = f"partial: 10 of {ALL} episodes"
    assert flag in done.stdout and flag in (report / "report.md").read_text()
    assert '<p class="partial"><strong>' + flag in (report / "report.html").read_text()
    saved = json.loads((report / "report.json").read_text())["report"]["run"]
    assert (saved["planned"], saved["done"], saved["partial"]) == (ALL, 10, True)

    rl = toolgym("export", "rl", str(run), "--out", str(tmp_path / "rl"))
    assert rl.returncode == 0, rl.stderr
    assert flag in rl.stderr and json.loads(rl.stdout)["groups"] >= 1
    assert (tmp_path / "rl" / "grpo_groups.parquet").exists() and (
        tmp_path / "rl" / "rl_prompts.parquet"
    ).exists()
    sft = toolgym("export", "sft", str(run), "--out", str(tmp_path / "sft"))
    assert sft.returncode == 0 and json.loads(sft.stdout)["samples"] == 10, sft.stderr

    # resumed (the killed rollout's lock died with it), the run is complete and no longer flagged
    assert rollout_cli(run).returncode == 0
    done = toolgym("eval", str(run), "--k", "1", "--json", "--report-dir", str(report))
    assert json.loads(done.stdout)["report"]["run"] == {
        "planned": ALL,
        "done": ALL,
        "finished": True,
        "running": False,
        "partial": False,
        "note": "",
    }
    assert "partial" not in (report / "report.md").read_text()


def test_a_killed_run_without_a_plan_still_evaluates_and_says_what_export_needs(tmp_path, killed_run):
    run = killed_run
    (run / "plan.json").unlink()  # as a run of an older toolgym, killed, leaves it
    done = toolgym("eval", str(run), "--k", "1", "--report-dir", str(tmp_path / "eval"))
    assert done.returncode == 0 and "partial: 10 episodes (the run did not finish" in done.stdout, done.stderr
    one_sentence(toolgym("export", "rl", str(run), "--out", str(tmp_path / "rl")), "pass --corpus")
    given = toolgym("export", "rl", str(run), "--out", str(tmp_path / "rl"), "--corpus", "reference")
    assert given.returncode == 0 and json.loads(given.stdout)["groups"] >= 1, given.stderr
    one_sentence(toolgym("eval", str(tmp_path / "nothing")), "is not a run folder")
