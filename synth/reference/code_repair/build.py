"""Build the code reference environments: a small text-utilities repository with visible tests, and one
environment per injected bug (chosen by the seed), each with an issue-style task, hidden tests that the bug
fails, and a reference fix made with the file tools. Its tools.py is rendered from
`synth/templates/reference/code_repair/tools.py.j2`, whose tools are the code family's (`code/repo_tools.j2`).

    python -m toolgym.synth.reference.code_repair.build OUT_STORE [--seed 0]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from toolgym.envs.spec import EnvLimits, ToolCall

from ...family import Candidate, render_prompt
from ..common import write_env

HERE = Path(__file__).resolve().parent
CORE = '''"""Small text and list utilities."""

import re


def word_count(text):
    """How many whitespace-separated words `text` holds."""
    return len(text.split())


def slugify(text):
    """Lower-case words and digits joined by hyphens: "Hello, World 2" -> "hello-world-2"."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower()))


def median(values):
    """The median of a non-empty list of numbers."""
    s = sorted(values)
    if not s:
        raise ValueError("median of an empty list")
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def chunk(items, size):
    """Split a list into lists of `size` items (the last may be shorter)."""
    if size < 1:
        raise ValueError("size must be at least 1")
    return [items[i:i + size] for i in range(0, len(items), size)]


def title_case(text, minor=("a", "an", "the", "of", "and", "in")):
    """Capitalize words except minor ones; the first word is always capitalized."""
    words = text.split()
    return " ".join(w.capitalize() if i == 0 or w.lower() not in minor else w.lower() for i, w in enumerate(words))
'''
VISIBLE = """import unittest

from textkit.core import chunk, median, slugify, title_case, word_count


class TestCore(unittest.TestCase):
    def test_word_count(self):
        self.assertEqual(word_count("a b  c"), 3)

    def test_slugify(self):
        self.assertEqual(slugify("Hello, World"), "hello-world")

    def test_median_odd(self):
        self.assertEqual(median([3, 1, 2]), 2)

    def test_chunk_even(self):
        self.assertEqual(chunk([1, 2, 3, 4], 2), [[1, 2], [3, 4]])

    def test_title_case(self):
        self.assertEqual(title_case("war and peace"), "War and Peace")


if __name__ == "__main__":
    unittest.main()
"""
VISIBLE_CALLS = [
    ("word_count", ("a b  c",)),
    ("slugify", ("Hello, World",)),
    ("median", ([3, 1, 2],)),
    ("chunk", ([1, 2, 3, 4], 2)),
    ("title_case", ("war and peace",)),
]
"""The calls of the visible tests above, which the verifier also makes (from its own copy)."""
# name: (correct snippet, buggy snippet, issue text, hidden calls: (function, arguments))
BUGS = {
    "median": (
        "else (s[mid - 1] + s[mid]) / 2",
        "else s[mid]",
        "median([1, 2, 3, 4]) returns 3, but the median of an even-length list is the mean of the two "
        "middle values (2.5).",
        [("median", ([1, 2, 3, 4],)), ("median", ([5, 1],))],
    ),
    "chunk": (
        "range(0, len(items), size)",
        "range(0, len(items) - size, size)",
        "chunk([1, 2, 3, 4, 5], 2) loses items: it should return [[1, 2], [3, 4], [5]].",
        [("chunk", ([1, 2, 3, 4, 5], 2)), ("chunk", ([1], 3))],
    ),
    "slugify": (
        'r"[a-z0-9]+"',
        'r"[a-z]+"',
        'slugify("Python 3 guide") gives "python-guide"; digits must be kept: "python-3-guide".',
        [("slugify", ("Python 3 guide",))],
    ),
    "title_case": (
        "if i == 0 or w.lower()",
        "if w.lower()",
        'title_case("the lord of the rings") gives "the Lord of the Rings"; the first word must '
        "always be capitalized.",
        [("title_case", ("the lord of the rings",))],
    ),
}
STILL_RIGHT = [("word_count", ("x y",)), ("median", ([2],))]
"""Calls every hidden test also makes: what the fix must not break."""
PROMPT = "Bug report for textkit: {{ issue }} Fix it in the repository."
DESCRIPTION = (
    "You are a software engineer fixing a bug in the Python repository in the working folder. Read the code, "
    "make the smallest fix, run the tests, then say what you changed without a tool call."
)


def cases(calls: list[tuple[str, tuple]]) -> list[list]:
    """Calls as the verifier's data ([module, function, arguments, what the correct code returns]), the
    expected values computed here by the correct code."""
    from toolgym.envs.inside.toolgym_env import plain

    correct: dict = {}
    exec(compile(CORE, "textkit/core.py", "exec"), correct)
    return [["textkit.core", fn, repr(args), plain(correct[fn](*args))] for fn, args in calls]


def build_one(store: Path, bug: str, seed: int) -> Path:
    env_id = f"code_textkit_{bug}"
    out = store / env_id
    good, bad, issue, _ = BUGS[bug]
    assert CORE.count(good) == 1
    (out / "state" / "textkit").mkdir(parents=True, exist_ok=True)
    (out / "state" / "tests").mkdir(parents=True, exist_ok=True)
    (out / "state" / "textkit" / "__init__.py").write_text('"""textkit: small text and list utilities."""\n')
    (out / "state" / "textkit" / "core.py").write_text(CORE.replace(good, bad))
    (out / "state" / "tests" / "__init__.py").write_text("")
    (out / "state" / "tests" / "test_core.py").write_text(VISIBLE)
    (out / "state" / "README.md").write_text(
        "# textkit\n\nRun the tests: `python3 -m unittest discover -s tests`\n"
    )
    task = Candidate(
        template=f"code_repair/{bug}",
        difficulty=3,
        prompt=[render_prompt(PROMPT, issue=issue)],
        verifier="check_fix",
        params={"hidden_cases": cases(BUGS[bug][3] + STILL_RIGHT), "visible_cases": cases(VISIBLE_CALLS)},
        solution=[
            ToolCall(name="list_files"),
            ToolCall(name="read_file", arguments={"path": "textkit/core.py"}),
            ToolCall(name="replace_in_file", arguments={"path": "textkit/core.py", "old": bad, "new": good}),
            ToolCall(name="run_tests"),
        ],
        answer=f"Fixed {bug} in textkit/core.py; the tests pass.",
    )
    return write_env(
        out, seed, [task], category="code", domain="code_repair", description=DESCRIPTION, source_dir=HERE,
        limits=EnvLimits(call_timeout_s=130.0, max_result_chars=50000, max_steps=40), rendered=("tools.py",),
    )  # fmt: skip


def build(store: str | Path, seed: int = 0, n_envs: int = 2) -> list[Path]:
    """Write `n_envs` environments `<store>/code_textkit_<bug>/`, the bugs chosen by `seed`."""
    bugs = random.Random(seed).sample(sorted(BUGS), n_envs)
    return [build_one(Path(store), bug, seed) for bug in sorted(bugs)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(*build(args.store, args.seed), sep="\n")
