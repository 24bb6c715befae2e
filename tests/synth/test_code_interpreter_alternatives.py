"""Alternative correct episodes of code-interpreter tasks score 1.0 through the real env server: other call
orders and extra reads, the whole analysis in one cell, an independent implementation of the analysis (another
valid plan of cells), and the right number written in other clear formats. Wrong or hedged numbers still score
0. One task of every kind is sampled, from variants that differ in format, dirt and tools."""

from __future__ import annotations

import pytest
from toolgym.envs import replay
from toolgym.envs.runtime import LocalEnvServer
from toolgym.envs.spec import ToolCall
from toolgym.synth.code_interpreter import FAMILY as ci
from toolgym.synth.code_interpreter import data, kinds
from toolgym.synth.code_interpreter.themes import THEME

# An analyst's own take on a plan, written apart from the generator's cells: one pass per step over lists of
# records, defaultdicts and statistics.fmean; it reads the lookup file itself.
ALT_SOLVER = r"""
import csv, json, statistics
from collections import defaultdict


def alt_solve(rows, plan, col, lookup_name, attr, num, decimals, whole_m1, whole_m2):
    def holds(r, cond):
        kind, v = cond
        if kind == "year":
            return r["date"].year == v
        if kind == "months":
            return v[0] <= r["date"].month <= v[1]
        if kind == "weekend":
            return r["date"].isoweekday() in (6, 7)
        if kind in ("c1", "c2"):
            return r[col[kind]] == v
        return r[col["m2"]] is not None and r[col["m2"]] >= v

    def rounded(x, whole):
        return int(x) if whole else (round(x) if decimals == 0 else round(x, decimals))

    chosen = [r for r in rows if all(holds(r, c) for c in plan["scope"])]
    if plan["join"]:
        with open(lookup_name, encoding="utf-8") as f:
            if lookup_name.endswith(".csv"):
                entries = list(csv.DictReader(f))
            elif lookup_name.endswith(".jsonl"):
                entries = [json.loads(line) for line in f if line.strip()]
            else:
                entries = json.load(f)
        kind, v = plan["join"]
        if kind == "attr":
            keep = {e[col["c1"]] for e in entries if e[attr] == v}
        else:
            per = defaultdict(float)
            for r in rows:
                if r["date"].year == v and r[col["m1"]] is not None:
                    per[r[col["c1"]]] += r[col["m1"]]
            keep = {e[col["c1"]] for e in entries if per[e[col["c1"]]] > float(e[num])}
        chosen = [r for r in chosen if r[col["c1"]] in keep]
    steps = [chosen]
    for dim, agg, direction in plan["picks"]:
        key = (lambda r: r["date"].month) if dim == "month" else (lambda r, c=col[dim]: r[c])
        groups = defaultdict(list)
        for r in chosen:
            value = 1 if agg == "count" else r[col["m1" if agg == "sum" else "m2"]]
            if value is not None:
                groups[key(r)].append(value)
        score = {k: statistics.fmean(v) if agg == "mean" else sum(v) for k, v in groups.items()}
        best = sorted(score, key=score.get, reverse=direction == "max")[0]
        chosen = [r for r in chosen if key(r) == best]
        steps.append(chosen)
    m1 = [r[col["m1"]] for r in chosen if r[col["m1"]] is not None]
    m2 = [r[col["m2"]] for r in chosen if r[col["m2"]] is not None]
    final = plan["final"]
    if final == "share":
        whole = sum(r[col["m1"]] for r in steps[-2] if r[col["m1"]] is not None)
        return rounded(100 * sum(m1) / whole, False)
    return {
        "sum": lambda: rounded(sum(m1), whole_m1),
        "count": lambda: len(chosen),
        "days": lambda: len({r["date"] for r in chosen}),
        "max": lambda: rounded(max(m2), whole_m2),
        "mean": lambda: rounded(statistics.fmean(m2), False),
        "median": lambda: rounded(statistics.median(m2), False),
    }[final]()
"""


def _keys() -> list:
    """Variants that differ in format, dirt, years, tools and the answer-format rule."""
    want = [
        lambda c: c["main_format"] == "csv" and c["dirty"] and c["list_files"] and c["head"],
        lambda c: c["main_format"] == "jsonl" and not c["dirty"] and len(c["years"]) == 2,
        lambda c: c["main_format"] == "csv" and not c["dirty"] and c["decimals"] == 0,
        lambda c: c["main_format"] == "jsonl" and c["dirty"] and c["decimals"] == 3,
    ]
    return [next(k for k in ci.plan("full") if pred(ci.variant_config(k, 0))) for pred in want]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """(key, env dir, candidate) for one task of every kind in each sampled variant."""
    store = tmp_path_factory.mktemp("ci_alt")
    out = []
    for key in _keys():
        env_dir = ci.build_env(store, key, 0)
        by_kind = {}
        for c in ci.make_tasks(env_dir, key, 0, 24):
            by_kind.setdefault(c.extra["kind"], c)
        out += [(key, env_dir, c) for c in by_kind.values()]
    assert {c.extra["kind"] for *_, c in out} == set(kinds.KINDS)
    return out


def _task(c) -> dict:
    return {"id": "alt", "verifier": c.verifier, "params": c.params}


def _formats(value, decimals: int) -> list[str]:
    """The right number as people write it: tags, answer lines with prose after, boxes, currency and codes,
    thousands separators, a decimal comma, bold and a sentence around it."""
    text = f"{value}"
    grouped = f"{value:,}"
    out = [
        f"<answer>{text}</answer>",
        f"I ran 4 cells over 2 files.\n<answer> {grouped} </answer>",
        f"ANSWER: {text} (2021 and 2022 combined)",
        f"answer = {grouped} (from 3 steps)",
        f"The final value is \\boxed{{{text}}}, after 5 steps.",
        f"${grouped}",
        f"{grouped} EUR",
        f"After filtering 2 files and 12 months, the result is **{text}**.",
    ]
    frac = text.split(".")[1] if "." in text else ""
    if len(frac) != 3:  # "12,345" is a thousands group to every reader, not 12.345
        out.append(grouped.replace(",", " ").replace(".", ","))
    return out


def _near_miss(value, decimals: int):
    return value + 1 if isinstance(value, int) else round(value * 1.1 + 1, max(decimals, 1))


def test_other_formats_of_the_right_number_score_one(sample):
    server = {}
    for key, env_dir, c in sample:
        s = server.setdefault(key, LocalEnvServer(env_dir))
        value, decimals = c.extra["value"], c.params["places"]
        for answer in _formats(value, decimals):
            assert replay(s, _task(c), [], answer)["reward"] == 1.0, (c.extra["kind"], answer)
        wrong = _near_miss(value, decimals)
        for answer in (
            f"ANSWER: {wrong} (or maybe {value})",
            f"<answer>{wrong}</answer> {value}",
            f"{wrong}",
        ):
            assert replay(s, _task(c), [], answer)["reward"] == 0.0, (c.extra["kind"], answer)
    for s in server.values():
        s.close()


def test_other_call_orders_and_extra_reads_score_one(sample):
    """Look at the files first (and again in the middle), load the lookup file before the records where the
    task joins them, run a cell twice, or put the whole analysis into one cell."""
    server = {}
    for key, env_dir, c in sample:
        cfg = ci.variant_config(key, 0)
        s = server.setdefault(key, LocalEnvServer(env_dir))
        reads = []
        if cfg["list_files"]:
            reads.append(ToolCall(name=cfg["list_files"], arguments={}))
        if cfg["head"]:
            name, path, count = cfg["head"]
            first = data.main_files(THEME[key[0]], cfg)[0]
            reads.append(ToolCall(name=name, arguments={path: first, count: 4}))
        calls = list(c.solution)
        if c.extra["plan"]["join"]:  # the lookup cell needs nothing from the records cell
            calls[0], calls[1] = calls[1], calls[0]
        peek = ToolCall(name=cfg["python"], arguments={"code": "print(len(rows))\nrows[:2]"})
        orders = [
            reads + calls[:2] + [peek, calls[1]] + calls[2:],
            [calls[0], *reads, *calls[1:]],
            [
                ToolCall(
                    name=cfg["python"], arguments={"code": "\n".join(x.arguments["code"] for x in c.solution)}
                )
            ],
        ]
        for episode in orders:
            verdict = replay(s, _task(c), episode, c.answer)
            assert verdict["calls_ok"] and verdict["reward"] == 1.0, (c.extra["kind"], episode)
    for s in server.values():
        s.close()


def test_an_independent_analysis_scores_one(sample):
    """Another valid plan of cells: load, then one cell with an analyst's own implementation of the question
    (its own lookup reading, groupings and rounding) gives the same number, in the answer format of another
    variant."""
    server = {}
    for key, env_dir, c in sample:
        th, cfg = THEME[key[0]], ci.variant_config(key, 0)
        s = server.setdefault(key, LocalEnvServer(env_dir))
        col = {k: th[k]["col"] for k in ("c1", "c2", "m1", "m2")}
        call = (
            f"alt_solve(rows, {c.extra['plan']!r}, {col!r}, {data.lookup_file(th, cfg)!r}, "
            f"{th['lookup']['attr']!r}, {th['lookup']['num']!r}, {cfg['decimals']}, "
            f"{th['m1']['dec'] == 0}, {th['m2']['dec'] == 0})"
        )
        calls = [
            c.solution[0],
            ToolCall(name=cfg["python"], arguments={"code": ALT_SOLVER + "\n" + call}),
        ]
        verdict = replay(s, _task(c), calls, None, observe=True)
        got = verdict["observed"][-1]["content"].strip()
        assert verdict["calls_ok"], got
        answer = f"My own pass over the data gives {got}.\nANSWER: {got}"
        assert replay(s, _task(c), calls, answer)["reward"] == 1.0, (c.extra["kind"], got, c.extra["value"])
    for s in server.values():
        s.close()
