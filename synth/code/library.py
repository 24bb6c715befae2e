"""The code family's function library and its inputs: `templates/code/library.py` parsed into functions (their
section, what they call, the stdlib modules they use), a seeded input generator for every function, and the host
side that runs library code (and mutants of it) on those inputs under a trace budget."""

from __future__ import annotations

import ast
import calendar
import copy
import random
import re
import sys
from dataclasses import dataclass
from functools import cache

from ..family import TEMPLATES

LIBRARY = TEMPLATES / "code" / "library.py"
N_INPUTS = 40
"""Inputs generated per function (for admission, hidden tests, visible tests and issue examples)."""
TRACE_BUDGET = 20000
"""Trace events a mutant may spend on one input; beyond it counts as not terminating and rejects the mutant."""


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
