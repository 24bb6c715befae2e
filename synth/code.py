"""The code family: the reference code-repair environment (envs/reference/code_repair) generalized into
generated repositories with injected bugs.

Data. `templates/code/library.py` holds ~65 small, correct pure-Python utilities in sections (text, lists,
maths, stats, dates as (y, m, d) tuples, parsing, intervals, matrices, money in cents); `INPUTS` below has an
input generator for each. Bugs are mutants of a function's source: an operator on its AST (comparison flip,
wrong arithmetic operator, off-by-one constant or bound, dropped or inverted condition, dropped branch, swapped
arguments, min/max swap, wrong default) rewrites one source span. A mutant is admitted only when it changes the
output on some generated inputs, never raises TypeError and always terminates (a trace budget), so hidden tests
whose expected values come from the correct function fail on it.

An environment is a repository: a package named from a fixed word list, 2-4 modules (one per library section)
holding 6-10 functions (callers pull in what they call), a README, visible tests in tests/ for the functions
that neither are buggy nor call a buggy one (so they pass at the start), and 3-5 bugs, one per function, no
bug reachable from another. A variant fixes

- the tool set (from `TOOL_AXES`): a paged, line-numbered `read_file` or the reference's whole-file one, an
  optional `search_code`, an optional `run_shell`, `write_file` exposed or not, the edit tool named
  `replace_in_file(path, old, new)` or `apply_edit(path, search, replace)`, `run_tests()` or `run_tests(path)`;
  every tool is rendered from the reference tools' source where the reference has it;
- the rules (verified): the original visible tests must pass (always), and optionally tests/ untouched, no
  file created or deleted, run_tests called after the last edit;
- the data: the repository.

Tasks are issues from jinja2 templates, each with a failing call computed from the correct vs the buggy
function; the verifier runs the task's hidden tests and the original visible tests in one interpreter.
Difficulty: 1 the issue names the function, its file and the failing call; 2 the function and the call only;
3 a symptom only (a caller of the buggy function fails); 4 two bugs in one issue; 5 three wrong results, shown
through callers where the repository has them. The reference solution locates (search_code or list_files),
reads, edits with replace_in_file/apply_edit (a snippet occurring exactly once), runs the tests and ends with
answer text (no submit tool).
"""

from __future__ import annotations

import ast
import calendar
import copy
import json
import random
import re
import shutil
import sys
import textwrap
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from toolgym.envs.schema import load_tools_module, tools_from_module
from toolgym.envs.spec import EnvLimits, EnvSpec, Provenance, ToolCall, write_env_spec

from .family import TEMPLATES, jinja, prompt_template

NAME = "code"
CATEGORY = "code"
VERSION = "1"
SCALES = {"tiny": (2, 4), "demo": (4, 8), "small": (8, 12), "full": (60, 20)}
"""scale -> (environments, candidate tasks per environment). Full: 60 repositories of 3-5 bugs give ~20
candidates each (one issue per bug and level, bug pairs and triples), ~1,100 tasks after validation. Every
validation episode runs Python subprocesses (tests), so the counts stay modest."""

LIBRARY = TEMPLATES / "code" / "library.py"
LIMITS = EnvLimits(call_timeout_s=130.0, max_result_chars=50000, max_steps=40)  # as the reference's

PREFIXES = ["tidy", "quick", "mini", "neat", "plain", "bright", "swift", "lean", "calm", "bold"]
SUFFIXES = ["kit", "tools", "utils", "lib", "box", "bits", "forge", "works"]
MODULE_NAMES = {
    "text": ["text", "strings", "wording"],
    "lists": ["lists", "seqs", "listtools"],
    "maths": ["maths", "numbers", "arith"],
    "stats": ["stats", "measures", "averages"],
    "dates": ["dates", "cal", "datetools"],
    "parsing": ["parsing", "parsers", "readers"],
    "intervals": ["intervals", "spans", "ranges"],
    "matrices": ["matrix", "grids", "linalg"],
    "money": ["money", "billing", "pricing"],
}
GROUP_DOCS = {
    "text": "Text helpers: slugs, wrapping, casing and small encodings.",
    "lists": "List helpers: chunking, de-duplication, rotation and running values.",
    "maths": "Integer and arithmetic helpers.",
    "stats": "Descriptive statistics over lists of numbers.",
    "dates": "Calendar helpers over (year, month, day) tuples.",
    "parsing": "Parsers and formatters for small text formats.",
    "intervals": "Helpers for half-open (start, end) intervals.",
    "matrices": "Matrices as lists of rows.",
    "money": "Money helpers; amounts are integers in cents.",
}
GROUPS = list(MODULE_NAMES)
TOOL_AXES = ("paged_read", "search_code", "no_shell", "apply_edit", "test_filter", "no_write_file")
"""Bits of the tool-set index; index 0 is the reference tool set."""
RULES = ("keep_tests", "keep_files", "test_after_edit")
PROMPTS = {
    "located": [
        "Bug report for {{ pkg }}: in {{ path }}, `{{ call }}` {{ got }}, but it should return {{ want }}. "
        "Please fix `{{ fn }}`.",
        "{{ path }}: `{{ fn }}` is broken. `{{ call }}` {{ got }} instead of returning {{ want }}. Could you fix "
        "it in the repository?",
    ],
    "named": [
        "`{{ fn }}` in {{ pkg }} gives a wrong result: `{{ call }}` {{ got }}; it should return {{ want }}. "
        "Find the bug and fix it.",
        "Users of {{ pkg }} report that {{ fn }}() misbehaves: for `{{ call }}` they expect {{ want }}. Please "
        "track the bug down and fix it.",
    ],
    "symptom": [
        "Something is off in {{ pkg }}: `{{ call }}` {{ got }} when it should return {{ want }}. Find the root "
        "cause and fix it there.",
        "Since the last change to {{ pkg }}, `{{ call }}` {{ got }} (expected {{ want }}). Please find out why "
        "and fix the underlying bug.",
    ],
    "pair": [
        "Two bugs were reported against {{ pkg }}:\n1. `{{ a.call }}` {{ a.got }}; it should return "
        "{{ a.want }}.\n2. `{{ b.call }}` {{ b.got }}; it should return {{ b.want }}.\nPlease fix both.",
        "Please fix {{ a.fn }} and {{ b.fn }} in {{ pkg }}: `{{ a.call }}` should return {{ a.want }} and "
        "`{{ b.call }}` should return {{ b.want }}, but neither does.",
    ],
    "report": [
        "QA found {{ items | length }} wrong results in {{ pkg }}:\n{% for x in items %}- `{{ x.call }}` "
        "{{ x.got }} instead of returning {{ x.want }}\n{% endfor %}Find the root causes and fix them all.",
        "Release blocker for {{ pkg }}; each of these calls is wrong:\n{% for x in items %}* `{{ x.call }}` "
        "(expected {{ x.want }}; it {{ x.got }})\n{% endfor %}Please fix every underlying bug.",
    ],
}
LEVEL = {"located": 1, "named": 2, "symptom": 3, "pair": 4, "report": 5}
N_INPUTS = 40
"""Inputs generated per function (for admission, hidden tests, visible tests and issue examples)."""
TRACE_BUDGET = 20000
"""Trace events a mutant may spend on one input; beyond it counts as not terminating and rejects the mutant."""


# -- the library ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Func:
    name: str
    group: str
    source: str
    """From its `def` line to its last line, dedented (top-level already)."""
    deps: tuple[str, ...]
    """Library functions it calls directly."""
    imports: tuple[str, ...]
    """Stdlib modules it uses."""


@cache
def library() -> dict[str, Func]:
    """Every function of library.py, in file order; its group is the `# -- <group>` section it sits in."""
    text = LIBRARY.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    modules = {a.name for node in tree.body if isinstance(node, ast.Import) for a in node.names}
    sections = [(i + 1, m.group(1)) for i, line in enumerate(lines) if (m := re.match(r"# -- (\w+)", line))]
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    names = {n.name for n in defs}
    out = {}
    for node in defs:
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        out[node.name] = Func(
            name=node.name,
            group=[g for line, g in sections if line < node.lineno][-1],
            source="\n".join(lines[node.lineno - 1 : node.end_lineno]),
            deps=tuple(sorted(used & names - {node.name})),
            imports=tuple(sorted(used & modules)),
        )
    return out


def closure(name: str) -> list[str]:
    """The function and everything it calls, transitively, in library order."""
    lib, todo, seen = library(), [name], set()
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += lib[n].deps
    return [n for n in lib if n in seen]


# -- inputs --------------------------------------------------------------------------------------------------
WORDS = ["apple", "River", "the", "of", "a", "and", "in", "stone", "quick", "BROWN", "an", "fox", "Lake"]
WORDS += ["data", "x", "moon", "zebra", "sun", "tea", "night", "over", "old", "map", "blue"]


def _sentence(r: random.Random, lo: int = 1, hi: int = 7) -> str:
    return " ".join(r.choice(WORDS) for _ in range(r.randint(lo, hi)))


def _ints(r: random.Random, lo: int, hi: int, nlo: int = 0, nhi: int = 7) -> list[int]:
    return [r.randint(lo, hi) for _ in range(r.randint(nlo, nhi))]


def _date(r: random.Random) -> tuple[int, int, int]:
    year = r.choice([r.randint(1890, 2110), r.choice([1900, 2000, 2024, 2100, 2023])])
    month = r.randint(1, 12)
    return (year, month, r.choice([1, calendar.monthrange(year, month)[1], r.randint(1, 28)]))


def _near_dates(r: random.Random) -> tuple:
    a, b = _date(r), _date(r)
    return tuple(sorted([a, (a[0] + r.randint(0, 2), *b[1:])]))


def _interval(r: random.Random, lo: int = 0, hi: int = 24) -> tuple[int, int]:
    start = r.randint(lo, hi - 1)
    return (start, r.randint(start + 1, min(hi, start + 8)))


def _matrix(r: random.Random, rows: int, cols: int) -> list[list[int]]:
    return [[r.randint(-4, 6) for _ in range(cols)] for _ in range(rows)]


def _text(r: random.Random) -> str:
    parts = [r.choice(WORDS + ["2", "10", "-", ",", "!", "  ", "x1"]) for _ in range(r.randint(1, 6))]
    return " ".join(parts)


def _runs(r: random.Random) -> str:
    return "".join(r.choice("aabbc ") * r.randint(1, 4) for _ in range(r.randint(0, 4)))


def _versions(r: random.Random) -> tuple[str, str]:
    a = [r.randint(0, 12) for _ in range(r.randint(1, 3))]
    b = list(a) if r.random() < 0.3 else [r.randint(0, 12) for _ in range(r.randint(1, 3))]
    if r.random() < 0.3:
        b.append(0)
    return (".".join(map(str, a)), ".".join(map(str, b)))


def _ranges(r: random.Random) -> str:
    parts = []
    for _ in range(r.randint(1, 4)):
        lo = r.randint(0, 20)
        parts.append(f"{lo}-{lo + r.randint(0, 4)}" if r.random() < 0.6 else str(lo))
    return ",".join(parts)


def _kv(r: random.Random) -> tuple:
    sep = r.choice([";", ";", ","])
    parts = [f"{r.choice(['a', 'b', 'key', 'x1'])} = {r.choice(['1', 'two', 'on', ''])}" for _ in range(3)]
    parts.insert(r.randint(0, 3), r.choice(["", " "]))
    text = sep.join(p.replace(" = ", r.choice(["=", " = "])) for p in parts)
    return (text,) if sep == ";" and r.random() < 0.5 else (text, sep)


def _duration(r: random.Random) -> str:
    units = [u for u in "hms" if r.random() < 0.6] or ["s"]
    return "".join(f"{r.randint(0, 90)}{u}" for u in units)


def _lines(r: random.Random) -> list[tuple[int, int]]:
    return [(r.randint(1, 5), r.randint(1, 5000)) for _ in range(r.randint(0, 4))]


def _busy(r: random.Random) -> tuple:
    start, end = r.randint(0, 6), r.randint(18, 24)
    return ([_interval(r, start, end) for _ in range(r.randint(0, 4))], start, end)


def _square(r: random.Random) -> list[list[int]]:
    n = r.randint(1, 3)
    return _matrix(r, n, n)


def _mat_pair(r: random.Random) -> tuple:
    n, k, m = r.randint(1, 3), r.randint(1, 3), r.randint(1, 3)
    return (_matrix(r, n, k), _matrix(r, k, m))


def _opt(r: random.Random, required: tuple, optional) -> tuple:
    """The required arguments, plus the optional one half of the time (so defaults get exercised)."""
    return required + ((optional,) if r.random() < 0.5 else ())


INPUTS = {  # function -> a generator of its positional arguments, from a seeded Random
    # text
    "slugify": lambda r: (_text(r),),
    "truncate": lambda r: _opt(r, (_sentence(r), r.randint(0, 20)), r.choice(["...", "~", ".."])),
    "wrap_words": lambda r: (_sentence(r, 1, 9), r.randint(3, 14)),
    "title_case": lambda r: (_sentence(r, 1, 7),),
    "caesar": lambda r: (_text(r), r.randint(-30, 30)),
    "run_length": lambda r: (_runs(r),),
    "initials": lambda r: (_sentence(r, 1, 4),),
    "word_freq": lambda r: _opt(
        r, (" ".join(r.choice(WORDS[:8]) for _ in range(r.randint(1, 9))),), r.randint(1, 5)
    ),
    "headline": lambda r: _opt(r, (_sentence(r, 1, 8),), r.randint(5, 30)),
    "slug_list": lambda r: (
        [_text(r) for _ in range(r.randint(0, 4))] + [r.choice(WORDS)] * r.randint(0, 2),
    ),
    "wrap_title": lambda r: (_sentence(r, 1, 9), r.randint(3, 14)),
    # lists
    "chunk": lambda r: (_ints(r, 0, 9), r.randint(1, 4)),
    "dedupe": lambda r: (
        r.choice([_ints(r, 0, 4, 0, 9), [r.choice("abcab") for _ in range(r.randint(0, 8))]]),
    ),
    "rotate": lambda r: (_ints(r, 0, 9), r.randint(-9, 9)),
    "pairwise_diffs": lambda r: (_ints(r, -9, 20),),
    "top_k": lambda r: (_ints(r, -9, 20), r.randint(0, 5)),
    "running_total": lambda r: (_ints(r, -9, 20),),
    "interleave": lambda r: (_ints(r, 0, 9, 0, 5), [r.choice("abcdef") for _ in range(r.randint(0, 5))]),
    "moving_average": lambda r: (v := _ints(r, -9, 20, 1, 8), r.randint(1, len(v))),
    "smooth_trend": lambda r: _opt(r, (v := _ints(r, -9, 20, 3, 9),), r.randint(1, len(v))),
    "chunk_means": lambda r: (_ints(r, 0, 20, 1, 9), r.randint(1, 4)),
    "top_total": lambda r: (_ints(r, -9, 20), r.randint(0, 5)),
    "rotated_chunks": lambda r: (_ints(r, 0, 9), r.randint(-9, 9), r.randint(1, 4)),
    # maths
    "clamp": lambda r: (r.randint(-15, 25), lo := r.randint(-5, 10), r.randint(lo, lo + 10)),
    "gcd": lambda r: (r.randint(-60, 90), r.randint(0, 90)),
    "lcm": lambda r: (r.randint(0, 30), r.randint(0, 30)),
    "is_prime": lambda r: (r.randint(-3, 130),),
    "count_primes": lambda r: (r.randint(0, 60),),
    "digit_sum": lambda r: (r.randint(-99999, 99999),),
    "percent_change": lambda r: (r.choice([-1, 1]) * r.randint(1, 200), r.randint(-200, 400)),
    "hypotenuse": lambda r: (r.randint(0, 30), r.randint(0, 30)),
    "reduce_fraction": lambda r: (r.randint(-60, 60), r.choice([-1, 1]) * r.randint(1, 60)),
    # stats
    "mean": lambda r: (_ints(r, -9, 30, 1, 8),),
    "median": lambda r: (_ints(r, -9, 30, 1, 8),),
    "variance": lambda r: (_ints(r, -9, 30, 1, 8),),
    "mode": lambda r: (_ints(r, 0, 5, 1, 9),),
    "value_range": lambda r: (_ints(r, -9, 30, 1, 8),),
    "summary": lambda r: (_ints(r, -9, 30, 1, 8),),
    "spread_ratio": lambda r: (_ints(r, 1, 40, 1, 8),),
    "center_gap": lambda r: (_ints(r, -9, 30, 1, 8),),
    # dates
    "is_leap": lambda r: (
        r.choice([r.randint(1600, 2400), 100 * r.randint(16, 24), 4 * r.randint(400, 600)]),
    ),
    "days_in_month": lambda r: _date(r)[:2],
    "day_of_year": lambda r: (_date(r),),
    "add_days": lambda r: (_date(r), r.randint(0, 400)),
    "weekday": lambda r: (_date(r),),
    "days_between": lambda r: tuple(sorted([_date(r), _date(r)])) if r.random() < 0.3 else _near_dates(r),
    "format_date": lambda r: (_date(r),),
    "next_weekday": lambda r: (_date(r), r.randint(0, 6)),
    # parsing
    "parse_kv": _kv,
    "parse_duration": lambda r: (_duration(r),),
    "format_duration": lambda r: (
        r.choice([r.randint(0, 20000), 60 * r.randint(0, 200), 3600 * r.randint(0, 5)]),
    ),
    "parse_version": lambda r: (_versions(r)[0],),
    "compare_versions": _versions,
    "parse_ranges": lambda r: (_ranges(r),),
    "normalize_duration": lambda r: (_duration(r),),
    # intervals
    "overlaps": lambda r: (_interval(r, 0, 12), _interval(r, 0, 12)),
    "merge_intervals": lambda r: ([_interval(r, 0, 16) for _ in range(r.randint(0, 5))],),
    "covered_length": lambda r: ([_interval(r, 0, 16) for _ in range(r.randint(0, 5))],),
    "free_slots": _busy,
    "clip_interval": lambda r: (_interval(r), lo := r.randint(0, 20), r.randint(lo + 1, 24)),
    "any_overlap": lambda r: ([_interval(r, 0, 30) for _ in range(r.randint(0, 4))],),
    # matrices
    "identity": lambda r: (r.randint(0, 4),),
    "transpose": lambda r: (_matrix(r, r.randint(1, 3), r.randint(1, 3)),),
    "mat_mul": _mat_pair,
    "mat_power": lambda r: (_square(r), r.randint(0, 4)),
    "trace": lambda r: (_square(r),),
    "row_maxima": lambda r: (_matrix(r, r.randint(1, 4), r.randint(1, 4)),),
    "gram": lambda r: (_matrix(r, r.randint(1, 3), r.randint(1, 3)),),
    "trace_of_power": lambda r: (_square(r), r.randint(0, 4)),
    # money
    "apply_discount": lambda r: (r.randint(0, 100000), r.randint(0, 100)),
    "split_bill": lambda r: (r.randint(0, 10000), r.randint(1, 7)),
    "format_cents": lambda r: (r.choice([r.randint(-2000000, 2000000), r.randint(-999, 999)]),),
    "order_total": lambda r: _opt(r, (_lines(r),), r.choice([0, 5, 10, 19, 25])),
    "restock": lambda r: (
        {w.lower(): r.randint(0, 9) for w in r.sample(WORDS, r.randint(0, 5))},
        r.randint(0, 9),
    ),
    "invoice": lambda r: _opt(r, (_lines(r), r.randint(0, 50)), r.choice([0, 5, 10, 19, 25])),
    "shares_text": lambda r: (r.randint(0, 500000), r.randint(1, 6)),
    "discounted_shares": lambda r: (r.randint(0, 100000), r.randint(0, 100), r.randint(1, 6)),
}


# -- running library code (host side: only the library's own functions and their mutants) -------------------
class _Budget(BaseException):
    """A mutant ran past TRACE_BUDGET trace events on one input (BaseException: nothing catches it)."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    value: object = None
    error: str = ""

    def phrase(self) -> str:
        """As an issue says it: "returns [1, 2]" or "raises IndexError (list index out of range)"."""
        return f"returns {self.value!r}" if self.ok else f"raises {self.error}"

    def same(self, other: Outcome) -> bool:
        return self.ok and other.ok and self.value == other.value


def namespace(names: list[str], override: dict[str, str] | None = None) -> dict:
    """A module namespace holding the functions `names` (sources from `override` where given)."""
    lib = library()
    ns: dict = {"__name__": "library"}
    for mod in sorted({m for n in names for m in lib[n].imports}):
        ns[mod] = __import__(mod)
    for n in names:
        exec(compile((override or {}).get(n, lib[n].source), f"<{n}>", "exec"), ns)
    return ns


def run(fn, args: tuple, traced: bool) -> Outcome | None:
    """One call on a copy of `args`; None when it runs past the trace budget or raises TypeError (a mutant
    that does is rejected: such bugs are not plausible). `traced` only for mutated code."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        count += 1
        if count > TRACE_BUDGET:
            raise _Budget
        return tracer

    if traced:
        sys.settrace(tracer)
    try:
        return Outcome(True, fn(*copy.deepcopy(args)))
    except (_Budget, TypeError, RecursionError):
        return None
    except Exception as exc:  # noqa: BLE001 - any other error is a visible wrong outcome
        return Outcome(False, error=f"{type(exc).__name__} ({exc})" if str(exc) else type(exc).__name__)
    finally:
        if traced:
            sys.settrace(None)


def call_text(name: str, args: tuple) -> str:
    return f"{name}({', '.join(repr(a) for a in args)})"


@cache
def inputs(name: str, salt: str) -> tuple[tuple, ...]:
    """Distinct generated inputs of a function on which the correct code returns normally."""
    rng = random.Random(f"code:inputs:{name}:{salt}")
    fn = namespace(closure(name))[name]
    out, seen = [], set()
    for _ in range(N_INPUTS * 2):  # small input spaces (identity's n) give fewer
        args = INPUTS[name](rng)
        if repr(args) not in seen:
            seen.add(repr(args))
            if run(fn, args, traced=False).ok:
                out.append(args)
        if len(out) == N_INPUTS:
            break
    return tuple(out)


# -- mutation operators ------------------------------------------------------------------------------------
CMP_FLIP = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">")}
CMP_FLIP |= {
    ast.Eq: ("==", "!="),
    ast.NotEq: ("!=", "=="),
    ast.In: ("in", "not in"),
    ast.NotIn: ("not in", "in"),
}
BIN_SWAP = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.FloorDiv: ("//", "/"), ast.Div: ("/", "//")}
BIN_SWAP |= {ast.Mod: ("%", "//"), ast.Mult: ("*", "+")}
NO_SWAP = {"range", "round", "isinstance", "enumerate", "getattr", "print"}
STR_DEFAULTS = {";": ",", ",": ";", "...": ".."}
NONSENSE = [r"[-+]=? 0\b(?!\.)", r"-0\b"]
"""Patterns no programmer writes (`x + 0`, `n -= 0`, `s[-0]`): a mutant adding one is dropped."""


@dataclass(frozen=True)
class Mutant:
    name: str
    operator: str
    source: str
    """The whole mutated function."""


def mutation_sites(src: str) -> list[tuple[str, int, int, str]]:
    """(operator, start, end, replacement) for every way to mutate one function's source: each rewrites one
    span of the text, so the rest of the function keeps its exact formatting."""
    fn = ast.parse(src).body[0]
    starts = [0]
    for line in src.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def span(node) -> tuple[int, int]:
        return starts[node.lineno - 1] + node.col_offset, starts[node.end_lineno - 1] + node.end_col_offset

    def seg(node) -> str:
        a, b = span(node)
        return src[a:b]

    out = []

    def in_gap(op: str, left, right, old: str, new: str) -> None:
        a, b = span(left)[1], span(right)[0]
        i = src.find(old, a, b)
        if i >= 0:
            out.append((op, i, i + len(old), new))

    for node in ast.walk(fn):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, op in enumerate(node.ops):
                if type(op) in CMP_FLIP:
                    in_gap("comparison", operands[i], operands[i + 1], *CMP_FLIP[type(op)])
        elif isinstance(node, ast.BinOp) and type(node.op) in BIN_SWAP:
            in_gap("operator", node.left, node.right, *BIN_SWAP[type(node.op)])
        elif isinstance(node, ast.AugAssign) and type(node.op) in BIN_SWAP:
            old, new = BIN_SWAP[type(node.op)]
            in_gap("operator", node.target, node.value, old + "=", new + "=")
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            a, b = span(node)
            out += [("off_by_one", a, b, str(node.value + d)) for d in (1, -1)]
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            out.append(("constant", *span(node), str(not node.value)))
        elif isinstance(node, ast.Slice):
            for bound in (node.lower, node.upper):
                if isinstance(bound, (ast.Name, ast.Call, ast.Subscript)):
                    out += [("off_by_one", *span(bound), f"{seg(bound)} {d} 1") for d in "+-"]
        elif isinstance(node, ast.Call):
            out += _call_sites(node, span, seg)
        elif isinstance(node, ast.BoolOp) and len(node.values) == 2:
            old, new = (" and ", " or ") if isinstance(node.op, ast.And) else (" or ", " and ")
            in_gap("condition", node.values[0], node.values[1], old, new)
            out += [("condition", *span(node), seg(v)) for v in node.values]
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append(("condition", *span(node), seg(node.operand)))
        elif isinstance(node, ast.IfExp):
            out += [("branch", *span(node), seg(v)) for v in (node.body, node.orelse)]
        elif isinstance(node, ast.arguments):
            out += _default_sites(node, span, seg)
        for body in (getattr(node, "body", None), getattr(node, "orelse", None)):
            if isinstance(body, list) and len(body) > 1:  # a guard clause dropped: its whole lines go
                for stmt in body:
                    if _guard(stmt):
                        out.append(("branch", starts[stmt.lineno - 1], starts[stmt.end_lineno], ""))
    return out


def _guard(stmt) -> bool:
    simple = (ast.Return, ast.Raise, ast.Continue, ast.Break)
    return (
        isinstance(stmt, ast.If)
        and not stmt.orelse
        and len(stmt.body) == 1
        and isinstance(stmt.body[0], simple)
    )


def _call_sites(node: ast.Call, span, seg) -> list:
    out = []
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name in ("min", "max"):
        out.append(("min_max", *span(node.func), "max" if name == "min" else "min"))
    if name == "range":
        for arg in node.args:
            if isinstance(arg, (ast.Name, ast.Call, ast.Subscript)):
                out += [("off_by_one", *span(arg), f"{seg(arg)} {d} 1") for d in "+-"]
    module_call = isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
    positional = [a for a in node.args if not isinstance(a, ast.Starred)]
    if len(positional) == len(node.args) >= 2 and name not in NO_SWAP and not module_call:
        a, b = node.args[0], node.args[1]
        start, end = span(a)[0], span(b)[1]
        between = seg(node)[span(a)[1] - span(node)[0] : span(b)[0] - span(node)[0]]
        out.append(("arguments", start, end, seg(b) + between + seg(a)))
    return out


def _default_sites(node: ast.arguments, span, seg) -> list:
    out = []
    for d in node.defaults:
        if isinstance(d, ast.Constant) and d.value in STR_DEFAULTS:
            out.append(("default", *span(d), repr(STR_DEFAULTS[d.value]).replace("'", '"')))
        elif isinstance(d, ast.Tuple) and len(d.elts) >= 3:
            out.append(("default", *span(d), "(" + ", ".join(seg(e) for e in d.elts[:-1]) + ")"))
    return out


@cache
def mutants(name: str) -> tuple[Mutant, ...]:
    """The admitted mutants of a library function: they differ from the correct function on some generated
    inputs, never raise TypeError and always terminate; one per distinct mutated source."""
    f = library()[name]
    cases = inputs(name, "admission")
    correct = namespace(closure(name))[name]
    want = [run(correct, a, traced=False) for a in cases]
    out, seen = [], set()
    for op, a, b, new in mutation_sites(f.source):
        src = f.source[:a] + new + f.source[b:]
        if src in seen or any(len(re.findall(p, src)) > len(re.findall(p, f.source)) for p in NONSENSE):
            continue
        seen.add(src)
        try:
            fn = namespace(closure(name), {name: src})[name]
        except SyntaxError:
            continue
        got = [run(fn, args, traced=True) for args in cases]
        if all(g is not None for g in got) and any(not g.same(w) for g, w in zip(got, want, strict=True)):
            out.append(Mutant(name, op, src))
    return tuple(out)


# -- a repository: composition -------------------------------------------------------------------------------
@dataclass
class Example:
    """A call and how the correct and the buggy repository answer it."""

    fn: str
    args: tuple
    want: object
    got: Outcome

    @property
    def call(self) -> str:
        return call_text(self.fn, self.args)

    @property
    def want_text(self) -> str:
        return repr(self.want)

    def slots(self) -> dict:
        return {"fn": self.fn, "call": self.call, "want": self.want_text, "got": self.got.phrase()}


@dataclass
class Repo:
    pkg: str
    modules: dict[str, list[str]]
    """module name -> its functions, in library order."""
    group_of: dict[str, str]
    """module name -> library group."""
    bugs: dict[str, Mutant]
    failing: dict[str, list[Example]] = field(default_factory=dict)
    """function (buggy, or a caller of exactly one bug) -> calls the bug makes wrong."""
    passing: dict[str, list[Example]] = field(default_factory=dict)
    """every function -> calls the buggy repository still gets right."""
    root_of: dict[str, str] = field(default_factory=dict)
    """caller -> the one bug it reaches."""

    def module_of(self, fn: str) -> str:
        return next(m for m, fns in self.modules.items() if fn in fns)

    def path_of(self, fn: str) -> str:
        return f"{self.pkg}/{self.module_of(fn)}.py"

    def functions(self) -> list[str]:
        return [f for fns in self.modules.values() for f in fns]

    def visible(self) -> list[str]:
        """Functions the visible tests cover: neither buggy nor calling a bug."""
        return [f for f in self.functions() if not set(closure(f)) & set(self.bugs)]


def package_names() -> list[str]:
    names = [p + s for p in PREFIXES for s in SUFFIXES if p + s != "textkit"]
    random.Random("code:package-names").shuffle(names)
    return names


def plan(scale: str) -> list[tuple[str, int]]:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; use one of {', '.join(SCALES)}")
    return [(pkg, v) for v, pkg in enumerate(package_names()[: SCALES[scale][0]])]


def env_id(key) -> str:
    pkg, v = key
    return f"code_{pkg}_v{v:03d}"


def domain(key) -> str:
    """The library section every repository of this key contains (its first module)."""
    return GROUPS[key[1] % len(GROUPS)]


def variant_config(key) -> dict:
    """The tool set and rules of a variant, from its index alone: 37 is odd, so `v * 37 % 64` walks every tool
    set once in 64 variants (v = 0 is the reference's); the rules cycle on their own."""
    v = key[1]
    tools = v * 37 % 2 ** len(TOOL_AXES)
    rules = (v * 3 + 1) % 2 ** len(RULES)
    cfg = {axis: bool(tools >> i & 1) for i, axis in enumerate(TOOL_AXES)}
    cfg |= {rule: bool(rules >> i & 1) for i, rule in enumerate(RULES)}
    cfg["page_lines"] = (40, 60, 80)[v % 3]
    cfg["edit"] = (
        ("apply_edit", "search", "replace") if cfg["apply_edit"] else ("replace_in_file", "old", "new")
    )
    return cfg


def _pick_functions(groups: list[str], rng: random.Random) -> list[str]:
    """6-10 functions of the groups, with everything they call; callers are favoured (symptom issues)."""
    lib = library()
    pool = [n for n in lib if lib[n].group in groups and {lib[d].group for d in closure(n)} <= set(groups)]
    callers = [n for n in pool if lib[n].deps]
    target = rng.randint(6, 10)
    chosen: set[str] = set()
    for g in groups:  # every module gets at least one function
        mine = [n for n in pool if lib[n].group == g]
        preferred = [n for n in mine if n in callers] if rng.random() < 0.7 else []
        chosen |= set(closure(rng.choice(preferred or mine)))
    for n in sorted(rng.sample(pool, len(pool)), key=lambda n: n not in callers):
        if len(chosen) >= target:
            break
        if len(chosen | set(closure(n))) <= 10:
            chosen |= set(closure(n))
    return [n for n in lib if n in chosen]


def _pick_bugs(functions: list[str], rng: random.Random) -> list[str]:
    """3-5 mutable functions, none calling another (each bug's tests see only its own bug), favouring those a
    caller in the repository reaches; at least two functions stay clean for the visible tests."""
    reached = {d for f in functions for d in closure(f) if d != f}
    order = sorted(rng.sample(functions, len(functions)), key=lambda f: f not in reached)
    want = rng.choice([3, 4, 4, 5, 5])
    bugs: list[str] = []
    for f in order:
        if len(bugs) == want or not mutants(f):
            continue
        if any(f in closure(b) or b in closure(f) for b in bugs):
            continue
        clean = [g for g in functions if not set(closure(g)) & set(bugs + [f])]
        if len(clean) >= 2:
            bugs.append(f)
    return bugs


@cache
def compose(key: tuple, seed: int) -> Repo:
    """The repository of a variant: modules, functions, bugs and every test case, from (key, seed) alone."""
    pkg, v = key
    for attempt in range(100):
        rng = random.Random(f"{seed}:{pkg}:{v}:compose:{attempt}")
        first = domain(key)
        groups = [first] + rng.sample([g for g in GROUPS if g != first], rng.randint(1, 3))
        functions = _pick_functions(groups, rng)
        bugs = _pick_bugs(functions, rng)
        if len(bugs) >= 3:
            break
    else:
        raise RuntimeError(f"no repository with 3 bugs for {key}")
    lib = library()
    modules = {}
    group_of = {}
    for g in groups:
        name = rng.choice(MODULE_NAMES[g])
        modules[name] = [f for f in functions if lib[f].group == g]
        group_of[name] = g
    chosen = {}
    for b in sorted(bugs):
        ops = sorted({m.operator for m in mutants(b)})
        op = rng.choice(ops)
        chosen[b] = rng.choice([m for m in mutants(b) if m.operator == op])
    repo = Repo(pkg=pkg, modules=modules, group_of=group_of, bugs=chosen)
    _evaluate(repo, f"{seed}:{pkg}:{v}")
    return repo


def _evaluate(repo: Repo, salt: str) -> None:
    """Fill failing/passing examples: every function on its generated inputs, correct vs buggy repository."""
    buggy = {b: m.source for b, m in repo.bugs.items()}
    for f in repo.functions():
        names = closure(f)
        hit = [b for b in repo.bugs if b in names]
        correct = namespace(names)[f]
        broken = namespace(names, buggy)[f] if hit else None
        repo.failing[f], repo.passing[f] = [], []
        pool = inputs(f, salt) + (inputs(f, "admission") if f in repo.bugs else ())
        for args in pool:
            want = run(correct, args, traced=False)
            got = run(broken, args, traced=True) if broken else want
            if got is None:  # a caller stuck in a loop through a bug: not an example to show
                continue
            ex = Example(f, args, want.value, got)
            (repo.passing if got.same(want) else repo.failing)[f].append(ex)
        if len(hit) == 1 and f not in repo.bugs and repo.failing[f]:
            repo.root_of[f] = hit[0]
        if f in repo.bugs:
            assert repo.failing[f], f"mutant of {f} fails no generated input"


# -- rendering -----------------------------------------------------------------------------------------------
def _unique(items: list) -> list:
    seen, out = set(), []
    for x in items:
        if repr(x.args) not in seen:
            seen.add(repr(x.args))
            out.append(x)
    return out


def module_source(repo: Repo, module: str) -> str:
    """A module of the repository as shipped: its functions, the buggy ones mutated, with their imports."""
    lib = library()
    fns = repo.modules[module]
    imports = sorted({m for f in fns for m in lib[f].imports})
    internal: dict[str, list[str]] = {}
    for f in fns:
        for d in lib[f].deps:
            if d not in fns:
                internal.setdefault(repo.module_of(d), []).append(d)
    blocks = ["\n".join(f"import {m}" for m in imports)]
    blocks.append(
        "\n".join(f"from .{m} import {', '.join(sorted(set(n)))}" for m, n in sorted(internal.items()))
    )
    sources = [repo.bugs[f].source if f in repo.bugs else lib[f].source for f in fns]
    return (
        jinja(True)
        .get_template("code/repo/module.py.j2")
        .render(
            doc=GROUP_DOCS[repo.group_of[module]],
            header="\n\n".join(b for b in blocks if b),
            body="\n\n\n".join(sources),
        )
    )


def visible_tests(repo: Repo) -> dict[str, dict[str, list[Example]]]:
    """tests/test_<module>.py -> {function: its cases}, for the functions the visible tests may cover."""
    out = {}
    covered = repo.visible()
    for module, fns in repo.modules.items():
        cases = {f: _unique(repo.passing[f])[:3] for f in fns if f in covered}
        if cases:
            out[f"test_{module}.py"] = cases
    return out


def unittest_file(repo: Repo, test_file: str, cases: dict[str, list[Example]]) -> str:
    """A visible test file of the repository (unittest, as a project has them)."""
    module = test_file[len("test_") : -len(".py")]
    return (
        jinja(True)
        .get_template("code/repo/test_module.py.j2")
        .render(pkg=repo.pkg, module=module, cls=module.title().replace("_", ""), cases=cases)
    )


def plain_tests(repo: Repo, cases: dict[str, list[Example]], doc: str) -> str:
    """A test module of plain `test_*` functions with asserts, for the verifier's runner: it needs no
    unittest import, which would be most of a verification's start-up time."""
    imports: dict[str, list[str]] = {}
    for f in cases:
        imports.setdefault(repo.module_of(f), []).append(f)
    return (
        jinja(True)
        .get_template("code/repo/test_plain.py.j2")
        .render(
            pkg=repo.pkg, doc=doc, imports={m: sorted(n) for m, n in sorted(imports.items())}, cases=cases
        )
    )


def hidden_tests(repo: Repo, fns: list[str]) -> str:
    """The hidden tests of a task: per function, calls the bugs break and calls that must stay right."""
    cases = {f: (_unique(repo.failing[f])[:3] + _unique(repo.passing[f])[:3]) for f in fns}
    return plain_tests(repo, cases, "Hidden tests of one issue.")


def render_sources(key: tuple, seed: int) -> dict[str, str]:
    """Every file of the environment but env.json: tools.py, verify.py and the repository under state/."""
    repo = compose(key, seed)
    cfg = variant_config(key)
    first = next(iter(repo.modules))
    example = f"{repo.pkg}/{first}.py"
    tests = visible_tests(repo)
    files = {
        f"state/{repo.pkg}/__init__.py": f'"""{repo.pkg}: small pure-Python utilities."""\n',
        "state/tests/__init__.py": "",
        **{f"state/tests/{name}": unittest_file(repo, name, cases) for name, cases in tests.items()},
    }
    for module in repo.modules:
        files[f"state/{repo.pkg}/{module}.py"] = module_source(repo, module)
    files["state/README.md"] = (
        jinja(True)
        .get_template("code/repo/README.md.j2")
        .render(
            pkg=repo.pkg,
            modules=[(m, GROUP_DOCS[repo.group_of[m]], fns) for m, fns in repo.modules.items()],
        )
    )
    doc = (
        f"Code tools over the {repo.pkg} repository in the working folder: list"
        f"{', search' if cfg['search_code'] else ''}, read and edit files, run the tests"
        f"{' or any shell command' if not cfg['no_shell'] else ''}. Paths are relative to the repository root "
        "and may not leave it. Rendered by the code family from the code_repair reference tools."
    )
    ctx = {"pkg": repo.pkg, "cfg": cfg, "example": example}
    ctx["doc"] = textwrap.fill(doc, 107)
    files["tools.py"] = jinja(True).get_template("code/tools.py.j2").render(**ctx)
    visible = {f: x for cases in tests.values() for f, x in cases.items()}
    ctx["visible"] = json.dumps(plain_tests(repo, visible, "The repository's original tests."))
    ctx["edit_tools"] = [cfg["edit"][0]] + ([] if cfg["no_write_file"] else ["write_file"])
    files["verify.py"] = jinja(True).get_template("code/verify.py.j2").render(**ctx)
    return files


def rules_text(cfg: dict) -> list[str]:
    rules = ["the repository's original tests must keep passing"]
    if cfg["keep_tests"]:
        rules.append("do not modify anything under tests/")
    if cfg["keep_files"]:
        rules.append("do not create, delete or rename files")
    if cfg["test_after_edit"]:
        rules.append("call run_tests after your last edit, before you answer")
    return rules


def build_env(store, key, seed: int) -> Path:
    """Write `<store>/<env_id>/` for one variant, deterministically from (key, seed)."""
    key = tuple(key)
    out = Path(store) / env_id(key)
    if (out / "state").exists():  # a rebuild must not keep files of an older repository
        shutil.rmtree(out / "state")
    for rel, text in render_sources(key, seed).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    repo = compose(key, seed)
    cfg = variant_config(key)
    spec = EnvSpec(
        id=env_id(key),
        category=CATEGORY,
        domain=domain(key),
        description=(
            f"You are a software engineer maintaining {repo.pkg}, a small pure-Python utility package "
            f"(modules: {', '.join(repo.modules)}) in the working folder. Fix the reported bugs at their root "
            "cause with the tools, run the tests, then reply with what you changed without a tool call. "
            f"Rules: {'; '.join(rules_text(cfg))}."
        ),
        tools=tools_from_module(load_tools_module(out / "tools.py")),
        limits=LIMITS,
        provenance=Provenance(
            producer="template", family=f"{NAME}/{domain(key)}", seed=seed, version=VERSION
        ),
    )
    write_env_spec(out, spec)
    return out


# -- tasks ---------------------------------------------------------------------------------------------------
def snippet(text: str, buggy_fn: str, correct_fn: str) -> tuple[str, str]:
    """(old, new) for the edit tool: the lines where the buggy and the correct function differ, widened by
    neighbouring lines of the file until `old` occurs exactly once in `text`."""
    a, b = buggy_fn.splitlines(), correct_fn.splitlines()
    top = 0
    while top < min(len(a), len(b)) and a[top] == b[top]:
        top += 1
    tail = 0
    while tail < min(len(a), len(b)) - top and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    lines = text.splitlines()
    at = text[: text.index(buggy_fn)].count("\n")  # the function's first line in the file
    lo, hi = at + top, at + len(a) - tail  # the differing lines, [lo, hi)
    while True:
        old = "\n".join(lines[lo:hi])
        if old.strip() and text.count(old) == 1:
            return old, "\n".join(
                lines[lo : at + top] + b[top : len(b) - tail] + lines[at + len(a) - tail : hi]
            )
        lo, hi = max(0, lo - 1), min(len(lines), hi + 1)


def _solution(repo: Repo, cfg: dict, bugs: list[str], callers: list[str], level: int) -> list[ToolCall]:
    """Tool calls that fix `bugs`: locate (search_code, or list_files), read, edit each, run the tests."""
    calls: list[ToolCall] = []
    texts = {m: module_source(repo, m) for m in repo.modules}

    def locate(fn: str) -> None:
        if level == 1:
            return
        if cfg["search_code"]:
            calls.append(ToolCall(name="search_code", arguments={"pattern": rf"def {fn}\("}))
        elif not any(c.name == "list_files" for c in calls):
            calls.append(ToolCall(name="list_files"))

    def read(fn: str) -> None:
        path = repo.path_of(fn)
        if any(c.arguments.get("path") == path for c in calls if c.name == "read_file"):
            return
        if not cfg["paged_read"]:
            calls.append(ToolCall(name="read_file", arguments={"path": path}))
            return
        n = len(texts[repo.module_of(fn)].splitlines())
        for start in range(1, n + 1, cfg["page_lines"]):
            calls.append(ToolCall(name="read_file", arguments={"path": path, "start_line": start}))

    for caller in callers:
        locate(caller)
        read(caller)
    for fn in bugs:
        locate(fn)
        read(fn)
    name, old_arg, new_arg = cfg["edit"]
    lib = library()
    for fn in bugs:
        m = repo.module_of(fn)
        old, new = snippet(texts[m], repo.bugs[fn].source, lib[fn].source)
        texts[m] = texts[m].replace(old, new)
        calls.append(ToolCall(name=name, arguments={"path": repo.path_of(fn), old_arg: old, new_arg: new}))
    calls.append(ToolCall(name="run_tests"))
    return calls


def _answer(repo: Repo, bugs: list[str]) -> str:
    fixed = " and ".join(f"{fn} in {repo.path_of(fn)}" for fn in bugs)
    return f"I fixed {fixed}; the tests pass."


def _issues(repo: Repo, rng: random.Random) -> dict[str, list[dict]]:
    """Per kind, the issues the repository supports: {bugs, callers, items (examples), kind}."""
    bugs = sorted(repo.bugs)
    callers_of = {b: sorted(c for c, r in repo.root_of.items() if r == b) for b in bugs}
    ex = {f: _unique(repo.failing[f]) for f in repo.failing if repo.failing[f]}
    out: dict[str, list[dict]] = {k: [] for k in PROMPTS}
    for b in bugs:
        out["located"].append({"bugs": [b], "callers": [], "items": [ex[b][0]]})
        out["named"].append({"bugs": [b], "callers": [], "items": [ex[b][min(1, len(ex[b]) - 1)]]})
        for c in callers_of[b]:
            out["symptom"].append({"bugs": [b], "callers": [c], "items": [ex[c][0]]})
    pairs = [(a, b) for i, a in enumerate(bugs) for b in bugs[i + 1 :]]
    for a, b in pairs:
        out["pair"].append({"bugs": [a, b], "callers": [], "items": [ex[a][-1], ex[b][-1]]})
    triples = [
        (a, b, c)
        for i, a in enumerate(bugs)
        for j, b in enumerate(bugs[i + 1 :], i + 1)
        for c in bugs[j + 1 :]
    ]
    for trio in triples:
        via = [rng.choice(callers_of[b]) if callers_of[b] else None for b in trio]
        items = [ex[c][0] if c else ex[b][0] for b, c in zip(trio, via, strict=True)]
        out["report"].append({"bugs": list(trio), "callers": [c for c in via if c], "items": items})
    for kind in out:
        rng.shuffle(out[kind])
    return out


def make_tasks(env_dir, key, seed: int, n_tasks: int) -> list[dict]:
    """Candidate tasks: the issue kinds in turn (levels 1-5), then second phrasings of single-bug issues."""
    key = tuple(key)
    repo = compose(key, seed)
    cfg = variant_config(key)
    rng = random.Random(f"{seed}:{key[0]}:{key[1]}:tasks")
    verify = load_tools_module(Path(env_dir) / "verify.py", "verify")
    state = Path(env_dir) / "state"
    rule_params = {}
    if cfg["keep_tests"]:
        rule_params["tests_digest"] = verify.tree_digest(str(state / "tests"))
    if cfg["keep_files"]:
        rule_params["files"] = verify.repo_files(str(state))
    issues = _issues(repo, rng)
    order = []
    for i in range(max(len(v) for v in issues.values())):
        order += [(k, issues[k][i], i % len(PROMPTS[k])) for k in PROMPTS if i < len(issues[k])]
    for k in ("symptom", "located", "named"):  # the other phrasing, with another failing call if there is one
        for i, issue in enumerate(issues[k]):
            other = _unique(repo.failing[issue["items"][0].fn])[-1]
            order.append((k, {**issue, "items": [other]}, (i + 1) % len(PROMPTS[k])))
    answers = {b: _answer(repo, [b]) for b in repo.bugs}
    out, seen = [], set()
    for kind, issue, variant in order:
        if len(out) == n_tasks:
            break
        items = [x.slots() for x in issue["items"]]
        slots = {"pkg": repo.pkg, **items[0], "items": items, "a": items[0], "b": items[-1]}
        slots["path"] = repo.path_of(issue["bugs"][0])
        prompt = prompt_template(PROMPTS[kind][variant], trim=True).render(**slots)
        if prompt in seen:
            continue
        seen.add(prompt)
        bugs = issue["bugs"]
        checked = sorted(set(bugs) | set(issue["callers"]))
        others = [b for b in sorted(repo.bugs) if b not in bugs]  # the guess: a sibling issue's answer
        out.append(
            {
                "kind": kind,
                "template": f"{NAME}/{kind}/{variant}",
                "difficulty": LEVEL[kind],
                "prompt": [prompt],
                "verifier": "check_fix",
                "params": {"hidden_tests": hidden_tests(repo, checked), **rule_params},
                "solution": _solution(repo, cfg, bugs, issue["callers"], LEVEL[kind]),
                "answer": _answer(repo, bugs),
                "guess": answers[others[0]] if others else _answer(repo, bugs[:-1]),
            }
        )
    return out
