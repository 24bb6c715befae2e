"""Measured difficulty: what each admitted task records about itself (`features`), and its level 1..5 computed
from them per category, never taken from the family's label.

The score is dominated by the reference solution's calls, with writes, constraints, user-held facts and
distractors breaking ties. Levels cut the score at per-category quantiles of the run's admitted tasks, then a
repair merges adjacent levels whose mean reference calls do not rise. So, by construction, within every category
the mean reference calls rise strictly with level and level 5 holds at least LEVEL_SHARES[-1] of the tasks.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import fmean

from toolgym.envs.spec import TaskSpec

from .family import Candidate

FAMILY_FEATURES = ("constraints", "distractors", "user_facts")
"""Counts a family may supply in `Candidate.extra["features"]`."""
LEVEL_SHARES = (0.30, 0.25, 0.20, 0.15, 0.10)
"""The share of a category's tasks each level aims at (ties on the score move tasks up, never down)."""
TIE_BREAK_MAX = 999
"""The tie-breakers' sum is capped below one reference call's weight (1000)."""


def features(
    c: Candidate, tools: list[dict], submit: str | None, shortcuts_tried: list[str], hardening: list[str]
) -> dict:
    """The measured features of an admitted candidate: its reference calls (the submit call is the answer, not
    work), how many write and read, distinct tools, the family's counts, the shortcuts it withstood and the
    hardening steps it took."""
    access = {t["function"]["name"]: t.get("access", "read") for t in tools}
    calls = [x for x in c.solution if x.name != submit]
    writes = sum(access.get(x.name) == "write" for x in calls)
    given = c.extra.get("features") or {}
    out = {
        "reference_calls": len(calls),
        "writes": writes,
        "reads": len(calls) - writes,
        "distinct_tools": len({x.name for x in calls}),
        **{k: int(given.get(k, 0)) for k in FAMILY_FEATURES},
        "family_level": c.difficulty,
        "shortcuts_tried": list(shortcuts_tried),
        "hardening": list(hardening),
    }
    return out


def _features(t: TaskSpec) -> dict:
    """A task's features; tasks from before features existed count their reference calls only."""
    return t.features or {"reference_calls": len(t.solution)}


def score(f: dict) -> int:
    """Reference calls first (1000 each); writes, constraints, user-held facts and distractors break ties."""
    ties = 100 * f.get("writes", 0) + 30 * f.get("constraints", 0) + 30 * f.get("user_facts", 0)
    ties += 10 * f.get("distractors", 0) + 5 * f.get("distinct_tools", 0)
    return 1000 * f.get("reference_calls", 0) + min(ties, TIE_BREAK_MAX)


def thresholds(scores: list[int]) -> list[int]:
    """The four scores at which levels 2..5 start: the scores at the cumulative LEVEL_SHARES ranks."""
    ranked = sorted(scores)
    cuts, acc = [], 0.0
    for share in LEVEL_SHARES[:-1]:
        acc += share
        cuts.append(ranked[min(len(ranked) - 1, int(acc * len(ranked)))])
    return cuts


def _repair(levels: list[int], calls: list[int]) -> list[int]:
    """Merge each level into the next used one above it while its mean reference calls do not rise (only when
    both hold one and the same call count, since the score orders calls): the top level stays 5."""
    while True:
        used = sorted(set(levels))
        means = {lv: fmean(c for c, x in zip(calls, levels, strict=True) if x == lv) for lv in used}
        flat = next((lo for lo, hi in zip(used, used[1:], strict=False) if means[lo] >= means[hi]), None)
        if flat is None:
            return levels
        up = used[used.index(flat) + 1]
        levels = [up if x == flat else x for x in levels]


def assign_levels(tasks: list[TaskSpec]) -> tuple[list[TaskSpec], dict]:
    """Every task with its computed level, and per category the thresholds and each level's share and mean
    reference calls. Deterministic: a function of the tasks' features alone."""
    by_cat: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        by_cat[t.category].append(i)
    levels = [0] * len(tasks)
    summary = {}
    for cat, idx in sorted(by_cat.items()):
        feats = [_features(tasks[i]) for i in idx]
        scores = [score(f) for f in feats]
        calls = [f.get("reference_calls", 0) for f in feats]
        cuts = thresholds(scores)
        raw = [1 + sum(s >= cut for cut in cuts) for s in scores]
        fixed = _repair(raw, calls)
        for i, lv in zip(idx, fixed, strict=True):
            levels[i] = lv
        summary[cat] = {
            "thresholds": cuts,
            "levels": {
                str(lv): {
                    "tasks": fixed.count(lv),
                    "share": round(fixed.count(lv) / len(fixed), 4),
                    "mean_reference_calls": round(
                        fmean(c for c, x in zip(calls, fixed, strict=True) if x == lv), 3
                    ),
                }
                for lv in sorted(set(fixed))
            },
        }
    out = [t.model_copy(update={"difficulty": lv}) for t, lv in zip(tasks, levels, strict=True)]
    return out, summary


RULE = (
    "score = 1000 x reference calls + tie-breakers (100 x writes, 30 x constraints, 30 x user facts, "
    "10 x distractors, 5 x distinct tools; < 1000); levels 2..5 start at the per-category score quantiles "
    f"{', '.join(str(round(sum(LEVEL_SHARES[: i + 1]), 2)) for i in range(4))}; adjacent levels whose mean "
    "reference calls do not rise are merged upward"
)
