"""Admission: which candidate tasks are kept. Every check is a scripted episode replayed through the env server
(`toolgym.envs.replay`, the one replay path), in a sandbox or in this process; nothing here reads the env
server's state directly.

A candidate is kept when its reference solution scores 1.0, doing nothing scores 0, a plausible wrong answer
scores 0 (alone and after every lookup of the reference), and no random-tool episode wins.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from toolgym.envs import EnvServerOps, Script, ToolCall

RANDOM_EPISODES = 2
"""Random-tool episodes per task; a task that any of them solves is dropped as too easy."""
DO_NOTHING = "I could not do that."


def random_scripts(task: dict, tools: list[dict]) -> list[Script]:
    """The random-tool episodes of a task (agent.policies.RandomPolicy, seeded per task and episode)."""
    from toolgym.agent.policies import RandomPolicy

    out = []
    for seed in range(RANDOM_EPISODES):
        calls, answer = RandomPolicy(seed=seed, max_calls=5).script(_Named(task["id"]), tools)
        out.append(Script(task, calls, answer))
    return out


@dataclass(frozen=True)
class _Named:
    id: str


def answer_checked(task: dict) -> bool:
    """A task whose verifier compares the answer with an expected one (a state check ignores the answer)."""
    return task["verifier"] != "check_state" and task["params"].get("expected") is not None


@dataclass
class Outcome:
    """What admission made of an environment's candidates."""

    kept: list[dict] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)
    random_wins: Counter = field(default_factory=Counter)
    """How many candidates (past every other check) won 0, 1, ... random episodes."""


def _expected_states(ops: EnvServerOps, tasks: list[dict], drops: Counter) -> list[dict]:
    """State-checking tasks learn the state they expect from their reference solution; a reference whose calls
    fail, or that leaves the state as it was, is dropped."""
    stateful = [t for t in tasks if t["verifier"] == "check_state"]
    scripts = [Script(t, t["solution"], None, digest=True) for t in stateful]
    scripts += [Script(t, [], None, digest=True) for t in stateful]
    verdicts = ops.replay_many(scripts)
    after, before = verdicts[: len(stateful)], verdicts[len(stateful) :]
    dropped = set()
    for t, a, b in zip(stateful, after, before, strict=True):
        if not a["calls_ok"]:
            drops["reference_fails"] += 1
        elif a["db_digest"] == b["db_digest"]:
            drops["no_state_change"] += 1
        else:
            t["params"] = {**t["params"], "expected": a["db_digest"]}
            continue
        dropped.add(t["id"])
    return [t for t in tasks if t["id"] not in dropped]


def admit(ops: EnvServerOps, tasks: list[dict], submit: str | None, tools: list[dict]) -> Outcome:
    """Run every check of every candidate (`tasks`: dicts with id, verifier, params, solution, answer, guess)
    through `ops` in two requests, then keep the candidates that pass them all, in order. A dropped candidate
    is counted under the first check it fails."""
    out = Outcome()
    tasks = _expected_states(ops, tasks, out.drops)
    plans = []
    for t in tasks:
        guess = [ToolCall(name=submit, arguments={"answer": t["guess"]})] if submit else []
        checks = [
            ("reference_fails", Script(t, t["solution"], t["answer"]), 1.0),
            ("do_nothing_passes", Script(t, [], DO_NOTHING), 0.0),
            ("guess_passes", Script(t, guess, t["guess"]), 0.0),
        ]
        if answer_checked(t):
            # The same guess after every lookup of the reference: only the answer can fail it now, so this
            # proves that the verifier reads the answer and not only the evidence.
            lookups = [c for c in t["solution"] if c.name != submit]
            checks.append(("guess_after_lookups_passes", Script(t, lookups + guess, t["guess"]), 0.0))
        plans.append((t, checks, random_scripts(t, tools)))
    scripts = [s for _, checks, rand in plans for s in [c[1] for c in checks] + rand]
    verdicts = iter(ops.replay_many(scripts))
    for t, checks, rand in plans:
        got = [next(verdicts)["reward"] for _ in checks]
        wins = sum(next(verdicts)["reward"] == 1.0 for _ in rand)
        failed = next((name for (name, _, want), r in zip(checks, got, strict=True) if r != want), None)
        if failed:
            out.drops[failed] += 1
            continue
        out.random_wins[wins] += 1
        if wins:
            out.drops["too_easy_random"] += 1
            continue
        out.kept.append(t)
    return out
