"""Requirement sets: prepared once from wheels, offline, and importable read-only in every backend's sandboxes.

One set is prepared for the whole module from two wheels made here (a package with a module and a data file,
and its dependency), under a package name new to each run, into a cache of this module's own, so every run
prepares and builds for real. That cache shares the built root file system, so no base is rebuilt.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from toolgym.sandbox import BlockingSandboxPool, Limits, SandboxUnavailable, open_sandbox
from toolgym.sandbox.image import default_image, derived_tag, ensure_image
from toolgym.sandbox.paths import cache_dir
from toolgym.sandbox.requirements import (
    NOT_PREPARED,
    REQS_ROOT,
    RequirementsError,
    _unfit_for_sandbox,
    elf_needed,
    manifest,
    prepare,
    prepared,
    requirements_hash,
    site_dir,
    site_path,
    wheels_dir,
)

from ..conftest import backend_or_skip

LIMITS = Limits(memory_mb=256, timeout_s=20)
BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "namespace"]
NO_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_EXTRA_INDEX_URL": "", "PIP_RETRIES": "1"}
"""pip settings where no index answers (port 9 on loopback refuses at once)."""


@dataclass
class Probe:
    name: str
    lines: list[str]
    h: str
    wheels: Path
    """The folder of the two wheels made here (a --find-links folder)."""
    seconds: float


def make_wheel(out: Path, name: str, files: dict[str, str], requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel, written as the format says (PEP 427), version 1.0."""
    dist = f"{name}-1.0.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        **files,
        f"{dist}/METADATA": meta,
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: toolgym-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(text.encode())])
    writer.writerow([f"{dist}/RECORD", "", ""])
    wheel = out / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in {**files, f"{dist}/RECORD": record.getvalue()}.items():
            z.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def own_cache(tmp_path_factory):
    """TOOLGYM_CACHE of this module, with the real cache's built root file system linked in."""
    real = cache_dir()
    root = tmp_path_factory.mktemp("cache")
    if (real / "rootfs").is_dir():
        (root / "rootfs").symlink_to(real / "rootfs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOOLGYM_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def probe(own_cache, tmp_path_factory):
    wheels = tmp_path_factory.mktemp("wheels")
    name = f"tgprobe_{uuid.uuid4().hex[:8]}"
    make_wheel(wheels, f"{name}_dep", {f"{name}_dep/__init__.py": "VALUE = 41\n"})
    make_wheel(
        wheels,
        name,
        {
            f"{name}/__init__.py": (
                "from importlib.resources import files\n\n"
                "def answer():\n    return 42\n\n"
                "def words():\n    return files(__name__).joinpath('data/words.txt').read_text().split()\n"
            ),
            f"{name}/data/words.txt": "alpha beta\n",
        },
        requires=(f"{name}_dep==1.0",),
    )
    lines = [f"{name}==1.0"]
    started = time.monotonic()
    prepare(lines, log=lambda _: None, find_links=[wheels])
    yield Probe(name, lines, requirements_hash(lines), wheels, time.monotonic() - started)
    try:
        from toolgym.sandbox.engine import docker_client

        client = docker_client(timeout=10)
    except SandboxUnavailable:
        return
    for image in client.images.list(filters={"label": f"toolgym.reqs.{requirements_hash(lines)}"}):
        client.images.remove(image.id, force=True)


def import_probe(sb, probe: Probe):
    code = (
        f"import sys; sys.path.insert(0, {site_path(probe.h)!r}); "
        f"import {probe.name} as p, {probe.name}_dep as d; print(p.answer(), d.VALUE, p.words(), p.__file__)"
    )
    return sb.run(["python3", "-c", code])


def test_same_lines_give_the_same_hash():
    h = requirements_hash(["b==1", "a==2"])
    assert len(h) == 12 and int(h, 16) >= 0
    assert requirements_hash(["  a==2", "# a comment", "", "b==1  # pinned", "b==1"]) == h
    assert requirements_hash(["a==2", "b==1.1"]) != h
    # Other parts of toolgym name these sets by this hash: it must not drift.
    assert requirements_hash(["mcp==2.3.0", "mcp-server-time==2026.10.19"]) == "4480ddc2c3fd"
    assert site_path(h) == f"{REQS_ROOT}/{h}"
    with pytest.raises(ValueError, match="12 hex digits"):
        site_path("../../etc")
    with pytest.raises(RequirementsError, match="pip option"):
        requirements_hash(["--index-url https://example.invalid/simple"])


def test_prepare_installs_the_set_once(probe):
    site = site_dir(probe.h)
    assert prepared(probe.h)
    assert (site / probe.name / "__init__.py").is_file()
    assert (site / probe.name / "data" / "words.txt").read_text() == "alpha beta\n"
    assert (site / f"{probe.name}_dep" / "__init__.py").is_file()
    held = manifest(probe.h)
    assert held["requirements"] == probe.lines
    assert held["installed"] == [f"{probe.name}==1.0", f"{probe.name}_dep==1.0"]
    assert sorted(held["wheels"]) == sorted(p.name for p in probe.wheels.iterdir())
    assert all((wheels_dir() / w).is_file() for w in held["wheels"]), "wheels join the host cache"
    if sysconfig.get_python_version() == "3.11":
        assert list((site / probe.name / "__pycache__").glob("__init__.cpython-311.pyc"))
    for path in site.rglob("*"):
        assert path.stat().st_mode & 0o022 == 0, f"{path} is writable by others"
    marker = site / ".toolgym-complete"
    before = marker.stat().st_mtime_ns
    logged = []
    started = time.monotonic()
    assert prepare(probe.lines, log=logged.append) == site
    assert time.monotonic() - started < 1.0 and "present" in logged[0]
    assert marker.stat().st_mtime_ns == before


def test_prepare_again_offline_from_the_wheel_cache(probe, monkeypatch):
    held = manifest(probe.h)
    shutil.rmtree(site_dir(probe.h))
    assert not prepared(probe.h)
    for key, value in NO_INDEX.items():
        monkeypatch.setenv(key, value)
    prepare(probe.lines, log=lambda _: None)  # no find_links: the cache alone
    assert manifest(probe.h) == held


def test_no_index_and_no_cached_wheel_is_one_sentence(probe, monkeypatch):
    for key, value in NO_INDEX.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SandboxUnavailable) as err:
        prepare([f"{probe.name}_absent==1.0"], log=lambda _: None)
    message = str(err.value)
    assert message.startswith("No package index is reachable (http://127.0.0.1:9/simple/")
    assert "--find-links" in message and "\n" not in message


def test_a_requirement_that_does_not_resolve_is_one_sentence(probe, monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_INDEX_URL", tmp_path.as_uri())  # an index that answers and holds nothing
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    with pytest.raises(RequirementsError) as err:
        prepare([f"{probe.name}==9.9"], log=lambda _: None, find_links=[probe.wheels])
    assert str(err.value).startswith(f"{probe.name}==9.9 does not resolve on the package index")
    with pytest.raises(RequirementsError, match="building source releases is off"):
        prepare([f"{probe.name}==9.9"], log=lambda _: None, build_sources=False)


def test_compiled_builds_run_in_the_sandbox_only_when_they_fit(tmp_path):
    import zlib  # a C extension that links libz and the C library

    if not getattr(zlib, "__file__", None):
        pytest.skip("zlib is built into this Python")
    so = Path(zlib.__file__).read_bytes()
    assert {"libz.so.1", "libc.so.6"} <= set(elf_needed(so))
    if shutil.which("readelf"):
        dynamic = subprocess.run(["readelf", "-d", zlib.__file__], capture_output=True, text=True).stdout
        assert sorted(elf_needed(so)) == sorted(
            line.split("[")[1].rstrip("]") for line in dynamic.splitlines() if "(NEEDED)" in line
        )

    def wheel(name: str, data: bytes) -> Path:
        path = tmp_path / f"{name}-1.0-cp311-cp311-linux_x86_64.whl"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr(f"{name}/_speedups.cpython-311-x86_64-linux-gnu.so", data)
        return path

    fits = _unfit_for_sandbox(wheel("fits", so))
    unfit = _unfit_for_sandbox(wheel("unfit", so.replace(b"libz.so.1", b"libq.so.1")))
    glibc = tuple(int(n) for n in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split("."))
    if (sys.implementation.name, sys.version_info[:2], os.uname().machine) == (
        "cpython",
        (3, 11),
        "x86_64",
    ) and (glibc <= (2, 36)):
        assert fits == ""
        assert "links libq.so.1, which the sandbox lacks" in unfit
    else:
        assert fits and unfit  # built for another ABI than the sandbox's
    assert _unfit_for_sandbox(tmp_path / "pure-1.0-py3-none-any.whl") == ""


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_sandbox_imports_the_set(probe, backend_name):
    backend = backend_or_skip(backend_name)
    with open_sandbox(backend, LIMITS, requirements=[probe.h]) as sb:
        assert sb.requirements == frozenset([probe.h])
        r = import_probe(sb, probe)
        assert r.exit_code == 0, r.stderr
        assert r.stdout == f"42 41 ['alpha', 'beta'] {site_path(probe.h)}/{probe.name}/__init__.py\n"
        if backend_name == "docker":
            info = backend.api.inspect_container(sb.handle.extra["container"])
            assert info["Config"]["Image"] == derived_tag(default_image(), [probe.h])


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_agent_code_cannot_change_installed_packages(probe, backend_name):
    backend = backend_or_skip(backend_name)
    site = site_path(probe.h)
    attempts = [
        f"touch {site}/new.py",
        f"echo 'def answer(): return 0' >> {site}/{probe.name}/__init__.py",
        f"rm -rf {site}/{probe.name}",
        f"mv {site}/{probe.name} {site}/moved",
        f"chmod 777 {site}/{probe.name}",
        f"mkdir {REQS_ROOT}/{probe.h[:-1]}0",
        f"rm -rf {REQS_ROOT}/{probe.h}",
    ]
    with open_sandbox(backend, LIMITS, requirements=[probe.h]) as sb:
        for cmd in attempts:
            r = sb.run(cmd)
            assert r.exit_code != 0, f"the sandbox user could: {cmd}"
        # The same changes to a copy the sandbox user owns do work: the refusals above are the folder's.
        for cmd in attempts[:5]:
            r = sb.run(
                f"rm -rf /workspace/copy && cp -r {site} /workspace/copy && {cmd}".replace(
                    site + "/", "/workspace/copy/"
                )
            )
            assert r.exit_code == 0, (cmd, r.stderr)
        assert sb.run("id -u").stdout == "1000\n"
        r = import_probe(sb, probe)
        assert r.stdout.startswith("42 41 "), r.stderr
        if backend_name == "docker":
            stat = sb.run(f"stat -c '%u %a' {site}/{probe.name}/__init__.py {site}/{probe.name}").stdout
            assert stat == "0 644\n0 755\n", "root-owned, writable by root only"


@pytest.mark.docker
def test_pool_sandboxes_hold_the_set_across_resets(probe):
    backend = backend_or_skip("docker")
    with BlockingSandboxPool(1, backend=backend, limits=LIMITS, requirements=[probe.h]) as pool:
        for _ in range(2):
            with pool.lease() as sb:
                assert sb.requirements == frozenset([probe.h])
                assert import_probe(sb, probe).stdout.startswith("42 41 ")
        assert pool.stats.created == 1 and pool.stats.reset >= 1, "the second lease had the reset sandbox"


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_set_not_prepared_names_the_fix(own_cache, backend_name):
    backend = backend_or_skip(backend_name)
    missing = "0123456789ab"
    sentence = NOT_PREPARED.format(h=missing)
    assert sentence == (
        "requirements 0123456789ab are not prepared; run `toolgym sandbox build-image --with <file>`"
    )
    with pytest.raises(SandboxUnavailable) as err:
        open_sandbox(backend, LIMITS, requirements=[missing])
    assert str(err.value) == sentence
    with pytest.raises(SandboxUnavailable) as err:
        BlockingSandboxPool(1, backend=backend, limits=LIMITS, requirements=[missing])
    assert str(err.value) == sentence
    if backend_name == "docker":
        with pytest.raises(SandboxUnavailable) as err:
            ensure_image(backend.client, [missing], log=lambda _: None)
        assert str(err.value) == sentence


@pytest.mark.docker
def test_a_sandbox_without_sets_runs_on_the_base_image():
    backend = backend_or_skip("docker")
    with open_sandbox(backend, LIMITS) as sb:
        assert sb.requirements == frozenset()
        assert (
            backend.api.inspect_container(sb.handle.extra["container"])["Config"]["Image"] == default_image()
        )
        # no set is visible (images built before this fix hold the namespace backend's empty mount point)
        assert sb.run(f"ls -A {REQS_ROOT} 2>/dev/null").stdout_bytes == b""


def toolgym(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "toolgym", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.docker
def test_cli_builds_the_sets_of_an_env_store(probe, tmp_path):
    backend_or_skip("docker")
    store = tmp_path / "store"
    for env, declared in (("with_reqs", probe.lines), ("without", None)):
        (store / env).mkdir(parents=True)
        spec = {"id": env} if declared is None else {"id": env, "requirements": declared}
        (store / env / "env.json").write_text(__import__("json").dumps(spec))
    r = toolgym("sandbox", "build-image", "--with", str(store), "--find-links", str(probe.wheels))
    assert r.returncode == 0, r.stderr
    assert f"requirements {probe.h}: {probe.lines[0]} (from {store / 'with_reqs'})" in r.stdout
    assert f"image {derived_tag(default_image(), [probe.h])} holds requirements {probe.h}" in r.stdout
    r = toolgym("doctor")
    assert f"requirements {probe.h}" in r.stdout and probe.lines[0] in r.stdout
    (store / "without" / "env.json").write_text('{"id": "without", "requirements": "numpy"}')
    r = toolgym("sandbox", "build-image", "--with", str(store))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert '"requirements" must be a list' in r.stderr
