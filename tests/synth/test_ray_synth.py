"""Synthesis on Ray writes the same corpus as local processes: every file of a `--ray local` run (environment
folders, task shards, manifest, markers, the report) is byte for byte the local run's with the same seed, also
when it resumes a run that was cut off. Without `ray=` Ray is never imported."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from toolgym.synth.pipeline import synth_envs, synth_tasks
from toolgym.synth.report import write_report

SCALE = "tiny"


def _files(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _synth(out: Path, ray: str | None) -> None:
    # The manifest holds no timings (synth_tasks puts them in `timings` only), so every byte is compared.
    synth_envs(out, seed=3, scale=SCALE, workers=2, progress="none", ray=ray)
    synth_tasks(out, seed=3, scale=SCALE, workers=2, runtime_check=0.0, progress="none", ray=ray)
    write_report(out, md=str(out / "report.md"))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "corpus"
    _synth(out, None)
    return out


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray")
    from toolgym.agent.cluster import connect, disconnect

    connect("local", num_cpus=2)
    yield
    disconnect()


@pytest.mark.slow
@pytest.mark.ray
def test_ray_run_writes_the_local_corpus_byte_for_byte(local_run, ray_cluster, tmp_path):
    out = tmp_path / "corpus"
    _synth(out, "local")
    want, got = _files(local_run), _files(out)
    assert sorted(got) == sorted(want)
    assert any(p.startswith("tasks/") and p.endswith(".parquet") for p in got)
    assert sum(p.endswith("/env.json") for p in got) == 16
    assert [p for p in want if got[p] != want[p]] == []
    assert not (out / ".work" / "staging").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_ray_run_resumes_a_cut_off_run_to_the_same_bytes(local_run, ray_cluster, tmp_path):
    out = tmp_path / "corpus"
    shutil.copytree(local_run, out)
    # Cut off mid-way: two environments never finished (one half written, one absent), their tasks and some
    # others' tasks not admitted, and no shards or manifest yet.
    envs = sorted((out / "envs").iterdir())
    half, gone = envs[0], envs[-1]
    (out / ".work" / "envs" / f"{half.name}.done").unlink()
    (half / "tools.py").write_text("half written")
    (half / "env.json").unlink()
    (out / ".work" / "envs" / f"{gone.name}.done").unlink()
    shutil.rmtree(gone)
    for eid in (half.name, gone.name, envs[3].name, envs[7].name):
        (out / ".work" / "tasks" / f"{eid}.json").unlink()
    shutil.rmtree(out / "tasks")
    (out / "manifest.json").unlink()
    (out / "report.md").unlink()
    _synth(out, "local")
    assert _files(out) == _files(local_run)


def test_without_ray_synthesis_never_imports_it(tmp_path):
    code = (
        "import sys; from toolgym.synth.pipeline import synth_envs, synth_tasks\n"
        f"synth_envs({str(tmp_path)!r}, scale='tiny', workers=1, only=['search'], progress='none')\n"
        f"synth_tasks({str(tmp_path)!r}, scale='tiny', workers=1, only=['search'], sandbox_fraction=0, "
        "runtime_check=0, progress='none')\n"
        "assert 'ray' not in sys.modules, 'ray was imported'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
