"""Shape ticket_workflow: its environments admit enough varied tasks, rules bind, work composes, the user holds
facts, the week's assignment plan is checked by its constraints (a second plan passes, a plan breaking each
fails), and other correct episodes score 1.0."""

from __future__ import annotations

import importlib
import json
from collections import Counter

import pytest
from toolgym.envs.spec import ToolCall
from toolgym.synth.general import FAMILY
from toolgym.synth.general.base import read_db

from .shapes import admitted, build, prompt_problems, score, tools_of

tw = importlib.import_module("toolgym.synth.general.shapes.ticket_workflow")
RULE_KINDS = {
    "triage_new",
    "close_resolved",
    "escalate_breaches",
    "merge_dupes",
    "reopen_request",
    "week_plan",
}


@pytest.fixture(scope="module")
def envs(tmp_path_factory):
    out = tmp_path_factory.mktemp("tickets")
    return [(key, env, *admitted(key, env, n=48)) for key, env in build("ticket_workflow", out)]


def kind(c) -> str:
    return c.template.split("/")[2]


def writes(env, c) -> int:
    spec = json.loads((env / "env.json").read_text())
    names = {t["function"]["name"] for t in spec["tools"] if t.get("access") == "write"}
    return sum(1 for x in c.solution if x.name in names)


def _task(tid, c) -> dict:
    return {"id": tid, "verifier": c.verifier, "params": c.params}


def test_schema_tools_vocabularies_and_policy(envs, tmp_path):
    assert len(tw.VOCABS) >= 3
    for _, env, _, _ in envs:
        tables = read_db(env)
        assert {"agents", "tickets", "events"} <= set(tables) and 50 <= len(tables["tickets"]) <= 150
        spec = json.loads((env / "env.json").read_text())
        submit, tools = tools_of(env)
        assert submit == "submit_answer" and len(tools) >= 8
        assert sum(t.get("access") == "write" for t in spec["tools"]) >= 4
        assert "SLA" in spec["description"] and "days" in spec["description"]
    key, env, _, _ = envs[0]
    again = build("ticket_workflow", tmp_path, indexes=(key[1],))[0][1]
    assert (again / "state" / "db.sqlite").read_bytes() == (env / "state" / "db.sqlite").read_bytes()


def test_admitted_volume_and_shares(envs):
    kept = []
    for _, env, _, outcome in envs:
        assert len(outcome.kept) >= 45, outcome.drops
        assert len({kind(c) for _, c in outcome.kept}) >= 6
        kept += [(env, c) for _, c in outcome.kept]
    by_kind = Counter(kind(c) for _, c in kept)
    assert max(by_kind.values()) <= 0.25 * len(kept)
    write_tasks = [(e, c) for e, c in kept if writes(e, c) >= 1]
    assert sum(
        kind(c) in RULE_KINDS and c.extra["features"]["distractors"] >= 1 for _, c in write_tasks
    ) >= 0.4 * len(write_tasks)
    assert sum(writes(e, c) >= 2 for e, c in kept) >= 0.3 * len(kept)
    assert sum(bool(c.user_instructions) for _, c in kept) >= 0.2 * len(kept)
    assert by_kind["week_plan"] >= 0.1 * len(kept)
    for _, c in kept:
        assert prompt_problems(c.prompt[0]) == [], c.prompt[0]


def test_other_formats_orders_and_extra_reads_score_one(envs):
    tried = Counter()
    for _, env, _, outcome in envs:
        for tid, c in outcome.kept:
            k = kind(c)
            if tried[k] >= 3 or k == "week_plan":
                continue
            tried[k] += 1
            extra = [ToolCall(name="list_tickets", arguments={"status": "waiting"})]
            body = [x for x in c.solution if x.name != "submit_answer"]
            if c.verifier == "check_items":
                items = list(reversed(c.params["expected"]))
                forms = [
                    "\n".join("- " + x for x in items),
                    " and ".join(items),
                    f"<answer>{'; '.join(items)}</answer>",
                ]
            elif c.verifier == "check_answer":
                forms = [f"It's {c.params['expected']}.", f"<answer>{c.params['expected']}</answer>"]
            else:
                ws = [x for x in body if writes(env, type("C", (), {"solution": [x]})) == 1]
                reads = [x for x in body if x not in ws]
                assert score(env, _task(tid, c), extra + reads + list(reversed(ws)), "Done.") == 1.0, k
                continue
            for form in forms:
                calls = extra + body + [ToolCall(name="submit_answer", arguments={"answer": form})]
                assert score(env, _task(tid, c), calls) == 1.0, (k, form)
    assert len(tried) >= 6


def test_a_second_week_plan_passes_and_each_broken_constraint_fails(envs):
    checked = 0
    for key, env, _, outcome in envs:
        v = FAMILY.variant(key, 0)
        desk = tw._Desk(read_db(env), tw._params(v), v)
        for tid, c in outcome.kept:
            if kind(c) != "week_plan":
                continue
            p, task = c.params, _task(tid, c)
            plans = tw.week_plans(desk, p["tickets"], p["max_new"], limit=3)
            ref = tuple(x.arguments["agent_id"] for x in c.solution if x.name == "assign_ticket")
            other = next(pl for pl in plans if pl != ref)

            def calls(plan, p=p):
                return [
                    ToolCall(name="assign_ticket", arguments={"ticket_id": t, "agent_id": a})
                    for t, a in zip(p["tickets"], plan, strict=True)
                ]

            assert score(env, task, calls(other), "Assigned.") == 1.0
            assert score(env, task, calls(other)[:-1], "Assigned.") == 0.0  # one left without an owner
            assert score(env, {**task, "params": {**p, "max_new": 0}}, calls(other), "x") == 0.0
            assert score(env, {**task, "params": {**p, "max_open": 0}}, calls(other), "x") == 0.0
            unskilled = [
                a["id"]
                for a in desk.agents
                if desk.t[p["tickets"][0]]["category"] not in a["skills"].split(",")
            ]
            bad = (unskilled[0], *other[1:])
            assert score(env, task, calls(bad), "x") == 0.0
            outside = next(t["id"] for t in desk.tickets if t["status"] == "new")
            extra = [ToolCall(name="escalate_ticket", arguments={"ticket_id": outside})]
            assert score(env, task, calls(other) + extra, "x") == 0.0
            urgent = [i for i, t in enumerate(p["tickets"]) if desk.t[t]["priority"] == "urgent"]
            juniors = [a["id"] for a in desk.agents if a["level"] == "junior"]
            if urgent and juniors:
                plan = list(other)
                plan[urgent[0]] = juniors[0]
                assert score(env, task, calls(plan), "x") == 0.0
            checked += 1
    assert checked >= 3
