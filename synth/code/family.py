"""The code family: the reference code-repair environment (reference/code_repair) generalized into generated
repositories with injected bugs. This module holds `CodeFamily` (plan, environment, issues and their reference
fixes); `library.py` the function library and its inputs, `mutate.py` the bugs, `repo.py` a repository and its
files, `tools.py` a variant's tool set, rules and rendered sources.

Data. `templates/code/library.py` holds ~65 small, correct pure-Python utilities in sections (text, lists,
maths, stats, dates as (y, m, d) tuples, parsing, intervals, matrices, money in cents); `library.INPUTS` has an
input generator for each. Bugs are mutants of a function's source: an operator on its AST (comparison flip,
wrong arithmetic operator, off-by-one constant or bound, dropped or inverted condition, dropped branch, swapped
arguments, min/max swap, wrong default) rewrites one source span. A mutant is admitted only when it changes the
output on some generated inputs, never raises TypeError and always terminates (a trace budget), so hidden tests
whose expected values come from the correct function fail on it. A two-site mutant applies two admitted ones
at separate places of one function (two related bugs, or a bug and a dropped edge-case guard): its hidden tests
include calls each site alone breaks, so both need a fix.

An environment is a repository: a package named from a fixed word list, 2-4 modules (one per library section)
holding 6-10 functions (callers pull in what they call), a README, visible tests in tests/ for the functions
that neither are buggy nor call a buggy one (so they pass at the start), and 3-6 bugs, one per function (about
a third of them two-site where the function has such mutants), no bug reachable from another. A variant fixes

- the tool set (from `TOOL_AXES`): a paged, line-numbered `read_file` or the reference's whole-file one, an
  optional `search_code`, an optional `run_shell`, `write_file` exposed or not, the edit tool named
  `replace_in_file(path, old, new)` or `apply_edit(path, search, replace)`, `run_tests()` or `run_tests(path)`;
  every tool the reference also has is rendered from the same template (`templates/code/repo_tools.j2`);
- the rules (verified): the original visible tests must pass (always), and optionally tests/ untouched, no
  file created or deleted, run_tests called after the last edit;
- the data: the repository.

Tasks are issues from jinja2 templates, each with a failing call computed from the correct vs the buggy
function; the verifier judges by behaviour (`toolgym_env.same_behaviour`: the task's hidden cases and the
original visible cases in one child interpreter; an unchanged package scores 0 without one). Difficulty: 1 the
issue names the function, its file and the failing call; 2 the function and the call only; 3 a symptom only (a
caller of the buggy function fails); 4 a two-site bug (a failing call per site) or two bugs in one issue; 5
three bugs, shown through callers where the repository has them. The reference solution locates (search_code
or list_files), reads, edits each site with replace_in_file/apply_edit (a snippet occurring exactly once), runs
the tests and ends with answer text (no submit tool). Each candidate records its features (fixes needed as
constraints, functions to leave alone as distractors); `harden` reports one more bug beside an issue found too
easy.
"""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path

from toolgym.envs.schema import load_tools_module
from toolgym.envs.spec import EnvLimits, ToolCall

from ..family import Candidate, Family, Key, asked, render_prompt
from .library import library
from .repo import Repo, compose, first_group, hidden_cases, module_source, package_names, unique_examples
from .tools import render_sources, rules_text, tool_config

LIMITS = EnvLimits(call_timeout_s=130.0, max_result_chars=50000, max_steps=40)  # as the reference's
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
        "Users of {{ pkg }} report that `{{ fn }}()` misbehaves: for `{{ call }}` they expect {{ want }}. Please "
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
        "Please fix `{{ a.fn }}` and `{{ b.fn }}` in {{ pkg }}: `{{ a.call }}` should return {{ a.want }} and "
        "`{{ b.call }}` should return {{ b.want }}, but neither does.",
    ],
    "double": [
        "`{{ a.fn }}` in {{ pkg }} has more than one thing wrong:\n- `{{ a.call }}` {{ a.got }}; it should return "
        "{{ a.want }}.\n- `{{ b.call }}` {{ b.got }}; it should return {{ b.want }}.\nThe two failures have different "
        "causes. Please fix the function so both calls are right.",
        "Two failing calls of `{{ a.fn }}()` in {{ path }}: `{{ a.call }}` should return {{ a.want }} (it {{ a.got }}), "
        "and `{{ b.call }}` should return {{ b.want }} (it {{ b.got }}). Fixing one of them is not enough; fix "
        "the whole function.",
    ],
    "report": [
        "QA found {{ items | length }} wrong results in {{ pkg }}:\n{% for x in items %}- `{{ x.call }}` "
        "{{ x.got }} instead of returning {{ x.want }}\n{% endfor %}Find the root causes and fix them all.",
        "Release blocker for {{ pkg }}; each of these calls is wrong:\n{% for x in items %}* `{{ x.call }}` "
        "(expected {{ x.want }}; it {{ x.got }})\n{% endfor %}Please fix every underlying bug.",
    ],
}
LEVEL = {"located": 1, "named": 2, "symptom": 3, "double": 4, "pair": 4, "report": 5}


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


def _edits(repo: Repo, fn: str) -> list[tuple[str, str]]:
    """The buggy function's sources from shipped to correct, one fix at a time: a two-site bug is fixed in two
    edits (first site, then the second), each a separate step of the reference."""
    m = repo.bugs[fn]
    return (
        [(m.source, m.parts[1]), (m.parts[1], library()[fn].source)]
        if m.parts
        else [(m.source, library()[fn].source)]
    )


def _solution(repo: Repo, cfg: dict, bugs: list[str], callers: list[str], level: int) -> list[ToolCall]:
    """Tool calls that fix `bugs`: locate (search_code, or list_files), read, edit each site, run the tests."""
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
    for fn in bugs:
        m = repo.module_of(fn)
        for before, after in _edits(repo, fn):
            old, new = snippet(texts[m], before, after)
            texts[m] = texts[m].replace(old, new)
            calls.append(
                ToolCall(name=name, arguments={"path": repo.path_of(fn), old_arg: old, new_arg: new})
            )
    calls.append(ToolCall(name="run_tests"))
    return calls


def _answer(repo: Repo, bugs: list[str]) -> str:
    fixed = " and ".join(f"{fn} in {repo.path_of(fn)}" for fn in bugs)
    return f"I fixed {fixed}; the tests pass."


def _site_items(repo: Repo, fn: str, ex: dict) -> list:
    """For a two-site bug, one failing call per site (what the shipped repository answers), else the first."""
    if not repo.bugs[fn].parts:
        return [ex[fn][0]]
    items = []
    for wrong in repo.part_failing[fn]:
        args = {repr(x.args) for x in wrong}
        pick = next((x for x in ex[fn] if repr(x.args) in args and x not in items), None)
        if pick is None:
            return []
        items.append(pick)
    return items


def _issues(repo: Repo, rng: random.Random) -> dict[str, list[dict]]:
    """Per kind, the issues the repository supports: {bugs, callers, items (examples)}. A two-site bug is only
    ever reported with a failing call per site, so its issue shows both problems."""
    bugs = sorted(repo.bugs)
    callers_of = {b: sorted(c for c, r in repo.root_of.items() if r == b) for b in bugs}
    ex = {f: unique_examples(repo.failing[f]) for f in repo.failing if repo.failing[f]}
    out: dict[str, list[dict]] = {k: [] for k in PROMPTS}
    single = [b for b in bugs if not repo.bugs[b].parts]
    for b in bugs:
        if repo.bugs[b].parts:
            items = _site_items(repo, b, ex)
            if len(items) == 2:
                out["double"].append({"bugs": [b], "callers": [], "items": items})
            continue
        out["located"].append({"bugs": [b], "callers": [], "items": [ex[b][0]]})
        out["named"].append({"bugs": [b], "callers": [], "items": [ex[b][min(1, len(ex[b]) - 1)]]})
        for c in callers_of[b]:
            out["symptom"].append({"bugs": [b], "callers": [c], "items": [ex[c][0]]})
    for a, b in itertools.combinations(single, 2):
        out["pair"].append({"bugs": [a, b], "callers": [], "items": [ex[a][-1], ex[b][-1]]})
    for trio in itertools.combinations(bugs, 3):
        items, via = [], []
        for b in trio:
            if repo.bugs[b].parts:
                items += _site_items(repo, b, ex)
                continue
            c = rng.choice(callers_of[b]) if callers_of[b] else None
            via += [c] if c else []
            items.append(ex[c][0] if c else ex[b][0])
        if len(items) >= 3 and all(items):
            out["report"].append({"bugs": list(trio), "callers": via, "items": items})
    for kind in out:
        rng.shuffle(out[kind])
    return out


def features(repo: Repo, bugs: list[str]) -> dict[str, int]:
    """What a task measures: the fixes it needs (a two-site bug counts twice) as constraints, the repository's
    other functions (to leave alone, their tests passing) as distractors."""
    return {
        "constraints": sum(repo.bugs[b].sites for b in bugs),
        "distractors": len(repo.functions()) - len(bugs),
        "user_facts": 0,
    }


class CodeFamily(Family):
    """Generated repositories with injected bugs, one tool set per variant index."""

    NAME = "code"
    CATEGORY = "code"
    VERSION = "3"
    SCALES = {"tiny": (2, 5), "demo": (4, 10), "small": (8, 16), "full": (250, 28)}
    """scale -> (environments, candidate tasks per environment). Full: 250 repositories of 3-6 bugs give up to
    28 candidates each (issues per bug and level, two-site bugs, bug pairs and triples), about 5,300 admitted. An episode
    that leaves the package unchanged is judged without running it, so admission starts an interpreter for the
    reference and for the few edits random episodes make."""

    def plan(self, scale: str) -> list[Key]:
        if scale not in self.SCALES:
            raise ValueError(f"unknown scale {scale!r}; use one of {', '.join(self.SCALES)}")
        return [(pkg, v) for v, pkg in enumerate(package_names()[: self.SCALES[scale][0]])]

    def env_id(self, key: Key) -> str:
        pkg, v = key
        return f"code_{pkg}_v{v:03d}"

    def domain(self, key: Key) -> str:
        """The library section every repository of this key contains (its first module)."""
        return first_group(key)

    def variant_config(self, key: Key, seed: int) -> dict:
        """The tool set and rules of the variant (`tools.tool_config`): they depend on the variant index alone,
        so `seed` changes the repository, never the tools."""
        return tool_config(key)

    def build_env(self, store: Path, key: Key, seed: int) -> Path:
        """Write `<store>/<env_id>/` for one variant, deterministically from (key, seed)."""
        key = tuple(key)
        out = Path(store) / self.env_id(key)
        if (out / "state").exists():  # a rebuild must not keep files of an older repository
            shutil.rmtree(out / "state")
        for rel, text in render_sources(key, seed).items():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(text)
        repo = compose(key, seed)
        cfg = self.variant_config(key, seed)
        description = (
            f"You are a software engineer maintaining {repo.pkg}, a small pure-Python utility package "
            f"(modules: {', '.join(repo.modules)}) in the working folder. Fix the reported bugs at their root "
            "cause with the tools, run the tests, then reply with what you changed without a tool call. "
            f"Rules: {'; '.join(rules_text(cfg))}."
        )
        return self.write_spec(out, key, seed, description, LIMITS)

    def _rule_params(self, env_dir: Path, key: Key, seed: int) -> dict:
        """The rule parameters every task of the variant carries (the tests' digest, the file list)."""
        cfg = self.variant_config(key, seed)
        verify = load_tools_module(Path(env_dir) / "verify.py", "verify")
        state = Path(env_dir) / "state"
        out = {}
        if cfg["keep_tests"]:
            out["tests_digest"] = verify.tree_digest(str(state / "tests"))
        if cfg["keep_files"]:
            out["files"] = verify.repo_files(str(state))
        return out

    def _candidate(
        self, repo: Repo, cfg: dict, rule_params: dict, kind: str, issue: dict, variant: int
    ) -> Candidate:
        """The candidate of one issue ({bugs, callers, items}) in one phrasing."""
        items = [x.slots() for x in issue["items"]]
        slots = {"pkg": repo.pkg, **items[0], "items": items, "a": items[0], "b": items[-1]}
        slots["path"] = repo.path_of(issue["bugs"][0])
        bugs = issue["bugs"]
        checked = sorted(set(bugs) | set(issue["callers"]))
        others = [b for b in sorted(repo.bugs) if b not in bugs]  # the guess: a sibling issue's answer
        solution = _solution(repo, cfg, bugs, issue["callers"], LEVEL[kind])
        return self.candidate(
            kind,
            variant,
            difficulty=LEVEL[kind],
            prompt=[render_prompt(PROMPTS[kind][variant], **slots)],
            verifier="check_fix",
            params={"hidden_cases": hidden_cases(repo, checked), **rule_params},
            solution=solution,
            answer=_answer(repo, bugs),
            guess=_answer(repo, [others[0]]) if others else _answer(repo, bugs[:-1]),
            extra={
                "features": features(repo, bugs),
                "issue": {
                    "bugs": bugs,
                    "callers": issue["callers"],
                    "items": [[x.fn, repr(x.args)] for x in issue["items"]],
                },
            },
        )

    def make_tasks(self, env_dir: Path, key: Key, seed: int, n_tasks: int) -> list[Candidate]:
        """Candidate tasks: the issue kinds in turn (levels 1-5), then second phrasings of single-bug issues."""
        key = tuple(key)
        repo = compose(key, seed)
        cfg = self.variant_config(key, seed)
        rule_params = self._rule_params(env_dir, key, seed)
        issues = _issues(repo, random.Random(f"{seed}:{key[0]}:{key[1]}:tasks"))
        order = []
        for i in range(max(len(v) for v in issues.values())):
            order += [(k, issues[k][i], i % len(PROMPTS[k])) for k in PROMPTS if i < len(issues[k])]
        for k in ("symptom", "located", "named", "double", "pair"):  # the other phrasing, other failing calls
            for i, issue in enumerate(issues[k]):
                if k == "double":
                    other = issue["items"][::-1]
                elif k == "pair":
                    other = [unique_examples(repo.failing[x.fn])[0] for x in issue["items"]]
                else:
                    other = [unique_examples(repo.failing[issue["items"][0].fn])[-1]]
                order.append((k, {**issue, "items": other}, (i + 1) % len(PROMPTS[k])))
        out = []
        for kind, issue, variant in order:
            if len(out) == n_tasks:
                break
            c = self._candidate(repo, cfg, rule_params, kind, issue, variant)
            if not asked(out, c.prompt):
                out.append(c)
        return out

    def harden(
        self, env_dir: Path, key: Key, seed: int, candidate: Candidate, reason: str
    ) -> Candidate | None:
        """A harder variant of an issue found too easy: one more bug of the repository (a two-site one first,
        where there is one) reported beside it; None when every bug is already in it."""
        issue = candidate.extra.get("issue")
        if not issue:
            return None
        key = tuple(key)
        repo = compose(key, seed)
        others = sorted(
            (b for b in repo.bugs if b not in issue["bugs"]), key=lambda b: (-repo.bugs[b].sites, b)
        )
        if not others:
            return None
        ex = {f: unique_examples(repo.failing[f]) for f in repo.failing if repo.failing[f]}
        by_args = {(x.fn, repr(x.args)): x for xs in ex.values() for x in xs}
        items = [by_args[tuple(i)] for i in issue["items"]]
        added = _site_items(repo, others[0], ex)
        if not added:
            return None
        harder = {"bugs": [*issue["bugs"], others[0]], "callers": issue["callers"], "items": items + added}
        variant = int(candidate.template.rsplit("/", 1)[1]) % len(PROMPTS["report"])
        return self._candidate(
            repo,
            self.variant_config(key, seed),
            self._rule_params(env_dir, key, seed),
            "report",
            harder,
            variant,
        )


FAMILY = CodeFamily()
