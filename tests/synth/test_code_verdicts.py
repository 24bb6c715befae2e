"""The code verifier judges each distinct repository once per server: the same files and cases give the kept
verdict without a new interpreter, any changed byte or mode is judged afresh, and nothing is kept where the
files alone do not fix the behaviour (links, bytecode, special files) or where the child gave no results."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from toolgym.envs.inside.toolgym_env import Context
from toolgym.envs.schema import load_tools_module
from toolgym.synth.code import FAMILY as code
from toolgym.synth.code.library import library
from toolgym.synth.code.repo import compose

SEED = 0


class Judge:
    """A code env's verify.py on a scratch copy of its repository, counting the interpreters it starts."""

    def __init__(self, tmp_path: Path) -> None:
        key = code.plan("tiny")[0]
        env = code.build_env(tmp_path / "store", key, SEED)
        self.repo = compose(key, SEED)
        self.cand = code.make_tasks(env, key, SEED, 1)[0]
        self.verify = load_tools_module(env / "verify.py", "verify")
        self.children = 0
        real = self.verify.same_behaviour

        def counted(*args, **kwargs):
            self.children += 1
            return real(*args, **kwargs)

        self.verify.same_behaviour = counted
        self.state = tmp_path / "state"
        shutil.copytree(env / "state", self.state)
        for fn in self.cand.extra["issue"]["bugs"]:  # the reference's fix, written directly
            self.edit(self.repo.path_of(fn), self.repo.bugs[fn].source, library()[fn].source)

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.state / rel
        text = path.read_text()
        assert text.count(old) == 1
        path.write_text(text.replace(old, new))

    def check(self) -> tuple[float, str]:
        calls = [{"name": "run_tests", "ok": True}]
        return self.verify.check_fix(Context(str(self.state), "t"), "Done.", calls, **self.cand.params)


@pytest.fixture
def judge(tmp_path):
    return Judge(tmp_path)


def test_the_same_repository_is_judged_once_and_a_changed_byte_anew(judge):
    assert judge.check()[0] == 1.0 and judge.children == 1
    assert judge.check()[0] == 1.0 and judge.children == 1
    with open(judge.state / "README.md", "a") as f:
        f.write(" ")
    assert judge.check()[0] == 1.0 and judge.children == 2
    (judge.state / "README.md").chmod(0o600)
    assert judge.check()[0] == 1.0 and judge.children == 3
    fn = judge.cand.extra["issue"]["bugs"][0]
    bug_again = judge.repo.bugs[fn].source + "  # back"  # the shipped bug, in a package that differs
    judge.edit(judge.repo.path_of(fn), library()[fn].source, bug_again)
    reward, reason = judge.check()
    assert reward == 0.0 and "hidden tests fail" in reason and judge.children == 4
    assert judge.check() == (reward, reason) and judge.children == 4  # a wrong result is data: kept


def test_a_child_that_gave_no_results_is_judged_again(judge):
    init = f"{judge.repo.pkg}/__init__.py"
    first = (judge.state / init).read_text().splitlines()[0]
    judge.edit(init, first, first + "\nimport os\nos._exit(0)")
    for n in (1, 2):
        reward, reason = judge.check()
        assert reward == 0.0 and "no readable results" in reason and judge.children == n


@pytest.mark.parametrize("kind", ["link", "bytecode", "fifo"])
def test_links_bytecode_and_special_files_are_never_kept(judge, tmp_path, kind):
    pkg = judge.state / judge.repo.pkg
    if kind == "link":
        (tmp_path / "outside.py").write_text("X = 1\n")
        os.symlink(tmp_path / "outside.py", pkg / "extra.py")
    elif kind == "bytecode":
        (pkg / "__pycache__").mkdir()
        (pkg / "__pycache__" / "extra.cpython-311.pyc").write_bytes(b"\0" * 16)
    else:
        os.mkfifo(pkg / "pipe")
    assert judge.verify.repository_key(str(judge.state), []) is None
    assert judge.check()[0] == 1.0 and judge.check()[0] == 1.0 and judge.children == 2
