"""Shipping environment folders between nodes: same files out as in, the hash checked, hostile archives refused."""

from __future__ import annotations

import io
import tarfile

import pytest
from toolgym.envs.shipping import pack_env, pack_folder, unpack_env, unpack_folder
from toolgym.envs.spec import content_hash


def _env(tmp_path):
    env = tmp_path / "src" / "toolgym-demo-1"
    (env / "state").mkdir(parents=True)
    (env / "env.json").write_text('{"id": "toolgym-demo-1"}')
    (env / "tools.py").write_text("def f():\n    return 1\n")
    (env / "state" / "db.txt").write_bytes(b"\x00\x01rows")
    (env / "tools.py").chmod(0o755)
    return env


def test_round_trip_keeps_bytes_and_modes(tmp_path):
    env = _env(tmp_path)
    got = unpack_folder(pack_folder(env), tmp_path / "dst")
    assert got.name == env.name
    for f in env.rglob("*"):
        twin = got / f.relative_to(env)
        assert twin.exists()
        if f.is_file():
            assert twin.read_bytes() == f.read_bytes()
            assert twin.stat().st_mode & 0o777 == f.stat().st_mode & 0o777
    assert pack_folder(env) == pack_folder(env)


def test_unpack_env_checks_the_hash_and_reuses_the_cache(tmp_path):
    env = _env(tmp_path)
    digest, data = pack_env(env)
    assert digest == content_hash(env)
    cache = tmp_path / "cache"
    first = unpack_env(env.name, digest, data, cache)
    assert first == cache / digest / env.name and content_hash(first) == digest
    assert unpack_env(env.name, digest, b"not even a tar", cache) == first  # cached: nothing unpacked
    with pytest.raises(RuntimeError, match="other contents"):
        unpack_env(env.name, "0" * len(digest), data, cache)
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no staging left behind


def _tar(*members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def test_hostile_archives_cannot_write_outside(tmp_path):
    escape = tarfile.TarInfo("env/../../escaped.txt")
    escape.size = 2
    with pytest.raises(tarfile.TarError):
        unpack_folder(_tar((tarfile.TarInfo("env"), None), (escape, b"hi")), tmp_path / "a")
    link = tarfile.TarInfo("env/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(tarfile.TarError):
        unpack_folder(_tar((link, None)), tmp_path / "b")
    assert not (tmp_path / "escaped.txt").exists()
    two = [tarfile.TarInfo("a"), tarfile.TarInfo("b")]
    for t in two:
        t.size = 1
    with pytest.raises(ValueError, match="top-level"):
        unpack_folder(_tar(*[(t, b"x") for t in two]), tmp_path / "c")
