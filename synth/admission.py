"""Admission: which candidate tasks are kept. Every check is a scripted episode replayed through the env server
(`toolgym.envs.replay`, the one replay path), in a sandbox or in this process; nothing here reads the env
server's state directly.

A candidate is kept when its reference solution scores 1.0, doing nothing scores 0, a plausible wrong answer
scores 0 (alone and after every lookup of the reference), no random-tool episode wins, and no shortcut solver
(`shortcuts.py`: policies that never reason) solves it. The shortcut gate costs two more requests: its read-only
probes ride along with the checks, the second-round reads built from their results (`chain`) follow for the
candidates still standing, then their final scripts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from toolgym.envs import EnvServerOps, Script, ToolCall

from .family import Candidate
from .shortcuts import SHORTCUTS, Toolbox, call_key, parse

RANDOM_EPISODES = 2
"""Random-tool episodes per task; a task that any of them solves is dropped as too easy."""
DO_NOTHING = "I could not do that."
PROBE_VERIFIER = ""
"""A probe only reads: no verifier of that name exists, so verifying it costs nothing and scores 0."""


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


STATE_VERIFIERS = ("check_state", "check_state_and_answer")
"""Verifiers that compare the final database with an expected digest admission learns from the reference."""


def answer_checked(c: Candidate) -> bool:
    """A task whose verifier compares the answer with an expected one (a state check ignores the answer)."""
    if c.verifier in STATE_VERIFIERS:
        return c.params.get("answer_expected") is not None
    return c.params.get("expected") is not None


@dataclass
class Outcome:
    """What admission made of an environment's candidates."""

    kept: list[tuple[str, Candidate]] = field(default_factory=list)
    """(task id, candidate) of every kept candidate, in order."""
    drops: Counter = field(default_factory=Counter)
    random_wins: Counter = field(default_factory=Counter)
    """How many candidates (past every other check) won 0, 1, ... random episodes."""
    solved_by: dict[str, list[str]] = field(default_factory=dict)
    """task id -> the shortcuts that solved it (in SHORTCUTS order), for every candidate that reached the gate:
    the solve rates before the gate."""
    too_easy: list[tuple[str, Candidate, str]] = field(default_factory=list)
    """(task id, candidate, reason) of every candidate dropped as too easy (a random win, a shortcut): what a
    family may harden."""


def _expected_states(ops: EnvServerOps, cands: list[tuple[str, Candidate]], drops: Counter) -> list:
    """State-checking candidates learn the state they expect from their reference solution (set in their
    params); a reference whose calls fail, or that leaves the state as it was, is dropped."""
    stateful = [(tid, c) for tid, c in cands if c.verifier in STATE_VERIFIERS]
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


def _probes(cands: list[tuple[str, Candidate]], box: Toolbox) -> list[Script]:
    """Every shortcut's read-only probe calls for `cands`, once each (listings repeat across an environment's
    tasks), as observing one-call scripts."""
    scripts, keys = [], set()
    for tid, c in cands:
        for s in SHORTCUTS:
            for call in s.probe_calls(prompt_text(c), box):
                if call_key(call) not in keys:
                    keys.add(call_key(call))
                    task = {"id": tid, "verifier": PROBE_VERIFIER, "params": {}}
                    scripts.append(Script(task, [call], None, observe=True))
    return scripts


def _follows(cands: list[tuple[str, Candidate]], box: Toolbox, seen: dict) -> list[Script]:
    """Every shortcut's second-round read calls for `cands`, built from the first round's results (`seen`), once
    each and none already observed, as observing one-call scripts."""
    scripts, keys = [], set(seen)
    for tid, c in cands:
        for s in SHORTCUTS:
            for call in s.follow_calls(prompt_text(c), box, seen):
                if call_key(call) not in keys:
                    keys.add(call_key(call))
                    task = {"id": tid, "verifier": PROBE_VERIFIER, "params": {}}
                    scripts.append(Script(task, [call], None, observe=True))
    return scripts


def second_round(ops: EnvServerOps, cands: list[tuple[str, Candidate]], box: Toolbox, seen: dict) -> dict:
    """`seen` and what the second-round reads of `cands` returned, in one request (none when no shortcut
    follows anything)."""
    follows = _follows(cands, box, seen)
    return {**seen, **_observed(follows, ops.replay_many(follows))}


def prompt_text(c: Candidate) -> str:
    """What a shortcut reads of a task: every scripted user turn (never the simulated user's hidden facts)."""
    return "\n".join(c.prompt)


def shortcut_scripts(tid: str, c: Candidate, box: Toolbox, seen: dict) -> list[tuple[Script, list[str]]]:
    """A candidate's shortcut episodes, each once, with the names of the shortcuts that play it."""
    by_key: dict[str, tuple[Script, list[str]]] = {}
    for s in SHORTCUTS:
        for calls, answer in s.scripts(prompt_text(c), box, seen):
            key = repr(([(x.name, sorted(x.arguments.items())) for x in calls], answer))
            if key not in by_key:
                by_key[key] = (Script(_task(tid, c), calls, answer), [])
            if s.NAME not in by_key[key][1]:
                by_key[key][1].append(s.NAME)
    return list(by_key.values())


def _gate(ops: EnvServerOps, cands: list[tuple[str, Candidate]], box: Toolbox, seen: dict) -> dict:
    """task id -> the shortcuts that solve it (in SHORTCUTS order), all candidates in one request."""
    plans = []
    for tid, c in cands:
        episodes = shortcut_scripts(tid, c, box, seen)
        plans.append((tid, episodes, _fold([e for e, _ in episodes])))
    verdicts = iter(ops.replay_many([s for *_, (merged, _) in plans for s in merged]))
    solved = {}
    for tid, episodes, (merged, where) in plans:
        rewards = _unfold(verdicts, merged, where)
        names = {n for (_, ns), r in zip(episodes, rewards, strict=True) if r == 1.0 for n in ns}
        solved[tid] = [s.NAME for s in SHORTCUTS if s.NAME in names]
    return solved


def shortcut_solvers(
    ops: EnvServerOps, cands: list[tuple[str, Candidate]], tools: list[dict]
) -> dict[str, list[str]]:
    """task id -> the shortcuts that solve it, for `cands` on their own (no other check): the probes in one
    request, the second-round reads in another, the final scripts in a third. Admission runs the same through
    `admit`, its probes riding along with the other checks."""
    box = Toolbox.of(tools)
    probes = _probes(cands, box)
    seen = second_round(ops, cands, box, _observed(probes, ops.replay_many(probes)))
    return _gate(ops, cands, box, seen)


def _observed(probes: list[Script], verdicts: list[dict]) -> dict:
    """probe call key -> what it returned (parsed JSON, or None when it failed)."""
    return {
        call_key(p.calls[0]): (
            parse(v["observed"][0]["content"]) if v["observed"] and v["observed"][0]["ok"] else None
        )
        for p, v in zip(probes, verdicts, strict=True)
    }


def _fold(scripts: list[Script]) -> tuple[list[Script], list[tuple[int, int]]]:
    """`scripts` with those that make the same calls folded into the first (their answers in its `also`: the
    server runs the calls once and verifies each answer), and where each script's verdict is: (folded script,
    -1 for its own verdict or the index in its `also`). A code-interpreter reference and its guess after
    lookups make the same calls (no submit tool), so the guess costs no second interpreter."""
    merged: list[Script] = []
    first: dict = {}
    where = []
    for s in scripts:
        key = (call_keys(s.calls), s.digest, s.observe)
        if key in first and not s.also:
            base = merged[first[key]]
            base.also.append(s.answer)
            where.append((first[key], len(base.also) - 1))
            continue
        first.setdefault(key, len(merged))
        merged.append(Script(s.task, s.calls, s.answer, s.digest, s.observe, list(s.also)))
        where.append((len(merged) - 1, -1))
    return merged, where


def _unfold(verdicts, merged: list[Script], where: list[tuple[int, int]]) -> list[float]:
    """The rewards of the scripts `_fold` folded, in their order, taking the folded scripts' verdicts from the
    iterator `verdicts`."""
    own = [next(verdicts) for _ in merged]
    return [own[i]["reward"] if j < 0 else own[i]["also"][j]["reward"] for i, j in where]


def call_keys(calls) -> tuple:
    """A hashable form of a call list (names and arguments, key order aside)."""
    return tuple(call_key(c) for c in calls)


def admit(
    ops: EnvServerOps,
    cands: list[tuple[str, Candidate]],
    submit: str | None,
    tools: list[dict],
    *,
    gate: bool = True,
) -> Outcome:
    """Run every check of every candidate ((task id, Candidate) pairs) through `ops` in four requests, then keep
    the candidates that pass them all, in order. A dropped candidate is counted under the first check it
    fails; one a shortcut solves under `shortcut_<name>` of the first that did. `tools` are env.json's tool
    entries (their access and submit tags tell the shortcuts what writes and what submits); `gate=False` skips
    the shortcut solvers (to measure what they cost)."""
    out = Outcome()
    cands = _expected_states(ops, cands, out.drops)
    box = Toolbox.of(tools)
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
    folded = [_fold([x[1] for x in checks]) for _, _, checks, _ in plans]
    scripts = [s for (*_, rand), (merged, _) in zip(plans, folded, strict=True) for s in merged + rand]
    probes = _probes(cands, box) if gate else []
    replies = ops.replay_many(scripts + probes)
    verdicts = iter(replies[: len(scripts)])
    seen = _observed(probes, replies[len(scripts) :])
    standing = []
    for (tid, c, checks, rand), (merged, where) in zip(plans, folded, strict=True):
        got = _unfold(verdicts, merged, where)
        wins = sum(next(verdicts)["reward"] == 1.0 for _ in rand)
        failed = next((name for (name, _, want), r in zip(checks, got, strict=True) if r != want), None)
        if failed:
            out.drops[failed] += 1
            continue
        out.random_wins[wins] += 1
        if wins:
            out.drops["too_easy_random"] += 1
            out.too_easy.append((tid, c, "too_easy_random"))
            continue
        standing.append((tid, c))
    solved = _gate(ops, standing, box, second_round(ops, standing, box, seen)) if gate else {}
    for tid, c in standing:
        if gate:
            out.solved_by[tid] = solved[tid]
        if solved.get(tid):
            reason = f"shortcut_{solved[tid][0]}"
            out.drops[reason] += 1
            out.too_easy.append((tid, c, reason))
            continue
        out.kept.append((tid, c))
    return out
