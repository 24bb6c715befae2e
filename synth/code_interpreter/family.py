"""The code-interpreter family: data-analysis and maths environments around the reference environment's stateful
Python session (reference/code_interpreter), one variant per (theme, variant index). This module holds the
variant axes and `CodeInterpreterFamily` (plan, environment, tasks); `themes.py` the themes, `data.py` the
records, files and loader code, `questions.py` and `maths.py` the question makers, `kinds.py` the ladder.

A theme (`themes.py`, data only: sales, weather stations, sensor logs, ...) names a fact table with a date, two
category columns and two measures, and a lookup file keyed by the first category. A variant fixes, from
(seed, theme, index):

* the tool set: the Python tool's name (its session and code are the reference's: one jinja2 source,
  `templates/code_interpreter/python.j2`, renders both), an optional file-listing tool and an optional `head`
  preview tool with its own names and parameters;
* the rules: how non-integer answers are rounded and where the final number must stand (\\boxed{}, an
  `ANSWER:` line or <answer> tags; verify.py wraps the shared `check_number` accordingly);
* the data: CSV or JSON Lines, delimiter and decimal comma, date format, one file or one per year, 200 to 3000
  rows, sorted or not, and "dirty" variants with missing values, duplicated records and untidy labels.

Tasks are questions whose reference solution is Python cells (the last expression is the answer); the builder
computes the expected number by running the same code with the reference builder's `run_reference` in a
scratch copy of state/. Ladder: 1 a single aggregate or small maths, 2 a filtered group-by or a DP, 3 a join
with the lookup file or several conditions, 4 two cells (load and clean, then a multi-step computation), 5 a
harder algorithm (streaks, sliding windows, fast doubling, digit DP, ...).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

from toolgym.envs.spec import EnvLimits, ToolCall

from ..family import Candidate, Family, Key, asked, jinja, render_prompt
from ..reference.code_interpreter.build import run_reference
from .data import loader_code, lookup_file, main_files, make_lookup, make_records, write_state
from .kinds import KINDS, kind_order
from .questions import Q
from .themes import THEME, THEMES

VARIANTS_PER_THEME = 4
LIMITS = EnvLimits(call_timeout_s=130.0, max_result_chars=30000, max_steps=30)  # the reference env's

PYTHON_NAMES = ["python", "run_python", "execute_python", "ipython"]
LIST_NAMES = [None, "list_files", "ls", "list_data_files"]
HEADS = [None, ("head", "path", "n"), ("preview_file", "file", "lines"), ("peek", "filename", "count")]
ANSWER_FORMATS = {
    "boxed": (
        "check_number",
        "give the final answer as a number in \\boxed{} in a reply without a tool call",
    ),
    "answer_line": (
        "check_answer_line",
        "end your final reply (without a tool call) with a line `ANSWER: <number>`",
    ),
    "tag": (
        "check_answer_tag",
        "give the final answer as <answer>NUMBER</answer> in a reply without a tool call",
    ),
}
FORMAT_WHERE = {"answer_line": "on the last 'ANSWER:' line", "tag": "inside <answer>...</answer>"}
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
"""Answers stay below this so the verifier's relative tolerance (REL_TOL) still tells integers apart."""
REL_TOL = 1e-12
RANDOM_POLICY_ANSWERS = {42.0}
"""Numbers agent.policies.RandomPolicy may end on: a task with that answer could be won by chance."""


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
    and small enough for the verifier's tolerance to tell neighbours apart."""
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
    """A near miss: off by one for integers, 10% off (kept to the rounding rule) otherwise."""
    if isinstance(value, int):
        return value + 1
    near = round(value * 1.1, decimals) if decimals else round(value * 1.1)
    return near if near != value else value + 1


def _solution(cfg: dict, th: dict, uses_data: bool, cells: list[str]) -> list[ToolCall]:
    """A careful analyst's calls: look at the files when the tools allow it, then run the cells."""
    calls = []
    if uses_data and cfg["list_files"]:
        calls.append(ToolCall(name=cfg["list_files"], arguments={}))
    if uses_data and cfg["head"]:
        name, path, count = cfg["head"]
        calls.append(ToolCall(name=name, arguments={path: main_files(th, cfg)[0], count: 3}))
    return calls + [ToolCall(name=cfg["python"], arguments={"code": c}) for c in cells]


class CodeInterpreterFamily(Family):
    """Data files and maths questions around a stateful Python session, 20 themes in four variants each."""

    NAME = "code_interpreter"
    CATEGORY = "code_interpreter"
    VERSION = "2"
    """2: the tools.py docstring names the template the session comes from (it named envs/reference/...)."""
    SCALES = {"tiny": (2, 6), "demo": (5, 12), "small": (10, 20), "full": (80, 38)}
    """scale -> (environments, candidate tasks per environment): 20 themes x 4 variants at full scale. 38
    candidates ask each of the 38-39 question kinds about once per environment; almost none is dropped, so about
    3,000 tasks are kept, and validation (one REPL process per episode that runs code) stays near 150 s with 2
    workers."""

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
            "rows": int(round(200 * 15 ** rng.random())),  # 200..3000, log-uniform: most files stay small
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
            "answer_format": fmt,
            "format_where": FORMAT_WHERE.get(fmt, ""),
            "python_tool": repr(n["python"]),
        }
        (out / "tools.py").write_text(jinja().get_template("code_interpreter/tools.py.j2").render(**ctx))
        (out / "verify.py").write_text(jinja().get_template("code_interpreter/verify.py.j2").render(**ctx))
        description = (
            f"You are a careful analyst for {th['title']}, with a Python tool (`{n['python']}`) whose session "
            f"keeps its variables between calls and runs in the working folder. The working folder holds "
            f"{_files_text(th, cfg)}. Questions are about this data, or are maths and counting problems. Use code "
            f"for every computation. Rules: {'; '.join(_rules(th, cfg))}. Then {ANSWER_FORMATS[fmt][1]}."
        )
        return self.write_spec(out, key, seed, description, LIMITS)

    def make_tasks(self, env_dir: Path, key: Key, seed: int, n_tasks: int) -> list[Candidate]:
        """Candidates, the kinds taken in turn from the variant's own offset. Each expected value is what the
        reference cells compute on a scratch copy of state/; the guess is a sibling question's answer, or a near
        miss when the kind has no sibling."""
        theme, v = key
        th, cfg = THEME[theme], self.variant_config(key, seed)
        recs = make_records(th, cfg, seed)
        loader = loader_code(th, cfg)
        order = kind_order()
        offset = ([t["name"] for t in THEMES].index(theme) * 7 + v * 3) % len(order)
        fmt = cfg["answer_format"]
        out, seen = [], set()
        with tempfile.TemporaryDirectory() as scratch:
            for p in sorted((Path(env_dir) / "state").iterdir()):
                shutil.copyfile(p, Path(scratch) / p.name)
            for k in range(n_tasks * 3):
                if len(out) == n_tasks:
                    break
                kind = order[(offset + k) % len(order)]
                level, uses_data, maker, phrasings = KINDS[kind]
                q = Q(th, cfg, recs, random.Random(f"{seed}:{theme}:{v}:task:{k}"))
                made = maker(q)
                if made is None:
                    continue
                slots, cells = made
                if uses_data:  # the data is loaded in the first cell, or in a cell of its own at level 4
                    cells = [loader + "\nlen(rows)", *cells] if level == 4 else [loader + "\n" + cells[0]]
                code = "\n".join(cells)
                if code in seen:  # the same computation asked again
                    continue
                seen.add(code)
                try:
                    value = run_reference(code, Path(scratch))
                except (
                    ZeroDivisionError,
                    ValueError,
                ):  # an empty selection (no rows that month): ask another
                    continue
                if not _usable(value):
                    continue
                t_index = q.rng.randrange(len(phrasings))
                prompt = [render_prompt(phrasings[t_index], **q.slots(), **slots)]
                if asked(out, prompt):
                    continue
                out.append(
                    self.candidate(
                        kind,
                        t_index,
                        difficulty=level,
                        prompt=prompt,
                        verifier=ANSWER_FORMATS[fmt][0],
                        params={"expected": float(value), "rel_tol": REL_TOL},
                        solution=_solution(cfg, th, uses_data, cells),
                        answer=_answer_text(value, fmt),
                        extra={"kind": kind, "value": value},
                    )
                )
        for c in out:
            kind, value = c.extra["kind"], c.extra["value"]
            siblings = [
                o.extra["value"] for o in out if o.extra["kind"] == kind and o.extra["value"] != value
            ]
            c.guess = _answer_text(siblings[0] if siblings else _perturbed(value, cfg["decimals"]), fmt)
        return out


FAMILY = CodeInterpreterFamily()
