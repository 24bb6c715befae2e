"""The code verifier's tree digest (what "do not modify tests/" and "the package is unchanged" compare) is
injective: a test file's bytes moved into another file, or a file split or joined at a separator, never keeps
the digest; and the digest of the package as shipped equals the one the family renders into verify.py."""

from __future__ import annotations

from pathlib import Path

from toolgym.envs.schema import load_tools_module
from toolgym.synth.code import FAMILY as code
from toolgym.synth.code.tools import package_digest


def _verify(tmp_path: Path):
    key = code.plan("tiny")[0]
    env = code.build_env(tmp_path / "store", key, 0)
    return env, load_tools_module(env / "verify.py", "verify")


def test_moving_bytes_between_files_changes_the_digest(tmp_path):
    _, verify = _verify(tmp_path)
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_a.py").write_bytes(b"def test_a():\n    assert True\n")
    (tests / "test_b.py").write_bytes(b"def test_b():\n    assert False\n")
    before = verify.tree_digest(str(tests))
    # the old framing (name NUL bytes NUL) let test_b.py ride inside test_a.py with the same stream
    b = (tests / "test_b.py").read_bytes()
    (tests / "test_b.py").unlink()
    (tests / "test_a.py").write_bytes((tests / "test_a.py").read_bytes() + b"\0test_b.py\0" + b)
    assert verify.tree_digest(str(tests)) != before
    (tests / "test_a.py").write_bytes(b"def test_a():\n    assert True\n")
    (tests / "test_b.py").write_bytes(b)
    assert verify.tree_digest(str(tests)) == before


def test_the_shipped_package_digest_matches_the_verifier(tmp_path):
    env, verify = _verify(tmp_path)
    pkg = next(p for p in (env / "state").iterdir() if p.is_dir() and p.name != "tests")
    shipped = [(f.name, f.read_bytes()) for f in sorted(pkg.iterdir()) if f.is_file()]
    assert verify.tree_digest(str(pkg)) == verify.PACKAGE_DIGEST == package_digest(shipped)
