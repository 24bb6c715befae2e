"""The code-interpreter family: data-analysis environments around the reference environment's stateful Python
session (reference/code_interpreter), one variant per (theme, variant index). This module holds the variant axes
and `CodeInterpreterFamily` (plan, environment, tasks, hardening); `themes.py` the themes, `data.py` the records,
files and loader code, `questions.py` the question plans and how they read as cells and sentences, `kinds.py`
the ladder.

A theme (`themes.py`, data only: sales, weather stations, sensor logs, ...) names a fact table with a date, two
category columns and two measures, and a lookup file keyed by the first category. A variant fixes, from
(seed, theme, index):

* the tool set: the Python tool's name (its session and code are the reference's: one jinja2 source,
  `templates/code_interpreter/python.j2`, renders both), an optional file-listing tool and an optional `head`
  preview tool with its own names and parameters;
* the rules: how non-integer answers are rounded and where the final number should stand (\\boxed{}, an
  `ANSWER:` line or <answer> tags); the verifier reads the number with the shared normalizer
  (toolgym_env.answer_number), so a right number in another clear format still counts;
* the data: CSV or JSON Lines, delimiter and decimal comma, date format, one file or one per year, 600 to 3000
  rows, sorted or not, and "dirty" variants with missing values, duplicated records and untidy labels.

Every task is a multi-step analysis of the data (`questions.py`): load, optionally join the lookup file, a chain
of picks each depending on the one before, and a final aggregate; the reference solution is one cell per step
and the expected number is what those cells compute on a scratch copy of state/. The level is the number of
dependent steps after loading (1 to 5, so 2 to 6 calls); each candidate records its measured features
(constraints, distractors) in `extra["features"]`, and `harden` adds a condition to one found too easy.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import random
import shutil
import statistics
import tempfile
from pathlib import Path

from toolgym.envs.inside.toolgym_env import numbers_in, same_number
from toolgym.envs.spec import EnvLimits, ToolCall

from ..family import Candidate, Family, Key, asked, jinja
from .data import loader_code, lookup_file, main_files, make_lookup, make_records, write_state
from .kinds import KINDS, kind_order
from .questions import PICK_MARGIN, Q, draw_plan, extra_literal, features, realize
from .themes import THEME, THEMES

VARIANTS_PER_THEME = 4
LIMITS = EnvLimits(call_timeout_s=130.0, max_result_chars=30000, max_steps=30)  # the reference env's

PYTHON_NAMES = ["python", "run_python", "execute_python", "ipython"]
LIST_NAMES = [None, "list_files", "ls", "list_data_files"]
HEADS = [None, ("head", "path", "n"), ("preview_file", "file", "lines"), ("peek", "filename", "count")]
ANSWER_FORMATS = {
    "boxed": "give the final answer as a number in \\boxed{} in a reply without a tool call",
    "answer_line": "end your final reply (without a tool call) with a line `ANSWER: <number>`",
    "tag": "give the final answer as <answer>NUMBER</answer> in a reply without a tool call",
}
FORMAT_WHERE = {"boxed": "a \\boxed{}", "answer_line": "an 'ANSWER:' line", "tag": "<answer>...</answer>"}
OPENINGS = ["The data is in {src}.", "Use {src}.", "Work from {src}."]
DATE_FORMATS = [
    "%Y-%m-%d",
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%Y%m%d",
    "%Y-%m-%dT%H:%M:%S",
    "%d-%b-%Y",
    "%Y/%m/%d %H:%M",
]
DELIMITERS = [",", ";", "\t", "|"]
MISSING_TOKENS = ["", "NA", "null", "-", "n/a"]
MAX_ANSWER = 1e10
RANDOM_POLICY_ANSWERS = {42.0}
"""Numbers agent.policies.RandomPolicy may end on: a task with that answer could be won by chance."""
TRIES_PER_TASK = 8
"""Plans drawn per candidate slot at most (a plan is dropped on a tie, a thin selection or an unusable
answer)."""


def _files_text(th: dict, cfg: dict) -> str:
    main = " and ".join(main_files(th, cfg))
    lk = th["lookup"]
    return (
        f"{main} (one {th['row']} per {'line' if cfg['main_format'] == 'jsonl' else 'row'}) and "
        f"{lookup_file(th, cfg)} (one entry per {th['c1']['label']}: its {lk['attr']} and {lk['num_label']})"
    )


def _rules(th: dict, cfg: dict) -> list[str]:
    d = cfg["decimals"]
    rules = [
        "give non-integer answers rounded to the nearest whole number"
        if d == 0
        else f"give non-integer answers rounded to {d} decimal place{'s' * (d > 1)}"
    ]
    if cfg["dirty"]:
        rules += [
            f"a {th['row']} listed more than once (the same {th['id']}) counts once",
            "a missing value is left out of the sums, averages, extremes and comparisons of its column",
            "labels may differ in letter case and surrounding spaces and still name the same thing",
        ]
    return rules


def _tool_names(cfg: dict) -> dict:
    head = cfg["head"] or (None, None, None)
    return {
        "python": cfg["python"],
        "list_files": cfg["list_files"],
        "head": head[0],
        "head_path": head[1],
        "head_count": head[2],
    }


def _usable(value) -> bool:
    """A number a question can ask for: finite, not 0 (a do-nothing guess), not one a random episode ends on,
    and small enough for the normalizer to read it back exactly."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value == value and 0 < abs(value) < MAX_ANSWER and float(value) not in RANDOM_POLICY_ANSWERS


def _answer_text(value, fmt: str) -> str:
    if fmt == "boxed":
        return f"The answer is \\boxed{{{value}}}."
    if fmt == "answer_line":
        return f"I computed it with Python.\nANSWER: {value}"
    return f"<answer>{value}</answer>"


def _perturbed(value, decimals: int):
    """A near miss that the verifier tells apart: off by one for integers, 10% off (kept to the rounding rule)
    otherwise."""
    if isinstance(value, int):
        return value + 1
    near = round(value * 1.1, decimals) if decimals else round(value * 1.1)
    return near if not same_number(near, value, decimals) else value + 1


def run_cell(code: str, g: dict, cwd: Path):
    """The value of a cell's last expression (None without one), run like the Python tool runs it: in the
    working folder, with the namespace `g` kept for the next cell."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(tree, "<cell>", "exec"), g)
            return None if last is None else eval(compile(ast.Expression(last.value), "<cell>", "eval"), g)
    finally:
        os.chdir(old)


def _holds(check: dict | None, g: dict, c1_count: int, cwd: Path) -> bool:
    """Whether a cell's result leaves the question well posed: a join keeps some but not all values (and no
    total sits within 1% of its target), a pick has one clear winner among every group it could name, the final
    selection holds enough records."""
    if check is None:
        return True
    if "keep" in check:
        keep = g["keep"]
        if not 0 < len(keep) < c1_count:
            return False
        if "targets" in check:
            num = check["num"]
            return all(
                abs(g["totals"].get(k, 0) - float(e[num])) > 0.01 * float(e[num])
                for k, e in g["info"].items()
            )
        return True
    if "pick" in check:
        ranking = g["ranking"]
        domain = check["domain"] if check["domain"] is not None else len(g["keep"])
        if len(ranking) < 2 or (check["dir"] == "min" and len(ranking) != domain):
            return False  # a group with no records could be the smallest one
        ordered = sorted(ranking.values(), reverse=check["dir"] == "max")
        return abs(ordered[0] - ordered[1]) > PICK_MARGIN * max(abs(ordered[0]), 1e-9)
    return run_cell(check["rows"], g, cwd) >= check["min"]


class CodeInterpreterFamily(Family):
    """Data files around a stateful Python session, 20 themes in four variants each; every task a multi-step
    analysis of the variant's own data."""

    NAME = "code_interpreter"
    CATEGORY = "code_interpreter"
    VERSION = "4"
    """3: data questions only (the maths puzzles are gone), each a chain of dependent cells (2 to 6 calls by
    level); answers read by the shared normalizer in any clear format; measured features; `harden`."""
    SCALES = {"tiny": (2, 6), "demo": (5, 12), "small": (10, 20), "full": (80, 70)}
    """scale -> (environments, candidate tasks per environment): 20 themes x 4 variants at full scale, 70
    candidates each (14 per level); about 5,600 candidates, nearly all admitted."""

    def plan(self, scale: str) -> list[Key]:
        """(theme, variant index) for every environment of the scale, in a fixed order."""
        n_envs = self.SCALES[scale][0]
        if scale == "tiny":  # two themes whose variants differ in tool set, rules and data shape
            return [(THEMES[0]["name"], 1), (THEMES[9]["name"], 3)]
        if scale in ("demo", "small"):  # themes spread over the list, every variant shape in turn
            step = len(THEMES) // n_envs
            return [(THEMES[step * i]["name"], i % VARIANTS_PER_THEME) for i in range(n_envs)]
        return [(t["name"], v) for t in THEMES for v in range(VARIANTS_PER_THEME)]

    def env_id(self, key: Key) -> str:
        return f"ci_{key[0]}_v{key[1]:03d}"

    def domain(self, key: Key) -> str:
        return key[0]

    def variant_config(self, key: Key, seed: int) -> dict:
        """Everything a variant fixes. The main axes rotate with v (offset by the theme's index), so the variants
        of one theme each get another Python tool name, rounding rule and file format; the rest is drawn."""
        theme, v = key
        ti = [t["name"] for t in THEMES].index(theme)
        rng = random.Random(f"{seed}:{theme}:{v}:config")
        main_format = ["csv", "jsonl"][(v + ti) % 2]
        delimiter = rng.choice(DELIMITERS) if main_format == "csv" else ","
        years = 1 + (v // 2 + ti) % 2
        head = HEADS[(v + 2 * ti) % 4]
        return {
            "v": v,
            "python": PYTHON_NAMES[(v + ti) % 4],
            "list_files": LIST_NAMES[(v + ti // 2) % 4],
            "head": head,
            "head_default": rng.choice([5, 10]),
            "answer_format": list(ANSWER_FORMATS)[(v + ti // 3) % 3],
            "decimals": (v + ti // 4) % 4,
            "main_format": main_format,
            "delimiter": delimiter,
            "decimal_comma": delimiter == ";" and rng.random() < 0.7,
            "date_format": rng.choice(DATE_FORMATS),
            "dirty": (v + ti) % 4 in (1, 2),
            "missing": rng.choice(MISSING_TOKENS),
            "years": list(range(2024 - years + 1 - ti % 3, 2024 - ti % 3 + 1)),
            "rows": int(
                round(600 * 5 ** rng.random())
            ),  # 600..3000, log-uniform: enough records for a chain of picks
            "shuffled": rng.random() < 0.3,
            "lookup_format": rng.choice(["json", "csv", "jsonl"]),
            "column_order": rng.sample(range(4), 4),
        }

    def build_env(self, store: Path, key: Key, seed: int) -> Path:
        """Write `<store>/<env_id>/` for one variant, deterministically."""
        theme, v = key
        th, cfg = THEME[theme], self.variant_config(key, seed)
        out = Path(store) / self.env_id(key)
        if (out / "state").exists():
            shutil.rmtree(out / "state")
        (out / "state").mkdir(parents=True)
        recs = make_records(th, cfg, seed)
        write_state(out / "state", th, cfg, recs, make_lookup(th, cfg, recs, seed), seed)
        n = _tool_names(cfg)
        fmt = cfg["answer_format"]
        ctx = {
            "title": th["title"][0].upper() + th["title"][1:],
            "about": th["title"],
            "variant": v,
            "n": n,
            "files_text": _files_text(th, cfg),
            "head_default": cfg["head_default"],
            "head_max": 50,
            "head_hint": "list the files to see their names."
            if n["list_files"]
            else "the task names the files.",
            "format_where": FORMAT_WHERE[fmt],
        }
        (out / "tools.py").write_text(jinja().get_template("code_interpreter/tools.py.j2").render(**ctx))
        (out / "verify.py").write_text(jinja().get_template("code_interpreter/verify.py.j2").render(**ctx))
        description = (
            f"You are a careful analyst for {th['title']}, with a Python tool (`{n['python']}`) whose session "
            f"keeps its variables between calls and runs in the working folder. The working folder holds "
            f"{_files_text(th, cfg)}. Questions are about this data and take several steps; use code for every "
            f"computation. Rules: {'; '.join(_rules(th, cfg))}. Then {ANSWER_FORMATS[fmt]}."
        )
        return self.write_spec(out, key, seed, description, LIMITS)

    def make_tasks(self, env_dir: Path, key: Key, seed: int, n_tasks: int) -> list[Candidate]:
        """Candidates, one per slot, the kinds taken in turn from the variant's own offset (so every level gets
        a fifth). Each plan is run cell by cell on a scratch copy of state/, and dropped (another plan of the
        slot's kind is drawn) when a step is ill posed (a tie, a thin selection) or the answer unusable. The guess is a sibling question's answer of the same kind, or a
        near miss when the kind has no sibling."""
        theme, v = key
        order = kind_order()
        offset = ([t["name"] for t in THEMES].index(theme) * 7 + v * 3) % len(order)
        q = self._question(key, seed)
        out, seen = [], set()
        with self._scratch(env_dir, q) as (scratch, base):
            for i in range(n_tasks):
                first = order[(offset + i) % len(order)]
                level = KINDS[first]["level"]
                kinds = [first] + [k for k in KINDS if KINDS[k]["level"] == level and k != first]
                # another plan of the slot's level when one is ill posed, so every level keeps its share
                for t in range(TRIES_PER_TASK):
                    kind = kinds[t % len(kinds)]
                    rng = random.Random(f"{seed}:{theme}:{v}:task:{i}:{t}")
                    plan = draw_plan(q, KINDS[kind], rng)
                    text = json.dumps(plan, sort_keys=True)
                    if text in seen:  # the same analysis asked again
                        continue
                    seen.add(text)
                    c = self._candidate(q, base, scratch, kind, rng.randrange(len(OPENINGS)), plan)
                    if c is not None and not asked(out, c.prompt):
                        out.append(c)
                        break
        for c in out:
            kind, value = c.extra["kind"], c.extra["value"]
            siblings = [
                o.extra["value"]
                for o in out
                if o.extra["kind"] == kind and not same_number(o.extra["value"], value, q.cfg["decimals"])
            ]
            c.guess = _answer_text(
                siblings[0] if siblings else _perturbed(value, q.cfg["decimals"]), q.cfg["answer_format"]
            )
        return out

    def harden(
        self, env_dir: Path, key: Key, seed: int, candidate: Candidate, reason: str
    ) -> Candidate | None:
        """A harder variant of a candidate found too easy: the same analysis with one more scope condition (a
        threshold, a label, weekends, a span of months), re-run on the data; None when no condition can be added
        that leaves the question well posed. The steps taken are kept in `extra["hardened"]`."""
        plan = candidate.extra.get("plan")
        if plan is None:
            return None
        q = self._question(key, seed)
        done = candidate.extra.get("hardened", [])
        rng = random.Random(f"{seed}:{key[0]}:{key[1]}:harden:{candidate.prompt[0]}:{reason}:{len(done)}")
        with self._scratch(env_dir, q) as (scratch, base):
            for _ in range(TRIES_PER_TASK):
                harder = extra_literal(q, plan, rng)
                if harder is None:
                    return None
                c = self._candidate(
                    q, base, scratch, candidate.extra["kind"], candidate.extra["opening"], harder
                )
                if c is not None and not same_number(
                    c.extra["value"], candidate.extra["value"], q.cfg["decimals"]
                ):
                    c.extra["hardened"] = [*done, reason]
                    c.guess = _answer_text(
                        _perturbed(c.extra["value"], q.cfg["decimals"]), q.cfg["answer_format"]
                    )
                    return c
        return None

    def _question(self, key: Key, seed: int) -> Q:
        th, cfg = THEME[key[0]], self.variant_config(key, seed)
        return Q(th, cfg, make_records(th, cfg, seed))

    @contextlib.contextmanager
    def _scratch(self, env_dir: Path, q: Q):
        """(a scratch copy of state/, the namespace after the load cell ran there): every plan of an
        environment starts from the loaded rows, so the files are parsed once."""
        with tempfile.TemporaryDirectory() as scratch:
            for p in sorted((Path(env_dir) / "state").iterdir()):
                shutil.copyfile(p, Path(scratch) / p.name)
            base: dict = {}
            run_cell(loader_code(q.th, q.cfg), base, Path(scratch))
            yield Path(scratch), base

    def _candidate(
        self, q: Q, base: dict, scratch: Path, kind: str, opening: int, plan: dict
    ) -> Candidate | None:
        """The candidate of a plan, or None when a step is ill posed or the answer unusable."""
        cells, says, checks = realize(q, plan)
        g = dict(base)  # cells only add names; the loaded rows are shared, never changed
        c1_count = len(q.th["c1"]["values"])
        value = None
        try:
            for cell, check in zip(cells, checks, strict=True):
                value = run_cell(cell, g, scratch)
                if not _holds(check, g, c1_count, scratch):
                    return None
        except (ZeroDivisionError, ValueError, KeyError, statistics.StatisticsError):
            return None  # an empty selection
        if not _usable(value):
            return None
        cfg = q.cfg
        words = q.words()
        prompt = [" ".join([OPENINGS[opening].format(src=words["src"]), *says])]
        if any(same_number(n, value, cfg["decimals"]) for n in numbers_in(prompt[0])):
            return None  # an answer that could be copied from the question (a year, a threshold)
        load = loader_code(q.th, cfg) + "\nlen(rows)"
        solution = [ToolCall(name=cfg["python"], arguments={"code": c}) for c in [load, *cells]]
        return self.candidate(
            kind,
            opening,
            difficulty=KINDS[kind]["level"],
            prompt=prompt,
            verifier="check_number",
            params={"expected": float(value), "places": cfg["decimals"]},
            solution=solution,
            answer=_answer_text(value, cfg["answer_format"]),
            extra={
                "kind": kind,
                "value": value,
                "plan": plan,
                "opening": opening,
                "features": features(q, plan),
            },
        )


FAMILY = CodeInterpreterFamily()
