"""The data questions of the code-interpreter family: each maker draws its parameters from the question's rng
and returns (prompt slots, reference cells); the cells compute the answer from the variant's files."""

from __future__ import annotations

import calendar
import random
from datetime import date, timedelta

from .data import lookup_file, lookup_loader_code, main_files

MONTHS = list(calendar.month_name)
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class Q:
    """What a question maker sees: the theme, the variant, the clean records and a seeded rng, plus the small
    code-writing helpers every data question shares."""

    def __init__(self, th: dict, cfg: dict, recs: list[dict], rng: random.Random) -> None:
        self.th, self.cfg, self.recs, self.rng = th, cfg, recs, rng
        self.c1, self.c2, self.m1, self.m2 = (th[k]["col"] for k in ("c1", "c2", "m1", "m2"))

    def round(self, expr: str) -> str:
        """The expression rounded by the variant's rule."""
        d = self.cfg["decimals"]
        return f"round({expr})" if d == 0 else f"round({expr}, {d})"

    def total(self, expr: str, m: str = "m1") -> str:
        """A sum of measure `m`: exact for integer measures, rounded by the rule otherwise."""
        return f"int({expr})" if self.th[m]["dec"] == 0 else self.round(expr)

    def present(self, *cols: str) -> list[str]:
        """Conditions that leave out missing values (only dirty variants have them)."""
        return [f"r[{c!r}] is not None" for c in cols] if self.cfg["dirty"] else []

    def slots(self) -> dict:
        th = self.th
        return {
            "row": th["row"],
            "rows": th["rows"],
            "c1": th["c1"]["label"],
            "c2": th["c2"]["label"],
            "m1": th["m1"]["label"],
            "m2": th["m2"]["label"],
            "attr": th["lookup"]["attr"],
            "num_label": th["lookup"]["num_label"],
            "lookup_file": lookup_file(th, self.cfg),
            "src": " and ".join(
                main_files(th, self.cfg)
            ),  # names the variant's files: no two envs share a prompt
        }

    def fmt(self, value, m: str) -> str:
        return str(int(value)) if self.th[m]["dec"] == 0 else f"{value:.{self.th[m]['dec']}f}"

    def pick(self, k: str) -> str:
        return self.rng.choice(self.th[k]["values"])

    def year(self) -> int:
        return self.rng.choice(self.cfg["years"])


def _where(conds: list[str]) -> str:
    return f" if {' and '.join(conds)}" if conds else ""


def d_total(q: Q):
    expr = f"sum(r[{q.m1!r}] for r in rows{_where(q.present(q.m1))})"
    return {}, [q.total(expr)]


def d_count(q: Q):
    v = q.pick("c1")
    return {"v": v}, [f"sum(1 for r in rows if r[{q.c1!r}] == {v!r})"]


def d_mean(q: Q):
    w = q.pick("c2")
    conds = [f"r[{q.c2!r}] == {w!r}", *q.present(q.m2)]
    return {"w": w}, [
        f"values = [r[{q.m2!r}] for r in rows{_where(conds)}]\n" + q.round("sum(values) / len(values)")
    ]


def d_max(q: Q):
    w = q.pick("c2")
    conds = [f"r[{q.c2!r}] == {w!r}", *q.present(q.m2)]
    return {"w": w}, [q.round(f"max(r[{q.m2!r}] for r in rows{_where(conds)})")]


def d_missing(q: Q):
    if not q.cfg["dirty"]:
        return None
    return {}, [f"sum(1 for r in rows if r[{q.m1!r}] is None)"]


def _group_totals(q: Q, conds: list[str], key: str) -> str:
    """Code that adds measure m1 per `key` into `totals` over the rows meeting `conds`."""
    return (
        "totals = {}\nfor r in rows:\n"
        f"    if {' and '.join(conds + q.present(q.m1))}:\n"
        f"        totals[{key}] = totals.get({key}, 0) + r[{q.m1!r}]"
    )


def d_group_max(q: Q):
    y, month = q.year(), q.rng.randint(1, 12)
    conds = [f"r['date'].year == {y}", f"r['date'].month == {month}"]
    code = _group_totals(q, conds, f"r[{q.c1!r}]") + "\n" + q.total("max(totals.values())")
    return {"month": MONTHS[month], "year": y}, [code]


def d_filter_mean(q: Q):
    w = q.pick("c2")
    pool = sorted(r["m1"] for r in q.recs if r["c2"] == w and r["m1"] is not None)
    if len(pool) < 8 or pool[len(pool) // 2] == pool[-1]:
        return None
    t = pool[len(pool) // 2]
    conds = [f"r[{q.c2!r}] == {w!r}", *q.present(q.m1, q.m2), f"r[{q.m1!r}] > {t!r}"]
    code = f"values = [r[{q.m2!r}] for r in rows{_where(conds)}]\n" + q.round("sum(values) / len(values)")
    return {"w": w, "t": q.fmt(t, "m1")}, [code]


def d_distinct_days(q: Q):
    v, y = q.pick("c1"), q.year()
    return {"v": v, "year": y}, [
        f"len({{r['date'] for r in rows if r[{q.c1!r}] == {v!r} and r['date'].year == {y}}})"
    ]


def d_month_count(q: Q):
    w, y, month = q.pick("c2"), q.year(), q.rng.randint(1, 12)
    code = f"sum(1 for r in rows if r[{q.c2!r}] == {w!r} and r['date'].year == {y} and r['date'].month == {month})"
    return {"w": w, "month": MONTHS[month], "year": y}, [code]


def d_join_attr(q: Q):
    z = q.rng.choice(q.th["lookup"]["attr_values"])
    conds = [f"info[r[{q.c1!r}]][{q.th['lookup']['attr']!r}] == {z!r}", *q.present(q.m1)]
    code = lookup_loader_code(q.th, q.cfg) + "\n" + q.total(f"sum(r[{q.m1!r}] for r in rows{_where(conds)})")
    return {"z": z}, [code]


def d_join_target(q: Q):
    y = q.cfg["years"][-1]
    code = (
        lookup_loader_code(q.th, q.cfg)
        + "\n"
        + _group_totals(q, [f"r['date'].year == {y}"], f"r[{q.c1!r}]")
        + f"\nsum(1 for k, e in info.items() if totals.get(k, 0) > float(e[{q.th['lookup']['num']!r}]))"
    )
    return {"year": y}, [code]


def d_multi(q: Q):
    y, w = q.year(), q.pick("c2")
    start = date(y, 1, 1) + timedelta(days=q.rng.randrange(200))
    end = start + timedelta(days=q.rng.randint(40, 160))
    pool = sorted(r["m2"] for r in q.recs if r["m2"] is not None)
    t = pool[q.rng.randrange(len(pool) // 4, 3 * len(pool) // 4)]
    conds = [
        f"date({start.year}, {start.month}, {start.day}) <= r['date'] <= date({end.year}, {end.month}, {end.day})",
        f"r[{q.c2!r}] == {w!r}",
        *q.present(q.m2),
        f"r[{q.m2!r}] >= {t!r}",
    ]
    code = "from datetime import date\n" + f"sum(1 for r in rows{_where(conds)})"
    return {"d1": start.isoformat(), "d2": end.isoformat(), "w": w, "t": q.fmt(t, "m2")}, [code]


def d_join_mean(q: Q):
    z = q.rng.choice(q.th["lookup"]["attr_values"])
    conds = [f"info[r[{q.c1!r}]][{q.th['lookup']['attr']!r}] == {z!r}", *q.present(q.m2)]
    code = (
        lookup_loader_code(q.th, q.cfg)
        + f"\nvalues = [r[{q.m2!r}] for r in rows{_where(conds)}]\n"
        + q.round("sum(values) / len(values)")
    )
    return {"z": z}, [code]


def _monthly(q: Q, conds: list[str]) -> str:
    return (
        "monthly = [0] * 12\nfor r in rows:\n"
        f"    if {' and '.join(conds + q.present(q.m1))}:\n"
        f"        monthly[r['date'].month - 1] += r[{q.m1!r}]"
    )


def d_monthly_median(q: Q):
    v, y = q.pick("c1"), q.year()
    code = "import statistics\n" + _monthly(q, [f"r[{q.c1!r}] == {v!r}", f"r['date'].year == {y}"])
    return {"v": v, "year": y}, [code + "\n" + q.round("statistics.median(monthly)")]


def d_mom_increase(q: Q):
    y = q.year()
    code = (
        _monthly(q, [f"r['date'].year == {y}"])
        + "\n"
        + q.total("max(b - a for a, b in zip(monthly, monthly[1:]))")
    )
    return {"year": y}, [code]


def d_weekday(q: Q):
    y, k = q.year(), q.rng.randrange(7)
    conds = [f"r['date'].year == {y}", f"r['date'].weekday() == {k}", *q.present(q.m1)]
    return {"year": y, "weekday": WEEKDAYS[k]}, [q.total(f"sum(r[{q.m1!r}] for r in rows{_where(conds)})")]


def d_share(q: Q):
    v, w = q.pick("c1"), q.pick("c2")
    conds = [f"r[{q.c1!r}] == {v!r}", *q.present(q.m1)]
    code = (
        f"mine = [r for r in rows{_where(conds)}]\n"
        f"part = sum(r[{q.m1!r}] for r in mine if r[{q.c2!r}] == {w!r})\n"
        + q.round(f"100 * part / sum(r[{q.m1!r}] for r in mine)")
    )
    return {"v": v, "w": w}, [code]


def d_streak(q: Q):
    v, y = q.pick("c1"), q.year()
    code = (
        "from datetime import timedelta\n"
        f"days = {{r['date'] for r in rows if r[{q.c1!r}] == {v!r} and r['date'].year == {y}}}\n"
        "best = 0\nfor d in days:\n"
        "    if d - timedelta(days=1) not in days:  # d starts a run\n"
        "        length = 1\n"
        "        while d + timedelta(days=length) in days:\n"
        "            length += 1\n"
        "        best = max(best, length)\nbest"
    )
    return {"v": v, "year": y}, [code]


def d_window(q: Q):
    y, k = q.year(), q.rng.choice([7, 10, 14, 30])
    code = (
        "from datetime import date, timedelta\n"
        + _group_totals(q, [f"r['date'].year == {y}"], "r['date']")
        + f"\nstart = date({y}, 1, 1)\n"
        f"series = [totals.get(start + timedelta(days=i), 0) for i in range((date({y}, 12, 31) - start).days + 1)]\n"
        + q.total(f"max(sum(series[i:i + {k}]) for i in range(len(series) - {k - 1}))")
    )
    return {"year": y, "k": k}, [code]
