"""Bugs for the code family: every way to mutate one function's source (operators on its AST, each rewriting one
span of the text) and the admitted mutants, those that change some output, never raise TypeError and always
terminate."""

from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass
from functools import cache

from .library import closure, inputs, library, namespace, run

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
    """The operator, or two joined by "+" for a two-site mutant ("comparison+branch")."""
    source: str
    """The whole mutated function."""
    parts: tuple[str, ...] = ()
    """A two-site mutant's two one-site mutants (each site alone), in source order; () for one site."""

    @property
    def sites(self) -> int:
        """How many separate fixes the function needs."""
        return max(1, len(self.parts))


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


def _admitted(name: str, src: str) -> bool:
    """Whether a mutated source of `name` compiles, differs from the correct function on some admission input,
    never raises TypeError and always terminates."""
    cases = inputs(name, "admission")
    correct = namespace(closure(name))[name]
    want = [run(correct, a, traced=False) for a in cases]
    try:
        fn = namespace(closure(name), {name: src})[name]
    except SyntaxError:
        return False
    got = [run(fn, args, traced=True) for args in cases]
    return all(g is not None for g in got) and any(not g.same(w) for g, w in zip(got, want, strict=True))


DOUBLES_PER_FUNCTION = 8


@cache
def double_mutants(name: str) -> tuple[Mutant, ...]:
    """Two-site mutants of a library function: two admitted one-site mutants whose spans do not touch, applied
    together, admitted themselves. Fixing one site leaves the other's failures, so the task needs both fixes (a
    dropped guard among them is a bug plus a missing edge case). At most DOUBLES_PER_FUNCTION, spread over the
    operator pairs."""
    f = library()[name]
    singles = {m.source: m for m in mutants(name)}
    sites = []
    for op, a, b, new in mutation_sites(f.source):
        src = f.source[:a] + new + f.source[b:]
        if src in singles and all(src != s[4] for s in sites):
            sites.append((op, a, b, new, src))
    out, seen = [], set()
    for (op1, a1, b1, n1, s1), (op2, a2, b2, n2, s2) in itertools.combinations(
        sorted(sites, key=lambda s: s[1]), 2
    ):
        if a2 <= b1 or f.source[b1:a2].strip() == "":  # overlapping or adjacent spans are one edit
            continue
        src = f.source[:a1] + n1 + f.source[b1:a2] + n2 + f.source[b2:]
        ops = f"{op1}+{op2}"
        if src in seen or ops in {m.operator for m in out} and len(out) >= DOUBLES_PER_FUNCTION // 2:
            continue
        seen.add(src)
        if _admitted(name, src):
            out.append(Mutant(name, ops, src, parts=(s1, s2)))
        if len(out) == DOUBLES_PER_FUNCTION:
            break
    return tuple(out)


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
