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

from .family import Candidate

RANDOM_EPISODES = 2
"""Random-tool episodes per task; a task that any of them solves is dropped as too easy."""
DO_NOTHING = "I could not do that."


def _task(task_id: str, c: Candidate) -> dict:
    """What a replay needs of a candidate's task."""
    return {"id": task_id, "verifier": c.verifier, "params": c.params}


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


def answer_checked(c: Candidate) -> bool:
    """A task whose verifier compares the answer with an expected one (a state check ignores the answer)."""
    return c.verifier != "check_state" and c.params.get("expected") is not None


@dataclass
class Outcome:
    """What admission made of an environment's candidates."""

    kept: list[tuple[str, Candidate]] = field(default_factory=list)
    """(task id, candidate) of every kept candidate, in order."""
    drops: Counter = field(default_factory=Counter)
    random_wins: Counter = field(default_factory=Counter)
    """How many candidates (past every other check) won 0, 1, ... random episodes."""


def _expected_states(ops: EnvServerOps, cands: list[tuple[str, Candidate]], drops: Counter) -> list:
    """State-checking candidates learn the state they expect from their reference solution (set in their
    params); a reference whose calls fail, or that leaves the state as it was, is dropped."""
    stateful = [(tid, c) for tid, c in cands if c.verifier == "check_state"]
    scripts = [Script(_task(tid, c), c.solution, None, digest=True) for tid, c in stateful]
    scripts += [Script(_task(tid, c), [], None, digest=True) for tid, c in stateful]
    verdicts = ops.replay_many(scripts)
    after, before = verdicts[: len(stateful)], verdicts[len(stateful) :]
    dropped = set()
    for (tid, c), a, b in zip(stateful, after, before, strict=True):
        if not a["calls_ok"]:
            drops["reference_fails"] += 1
        elif a["db_digest"] == b["db_digest"]:
            drops["no_state_change"] += 1
        else:
            c.params = {**c.params, "expected": a["db_digest"]}
            continue
        dropped.add(tid)
    return [(tid, c) for tid, c in cands if tid not in dropped]


def admit(
    ops: EnvServerOps, cands: list[tuple[str, Candidate]], submit: str | None, tools: list[dict]
) -> Outcome:
    """Run every check of every candidate ((task id, Candidate) pairs) through `ops` in two requests, then keep
    the candidates that pass them all, in order. A dropped candidate is counted under the first check it
    fails."""
    out = Outcome()
    cands = _expected_states(ops, cands, out.drops)
    plans = []
    for tid, c in cands:
        task = _task(tid, c)
        guess = [ToolCall(name=submit, arguments={"answer": c.guess})] if submit else []
        checks = [
            ("reference_fails", Script(task, c.solution, c.answer), 1.0),
            ("do_nothing_passes", Script(task, [], DO_NOTHING), 0.0),
            ("guess_passes", Script(task, guess, c.guess), 0.0),
        ]
        if answer_checked(c):
            # The same guess after every lookup of the reference: only the answer can fail it now, so this
            # proves that the verifier reads the answer and not only the evidence.
            lookups = [x for x in c.solution if x.name != submit]
            checks.append(("guess_after_lookups_passes", Script(task, lookups + guess, c.guess), 0.0))
        plans.append((tid, c, checks, random_scripts(task, tools)))
    scripts = [s for *_, checks, rand in plans for s in [x[1] for x in checks] + rand]
    verdicts = iter(ops.replay_many(scripts))
    for tid, c, checks, rand in plans:
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
        out.kept.append((tid, c))
    return out
