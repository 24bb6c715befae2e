"""A code-family repository: which library sections, functions and bugs it holds (composed from (key, seed)
alone), every call the bugs break or leave right, and its files as shipped: the modules (buggy functions
mutated), the README, the visible unittest files and the plain test modules the verifier runs."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cache

from ..family import jinja
from .library import Outcome, call_text, closure, inputs, library, namespace, run
from .mutate import Mutant, double_mutants, mutants

PREFIXES = ["tidy", "quick", "mini", "neat", "plain", "bright", "swift", "lean", "calm", "bold"]
PREFIXES += ["brisk", "clear", "deft", "handy", "keen", "snug", "spry", "trim", "vivid", "zest"]
SUFFIXES = ["kit", "tools", "utils", "lib", "box", "bits", "forge", "works", "craft", "base", "core", "stack"]
SUFFIXES += ["belt", "shed"]
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
DOUBLE_SHARE = 0.3
"""The share of a repository's bugs (where the function has one) that are two-site mutants."""


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
    part_failing: dict[str, list[list[Example]]] = field(default_factory=dict)
    """two-site bug -> per site, calls that site alone makes wrong (a fix of the other site leaves them)."""

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


def first_group(key: tuple) -> str:
    """The library section every repository of this key contains (its first module)."""
    return GROUPS[key[1] % len(GROUPS)]


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
    """3-6 mutable functions, none calling another (each bug's tests see only its own bug), favouring those a
    caller in the repository reaches; at least two functions stay clean for the visible tests."""
    reached = {d for f in functions for d in closure(f) if d != f}
    order = sorted(rng.sample(functions, len(functions)), key=lambda f: f not in reached)
    want = rng.choice([3, 4, 4, 5, 5, 6])
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
        first = first_group(key)
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
        pool = list(mutants(b))
        if rng.random() < DOUBLE_SHARE and double_mutants(b):
            pool = list(double_mutants(b))  # two related bugs in one function: both sites need a fix
        ops = sorted({m.operator for m in pool})
        op = rng.choice(ops)
        chosen[b] = rng.choice([m for m in pool if m.operator == op])
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
        if f in repo.bugs and repo.bugs[f].parts:
            repo.part_failing[f] = []
            for part in repo.bugs[f].parts:
                alone = namespace(names, {**buggy, f: part})[f]
                wrong = []
                for args in pool:
                    want, got = run(correct, args, traced=False), run(alone, args, traced=True)
                    if got is not None and not got.same(want):
                        wrong.append(Example(f, args, want.value, got))
                assert wrong, f"a site of the two-site mutant of {f} fails no generated input"
                repo.part_failing[f].append(wrong)


# -- the repository's files ---------------------------------------------------------------------------------
def unique_examples(items: list) -> list:
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
        cases = {f: unique_examples(repo.passing[f])[:3] for f in fns if f in covered}
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


def behaviour_cases(repo: Repo, cases: dict[str, list[Example]]) -> list[list]:
    """Test cases as data for `toolgym_env.same_behaviour`: [module, function, arguments (a Python literal
    tuple), what the correct code returns (`plain`)]. The verifier makes the calls in the agent's process and
    compares the returned data in its own, so nothing the agent's code prints, patches or returns as an object
    can pass a test."""
    from toolgym.envs.inside.toolgym_env import plain

    return [
        [f"{repo.pkg}.{repo.module_of(f)}", f, repr(tuple(x.args)), plain(x.want)]
        for f, examples in cases.items()
        for x in examples
    ]


def hidden_cases(repo: Repo, fns: list[str]) -> list[list]:
    """The hidden tests of a task: per function, calls the bugs break and calls that must stay right; for a
    two-site bug also calls each site alone breaks, so fixing one site is not enough."""
    cases = {}
    for f in fns:
        parts = [x for wrong in repo.part_failing.get(f, []) for x in unique_examples(wrong)[:2]]
        cases[f] = (
            unique_examples(unique_examples(repo.failing[f])[:3] + parts)
            + unique_examples(repo.passing[f])[:3]
        )
    return behaviour_cases(repo, cases)
