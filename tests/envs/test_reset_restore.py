"""A reset rewrites only what the last episode changed, and whatever an episode did to the scratch folder (edits
in place, chmod, new files and folders, renames, links, xattrs, a changed folder) is gone at the next one: the
folder holds exactly state/ again, byte for byte and mode for mode."""

from __future__ import annotations

import json
import os
import stat

import pytest
from toolgym.envs.inside.envserver import EnvServer

STATE = {
    "data.csv": b"a,b\n1,2\n",
    "pkg/mod.py": b"def f():\n    return 1\n",
    "pkg/sub/deep.txt": b"deep\n",
}


def _env(tmp_path, category: str = "code"):
    env = tmp_path / "env"
    for rel, data in STATE.items():
        (env / "state" / rel).parent.mkdir(parents=True, exist_ok=True)
        (env / "state" / rel).write_bytes(data)
    (env / "tools.py").write_text(
        "from toolgym_env import tool\n\n@tool\ndef noop(ctx) -> str:\n    'Nothing.'\n    return 'ok'\n"
    )
    (env / "env.json").write_text(
        json.dumps(
            {
                "id": "restore_toy",
                "category": category,
                "tools": [
                    {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}
                ],
            }
        )
    )
    return env


def _tree(root) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            data = open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), data)
    return out


def _vandalize(root, tmp_path) -> None:
    """Everything an agent could do to the files it works on."""
    with open(os.path.join(root, "data.csv"), "r+b") as f:  # same size, in place
        f.write(b"x,y")
    os.chmod(os.path.join(root, "pkg", "mod.py"), 0o777)
    os.rename(os.path.join(root, "pkg", "sub", "deep.txt"), os.path.join(root, "pkg", "sub", "moved.txt"))
    os.makedirs(os.path.join(root, "new", "dir"))
    (tmp_path / "outside.txt").write_text("outside")
    os.symlink(tmp_path / "outside.txt", os.path.join(root, "link"))
    os.link(os.path.join(root, "pkg", "mod.py"), os.path.join(root, "hard"))
    try:
        os.setxattr(os.path.join(root, "data.csv"), "user.note", b"left for the next episode")
    except OSError:
        pass  # a file system without user xattrs


@pytest.mark.parametrize("pushed", [False, True], ids=["store", "pushed"])
def test_reset_undoes_every_change(tmp_path, pushed):
    env = _env(tmp_path)
    scratch = str(tmp_path / "scratch")
    if pushed:
        files = {str(p.relative_to(env)): p.read_bytes() for p in env.rglob("*") if p.is_file()}
        server = EnvServer(files=files, scratch=scratch)
    else:
        server = EnvServer(str(env), scratch=scratch)
    server.reset({"id": "t1"})
    pristine = _tree(scratch)
    assert {k for k, v in pristine.items() if v[2] is not None} == set(STATE)
    _vandalize(scratch, tmp_path)
    assert _tree(scratch) != pristine
    server.reset({"id": "t2"})
    assert _tree(scratch) == pristine
    assert os.listxattr(os.path.join(scratch, "data.csv")) == []
    # a second round on the kept files: the snapshot follows what the reset wrote
    _vandalize(scratch, tmp_path)
    server.reset({"id": "t3"})
    assert _tree(scratch) == pristine
    server.close()


def test_untouched_files_are_kept_and_changed_ones_rewritten(tmp_path):
    env = _env(tmp_path)
    scratch = str(tmp_path / "scratch")
    server = EnvServer(str(env), scratch=scratch)
    server.reset({"id": "t1"})

    def ids():  # (inode, ctime): a freed inode number is often given to the next new file
        return {
            rel: (os.stat(os.path.join(scratch, rel)).st_ino, os.stat(os.path.join(scratch, rel)).st_ctime_ns)
            for rel in STATE
        }

    inodes = ids()
    with open(os.path.join(scratch, "data.csv"), "ab") as f:
        f.write(b"3,4\n")
    server.reset({"id": "t2"})
    after = ids()
    assert (
        after["pkg/mod.py"] == inodes["pkg/mod.py"]
        and after["pkg/sub/deep.txt"] == inodes["pkg/sub/deep.txt"]
    )
    assert after["data.csv"] != inodes["data.csv"]
    assert open(os.path.join(scratch, "data.csv"), "rb").read() == STATE["data.csv"]
    server.close()


def test_a_write_that_keeps_size_and_mtime_is_still_undone(tmp_path):
    env = _env(tmp_path)
    scratch = str(tmp_path / "scratch")
    server = EnvServer(str(env), scratch=scratch)
    server.reset({"id": "t1"})
    path = os.path.join(scratch, "pkg", "mod.py")
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(b"DEF")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime set back: only the ctime tells
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns and os.stat(path).st_size == st.st_size
    server.reset({"id": "t2"})
    assert open(path, "rb").read() == STATE["pkg/mod.py"]
    server.close()


def test_the_store_is_read_once(tmp_path):
    """A later change of the store (or of a mounted one) does not reach the episodes of a running server."""
    env = _env(tmp_path)
    scratch = str(tmp_path / "scratch")
    server = EnvServer(str(env), scratch=scratch)
    server.reset({"id": "t1"})
    (env / "state" / "data.csv").write_bytes(b"changed\n")
    os.remove(os.path.join(scratch, "data.csv"))
    server.reset({"id": "t2"})
    assert open(os.path.join(scratch, "data.csv"), "rb").read() == STATE["data.csv"]
    server.close()
