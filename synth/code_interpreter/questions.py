"""The questions of the code-interpreter family. A question is a plan, JSON-able so a task can be hardened later:

* scope: literal conditions that hold throughout ("the sales from 2023 with product "gizmo"");
* join: none, a lookup attribute every kept first-category value must have, or a comparison of each value's yearly
  total with its target from the lookup file;
* picks: a chain of steps, each finding the category or month with the largest (smallest) total, count or mean
  among what the steps before it left, the next step working on that group only;
* final: the aggregate asked for over what the chain leaves.

`realize` turns a plan into reference cells, one per step (load, join, each pick, the answer), and a prompt of one
plain sentence per step; each cell's result feeds the next, so a level-5 question takes six dependent cells.
"""

from __future__ import annotations

import calendar
import random

from .data import lookup_file, lookup_loader_code, main_files

MONTHS = list(calendar.month_name)
LITERAL_ORDER = ("year", "c1", "c2", "months", "weekend", "m2_min")
"""The order scope conditions are stated in, whatever order they were drawn in."""
FINALS = ("sum", "count", "mean", "max", "median", "days", "share")
MIN_ROWS = {"sum": 15, "count": 15, "days": 15, "mean": 8, "max": 8, "median": 8, "share": 15}
"""The fewest records a final aggregate may run over: enough that the answer hangs on many records."""
PICK_MARGIN = 0.01
"""A pick's winner must lead the runner-up by this share, so no careful analyst could pick another group."""


def article(word: str) -> str:
    """'a' or 'an' before `word`, by its sound ("an hour", "a unit", "an SUV" are not needed here)."""
    w = word.lower()
    if w.startswith(("uni", "use", "usa", "eu", "one")):
        return "a"
    return "an" if w[:1] in "aeiou" or w.startswith(("hour", "honest")) else "a"


def plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


class Q:
    """What a question sees of its variant: the theme, the variant config, the clean records, and the small
    code-writing helpers every question shares."""

    def __init__(self, th: dict, cfg: dict, recs: list[dict]) -> None:
        self.th, self.cfg, self.recs = th, cfg, recs
        self.c1, self.c2, self.m1, self.m2 = (th[k]["col"] for k in ("c1", "c2", "m1", "m2"))

    def round(self, expr: str) -> str:
        """The expression rounded by the variant's rule."""
        d = self.cfg["decimals"]
        return f"round({expr})" if d == 0 else f"round({expr}, {d})"

    def exact(self, expr: str, m: str) -> str:
        """A sum or extreme of measure `m`: exact for integer measures, rounded by the rule otherwise."""
        return f"int({expr})" if self.th[m]["dec"] == 0 else self.round(expr)

    def present(self, *ms: str) -> list[str]:
        """Conditions that leave out missing values of measures `ms` ("m1", "m2"); only dirty variants have
        them."""
        return [f"r[{self.th[m]['col']!r}] is not None" for m in ms] if self.cfg["dirty"] else []

    def fmt(self, value, m: str) -> str:
        return str(int(value)) if self.th[m]["dec"] == 0 else f"{value:.{self.th[m]['dec']}f}"

    def words(self) -> dict:
        th = self.th
        return {
            "row": th["row"],
            "rows": th["rows"],
            "c1": th["c1"]["label"],
            "c1s": plural(th["c1"]["label"]),
            "c2": th["c2"]["label"],
            "m1": th["m1"]["label"],
            "m2": th["m2"]["label"],
            "lookup": lookup_file(th, self.cfg),
            "src": " and ".join(main_files(th, self.cfg)),
        }


# -- drawing a plan -----------------------------------------------------------------------------------------------
def draw_literal(q: Q, kind: str, rng: random.Random):
    """A literal condition of `kind` with a drawn value (years from the variant, labels from the theme, a
    threshold that keeps most records)."""
    if kind == "year":
        return ["year", rng.choice(q.cfg["years"])]
    if kind == "months":
        a = rng.randint(1, 7)
        return ["months", [a, rng.randint(a + 3, 12)]]
    if kind == "weekend":
        return ["weekend", 1]
    if kind in ("c1", "c2"):
        return [kind, rng.choice(q.th[kind]["values"])]
    pool = sorted(r["m2"] for r in q.recs if r["m2"] is not None)
    return ["m2_min", pool[rng.randrange(len(pool) // 5, 3 * len(pool) // 5)]]


def draw_plan(q: Q, shape: dict, rng: random.Random) -> dict:
    """A plan of a kind's shape: `picks` dimensions drawn without repeats (a month only within a year), literal
    conditions on what the picks and the join leave free, a final aggregate from the shape's list."""
    join = shape["join"]
    dims = ["c1", "c2", "month"]
    if join:  # the join keeps some first-category values; picking among them comes first
        dims = ["c1"] + rng.sample(["c2", "month"], 2)
    else:
        rng.shuffle(dims)
    picks = []
    for dim in dims[: shape["picks"]]:
        agg = rng.choice(["sum", "count", "mean"])
        picks.append([dim, agg, "min" if rng.random() < 0.2 else "max"])
    free = [k for k in ("months", "weekend", "c1", "c2", "m2_min") if k not in {p[0] for p in picks}]
    if join:
        free = [k for k in free if k != "c1"]
    if any(p[0] == "month" for p in picks):
        free = [k for k in free if k != "months"]
    n_lit = rng.choice(shape["literals"])
    need_year = any(p[0] == "month" for p in picks) or rng.random() < 0.7
    kinds = (["year"] if need_year else []) + rng.sample(free, max(0, n_lit - need_year))
    scope = [draw_literal(q, k, rng) for k in kinds]
    target_year = rng.choice(q.cfg["years"]) if join == "target" else None
    join_spec = None
    if join == "attr":
        join_spec = ["attr", rng.choice(q.th["lookup"]["attr_values"])]
    elif join == "target":
        join_spec = ["target", target_year]
    m2 = q.th["m2"]
    coarse = (m2["hi"] - m2["lo"]) * 10 ** m2[
        "dec"
    ] < 20  # a 1-5 score: its median or maximum is a guess away
    finals = [f for f in shape["finals"] if not (coarse and f in ("max", "median"))]
    return {"scope": scope, "join": join_spec, "picks": picks, "final": rng.choice(finals)}


def extra_literal(q: Q, plan: dict, rng: random.Random) -> dict | None:
    """The plan with one more scope condition (a hardening step), or None when every kind is taken."""
    taken = {c[0] for c in plan["scope"]} | {p[0] for p in plan["picks"]}
    if plan["join"]:
        taken.add("c1")
    if "month" in taken:
        taken.add("months")
    free = [k for k in ("m2_min", "c2", "weekend", "months", "c1", "year") if k not in taken]
    if not free:
        return None
    return {**plan, "scope": plan["scope"] + [draw_literal(q, rng.choice(free), rng)]}


# -- a plan as code and as words -------------------------------------------------------------------------------------
def _literal_code(q: Q, c: list) -> str:
    kind, v = c
    if kind == "year":
        return f"r['date'].year == {v}"
    if kind == "months":
        return f"{v[0]} <= r['date'].month <= {v[1]}"
    if kind == "weekend":
        return "r['date'].weekday() >= 5"
    if kind in ("c1", "c2"):
        return f"r[{q.th[kind]['col']!r}] == {v!r}"
    return f"r[{q.m2!r}] is not None and r[{q.m2!r}] >= {v!r}"


def _literal_words(q: Q, c: list) -> str:
    kind, v = c
    w = q.words()
    if kind == "year":
        return f"from {v}"
    if kind == "months":
        return f"dated between the start of {MONTHS[v[0]]} and the end of {MONTHS[v[1]]}"
    if kind == "weekend":
        return "that fell on a Saturday or a Sunday"
    if kind == "c1":
        return f'of {w["c1"]} "{v}"'
    if kind == "c2":
        return f'with {w["c2"]} "{v}"'
    return f"with {article(w['m2'])} {w['m2']} of at least {q.fmt(v, 'm2')}"


def _dim(q: Q, dim: str) -> tuple[str, str, str]:
    """(variable name, key expression, label) of a pick dimension."""
    if dim == "month":
        return "top_month", "r['date'].month", "month"
    col = q.th[dim]["col"]
    return f"top_{col}", f"r[{col!r}]", q.th[dim]["label"]


def _where(conds: list[str]) -> str:
    return f" if {' and '.join(conds)}" if conds else ""


def _agg_words(q: Q, agg: str) -> str:
    w = q.words()
    return {"sum": f"total {w['m1']}", "count": f"number of {w['rows']}", "mean": f"average {w['m2']}"}[agg]


def realize(q: Q, plan: dict) -> tuple[list[str], list[str], list[dict]]:
    """(cells after the load cell, prompt sentences after the opening one, checks): one check per cell (None
    where there is nothing to check), for the generator to run on the namespace right after that cell: {"keep"}
    for a join, {"pick", "dir", "domain"} for a pick, {"rows": expr, "min": n} for the final selection."""
    w = q.words()
    conds = [_literal_code(q, c) for c in sorted(plan["scope"], key=lambda c: LITERAL_ORDER.index(c[0]))]
    cells, says, checks = [], [], []
    phrases = plan["scope"]
    c1_domain = len(q.th["c1"]["values"])
    join = plan["join"]
    scope = _scope_words([[c[0], _literal_words(q, c)] for c in plan["scope"]])
    if scope and not (join and join[0] == "target"):
        says.append(f"Throughout, use only the {w['rows']} {scope}.")
    if join and join[0] == "attr":
        attr = q.th["lookup"]["attr"]
        cells.append(
            lookup_loader_code(q.th, q.cfg)
            + f"\nkeep = sorted(k for k, e in info.items() if e[{attr!r}] == {join[1]!r})\nkeep"
        )
        checks.append({"keep": True})
        says.append(
            f"{w['lookup']} gives each {w['c1']} {article(attr)} {attr}; from here on, leave out the {w['rows']} "
            f'of every {w["c1"]} whose {attr} is not "{join[1]}".'
        )
        conds.append(f"r[{q.c1!r}] in keep")
        c1_domain = None
    elif join:
        num, year = q.th["lookup"]["num"], join[1]
        in_year = " and ".join([f"r['date'].year == {year}", *q.present("m1")])
        cells.append(lookup_loader_code(q.th, q.cfg) + "\ninfo")
        cells.append(
            "totals = {}\nfor r in rows:\n"
            f"    if {in_year}:\n"
            f"        totals[r[{q.c1!r}]] = totals.get(r[{q.c1!r}], 0) + r[{q.m1!r}]\n"
            f"keep = sorted(k for k, e in info.items() if totals.get(k, 0) > float(e[{num!r}]))\n"
            "keep, {k: (totals.get(k, 0), e[" + repr(num) + "]) for k, e in info.items()}"
        )
        checks += [None, {"keep": True, "targets": year, "num": num}]
        says.append(
            f"{w['lookup']} gives each {w['c1']} its {q.th['lookup']['num_label']}; call {article(w['c1'])} "
            f"{w['c1']} on target when its total {w['m1']} over all its {w['rows']} of {year} exceeded it."
        )
        says.append(
            f"From here on, use only the {w['c1s']} on target, and only their {w['rows']}{' ' + scope if scope else ''}."
        )
        conds.append(f"r[{q.c1!r}] in keep")
        c1_domain = None
    picked = []
    for i, (dim, agg, direction) in enumerate(plan["picks"]):
        var, key, label = _dim(q, dim)
        m = {"sum": "m1", "mean": "m2"}.get(agg)
        val = f"r[{q.th[m]['col']!r}]" if m else "1"
        reduce = {"sum": "sum(v)", "count": "len(v)", "mean": "sum(v) / len(v)"}[agg]
        pick = "max" if direction == "max" else "min"
        cells.append(
            "groups = {}\nfor r in rows:\n"
            f"    if {' and '.join(conds + (q.present(m) if m else [])) or 'True'}:\n"
            f"        groups.setdefault({key}, []).append({val})\n"
            f"ranking = {{k: {reduce} for k, v in groups.items()}}\n"
            f"{var} = {pick}(ranking, key=ranking.get)\n"
            f"{var}, ranking[{var}]"
        )
        domain = {"c1": c1_domain, "c2": len(q.th["c2"]["values"]), "month": _months_in(plan)}[dim]
        checks.append({"pick": var, "dir": direction, "domain": domain})
        most = {"max": "largest", "min": "smallest"}[direction]
        ask = f"find the {label} with the {most} {_agg_words(q, agg)}"
        if i == 0:
            among = "" if not conds else f" among {'these' if phrases else 'the remaining'} {w['rows']}"
            says.append(f"{ask[0].upper()}{ask[1:]}{among}.")
        else:
            says.append(f"Then, among the {w['rows']} {' '.join(picked)}, {ask}.")
        picked.append({"month": "in that month"}.get(dim, f"{'of' if dim == 'c1' else 'with'} that {label}"))
        picked.sort(key=lambda p: p == "in that month")  # "of that ward in that month" reads best
        conds.append(f"{key} == {var}")
    final = plan["final"]
    if final == "share":  # the last pick's part of what the picks before it left: two dependent cells
        sel = conds + q.present("m1")
        whole = conds[: len(conds) - 1] + q.present("m1")
        cells.append(f"part = sum(r[{q.m1!r}] for r in rows{_where(sel)})\npart")
        checks.append({"rows": f"sum(1 for r in rows{_where(sel)})", "min": MIN_ROWS["sum"]})
        cells.append(
            f"whole = sum(r[{q.m1!r}] for r in rows{_where(whole)})\n" + q.round("100 * part / whole")
        )
        checks.append(None)
        before = f"the {w['rows']} {' '.join(picked[:-1])}" if picked[:-1] else f"these {w['rows']}"
        says.append(
            f"What percentage of the total {w['m1']} of {before} came from the {w['rows']} {picked[-1]}? "
            "Give it in percent, not as a fraction."
        )
        return cells, says, checks
    m = {"sum": "m1", "mean": "m2", "max": "m2", "median": "m2"}.get(final)
    sel = conds + (q.present(m) if m else [])
    col = f"r[{q.th[m]['col']!r}]" if m else None
    if final == "sum":
        code = q.exact(f"sum({col} for r in rows{_where(sel)})", "m1")
    elif final == "count":
        code = f"sum(1 for r in rows{_where(sel)})"
    elif final == "days":
        code = f"len({{r['date'] for r in rows{_where(sel)}}})"
    elif final == "max":
        code = q.exact(f"max({col} for r in rows{_where(sel)})", "m2")
    else:
        head = "import statistics\n" if final == "median" else ""
        value = "statistics.median(values)" if final == "median" else "sum(values) / len(values)"
        code = f"{head}values = [{col} for r in rows{_where(sel)}]\n" + q.round(value)
    cells.append(code)
    checks.append({"rows": f"sum(1 for r in rows{_where(sel)})", "min": MIN_ROWS[final]})
    says.append(_final_words(q, final, picked, bool(phrases or join)))
    return cells, says, checks


def _months_in(plan: dict) -> int:
    span = next((c[1] for c in plan["scope"] if c[0] == "months"), [1, 12])
    return span[1] - span[0] + 1


def _scope_words(scope: list) -> str:
    """Scope conditions ([kind, words] pairs) as one clause: the year and labels first ("from 2024 of ward "x""), then the clauses
    about dates and thresholds joined by commas and a last "and"."""
    ordered = sorted(scope, key=lambda c: LITERAL_ORDER.index(c[0]))
    head = [text for kind, text in ordered if kind in ("year", "c1", "c2")]
    tail = [text for kind, text in ordered if kind not in ("year", "c1", "c2")]
    return " ".join([*head, _join_words(tail)] if tail else head)


def _join_words(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _final_words(q: Q, final: str, picked: list[str], narrowed: bool) -> str:
    w = q.words()
    if picked:
        these, such, many = (f"{x} {' '.join(picked)}" for x in (f"the {w['rows']}", w["row"], w["rows"]))
    elif narrowed:
        these, such, many = f"these {w['rows']}", f"such {w['row']}", f"such {w['rows']}"
    else:
        these, such, many = f"all the {w['rows']}", w["row"], w["rows"]
    return {
        "sum": f"What is the total {w['m1']} of {these}?",
        "count": f"How many {many} are there?",
        "mean": f"What is the average {w['m2']} of {these}?",
        "max": f"What is the highest {w['m2']} among {these}?",
        "median": f"What is the median {w['m2']} of {these}?",
        "days": f"On how many different days was there at least one {such}?",
    }[final]


def features(q: Q, plan: dict) -> dict:
    """The measured features of a plan: constraints (scope conditions, the join, each pick) and distractors (data
    columns and files the question never needs but an analyst must look past)."""
    used = set()
    for c in plan["scope"]:
        used.add({"year": "date", "months": "date", "weekend": "date", "m2_min": "m2"}.get(c[0], c[0]))
    for dim, agg, _ in plan["picks"]:
        used.add("date" if dim == "month" else dim)
        if agg != "count":
            used.add({"sum": "m1", "mean": "m2"}[agg])
    if plan["join"]:
        used.add("c1")
        if plan["join"][0] == "target":
            used |= {"m1", "date"}
    if plan["final"] != "count":
        used.add({"sum": "m1", "share": "m1", "days": "date"}.get(plan["final"], "m2"))
    columns = {"c1", "c2", "m1", "m2", "date"}
    files = main_files(q.th, q.cfg)
    years = {c[1] for c in plan["scope"] if c[0] == "year"}
    unused_files = 0 if plan["join"] else 1
    if len(files) > 1 and years and not (plan["join"] and plan["join"][0] == "target"):
        unused_files += len(files) - len(years)
    return {
        "constraints": len(plan["scope"]) + bool(plan["join"]) + len(plan["picks"]),
        "distractors": len(columns - used) + unused_files,
        "user_facts": 0,
    }
