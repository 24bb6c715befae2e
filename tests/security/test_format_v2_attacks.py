"""The hostile agent against env format v2: multi-turn tasks with per-turn tools and the built-in ground-truth
verifier, class toolsets with unchecked arguments, pushed lib/ folders, reasoning-gym environments (agent code
beside a requirement set) and MCP-backed environments. Every attack runs through the real path (a `ToolEnv` in a
Docker sandbox, `run_episode` with a scripted policy whose messages and tool calls are the attack) and each test
asserts the safe outcome: it fails if the attack works."""

from __future__ import annotations

import asyncio
import json
import shutil
import textwrap
from pathlib import Path

import pytest
from toolgym.agent.loop import Budgets, run_episode
from toolgym.envs import ToolEnv, load_env_spec, validate_env, write_env_spec

from tests.conftest import backend_or_skip
from tests.envs import multiturn_env
from tests.envs.test_multiturn import Scripted

GT = [t["solution"] for t in multiturn_env.turns()]
RIGHT = [GT[0], "Done.", GT[1], "noted", "I cannot order food.", GT[3], "Moved."]


def play(env: ToolEnv, steps: list, max_steps: int = 30, task_id: str | None = None):
    budgets = Budgets(max_steps=max_steps)
    return asyncio.run(run_episode(env, Scripted(steps), task_id=task_id, budgets=budgets))


def tool_texts(traj) -> list[str]:
    return [m["content"] for m in traj.messages if m["role"] == "tool"]


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """The 4-turn bank (lenient: `transfer` takes its arguments unchecked) in one Docker sandbox, pushed."""
    backend = backend_or_skip("docker")
    env = ToolEnv(multiturn_env.build(tmp_path_factory.mktemp("store"), lenient=True), backend=backend)
    yield env
    env.close()


# -- multi-turn tasks and the ground-truth verifier ----------------------------------------------------------
@pytest.mark.docker
def test_private_and_dunder_methods_are_not_tools(bank):
    """`_load_scenario` (the setup that writes any balances), `__init__` and `__class__` are no tools: a call of
    one is refused as unknown and changes nothing, so the agent cannot set the end state the truth has."""
    forged = {"config": {"accounts": {"A": 70, "B": 80}}}
    steps = [
        [
            {"name": "_load_scenario", "arguments": forged},
            {"name": "__init__", "arguments": {}},
            {"name": "__class__", "arguments": {}},
            {"name": "_lookups", "arguments": {}},
        ],
        "Done.",
        *RIGHT[2:],
    ]
    traj = play(bank, steps)
    kinds = [e["kind"] for e in traj.steps[0].errors]
    assert kinds == ["unknown_tool"] * 4, traj.steps[0].errors
    assert traj.reward == 0.0 and traj.verdict["turns"][0]["reward"] == 0.0, traj.verdict
    assert traj.stop_reason not in ("model_error", "env_error")


@pytest.mark.docker
def test_a_hidden_tool_is_refused_not_run(bank):
    """Turn 1 offers balance and transfer: add_note there is refused and leaves no note, so turn 2's state (one
    note) is not reached early and nothing the refused call would have written shows up later."""
    steps = [[{"name": "add_note", "arguments": {"text": "B has 80"}}] + GT[0], "Done.", *RIGHT[2:]]
    traj = play(bank, steps)
    assert traj.steps[0].errors[0]["kind"] == "unknown_tool"
    # turn 2 adds its own note: had the hidden call run, there would be two and turn 2 would fail
    assert traj.reward == 1.0, traj.verdict


@pytest.mark.docker
def test_flooding_results_does_not_replace_the_state(bank):
    """The results check is a multiset of strings: 200 reads whose results hold every account, in the turn whose
    reference transfers, pass no turn the state check fails."""
    flood = [{"name": "balance", "arguments": {"account": a}} for a in ("A", "B")] * 100
    traj = play(bank, [flood, "Done.", flood, "noted", "no", flood, "Moved."], max_steps=40)
    assert traj.reward == 0.0
    assert [t["reward"] for t in traj.verdict["turns"]] == [0.0, 0.0, 1.0, 0.0], traj.verdict


@pytest.mark.docker
def test_unchecked_arguments_are_tool_errors_not_crashes(bank):
    """`check_arguments: false` hands the model's values to the class: deep nesting, a float too big for
    JSON's doubles (1e400 parses as inf), an unhashable account, a bool account and a 300,000-character string
    each end as the agent's own tool error (or a refusal), the env server lives on, and the right calls after
    them still pass the turn."""
    deep = "[" * 50_000 + "]" * 50_000
    raw = [
        '{"source": "A", "target": "B", "amount": ' + deep + "}",
        '{"source": "A", "target": "B", "amount": 1e400}',
        '{"source": ["A"], "target": "B", "amount": 30}',
        '{"source": true, "target": "B", "amount": 30}',
        json.dumps({"source": "A" * 300_000, "target": "B", "amount": 30}),
    ]
    bank.reset(options={"task_id": bank.tasks[0].id})
    for arguments in raw:
        _, reward, terminated, truncated, info = bank.step(
            {
                "tool_calls": [
                    {"id": "x", "type": "function", "function": {"name": "transfer", "arguments": arguments}}
                ]
            }
        )
        assert not terminated and not truncated and not info.get("env_error"), info
        assert info["tool_results"][0]["ok"] is False, (arguments[:60], info["messages"][-1])
    _, _, _, _, info = bank.step(
        {"tool_calls": [{"name": c["name"], "arguments": c["arguments"]} for c in GT[0]]}
    )
    assert info["tool_results"][0]["ok"], info["messages"][-1]
    for step in RIGHT[1:]:
        message = (
            {"content": step}
            if isinstance(step, str)
            else {"tool_calls": [{"name": c["name"], "arguments": c["arguments"]} for c in step]}
        )
        _, reward, terminated, _, info = bank.step(message)
    # the task was done: refused and failed calls change nothing, and every turn is judged on state and results
    assert terminated and reward == 1.0, info["verdict"]


@pytest.mark.docker
def test_an_argument_over_the_limit_is_refused_before_it_is_sent(bank):
    """A 1,000,001-character argument in a multi-turn episode is an `Error:` for the model; the episode goes on."""
    big = json.dumps({"text": "x" * 1_000_001})
    bank.reset(options={"task_id": bank.tasks[0].id})
    play_calls = [{"id": "b", "type": "function", "function": {"name": "transfer", "arguments": big}}]
    _, _, terminated, truncated, info = bank.step({"tool_calls": play_calls})
    assert not terminated and not truncated and not info.get("env_error")
    assert info["messages"][-1]["content"].startswith("Error:")


# -- pushed lib/ folders ---------------------------------------------------------------------------------------
def _code_interpreter_with_lib(store: Path) -> Path:
    """The reference code_interpreter environment plus a lib/ package whose data file holds the answer key, read
    by verify.py at verification time (a packaged benchmark's usual shape: its checker and data in lib/)."""
    from toolgym.synth.reference import reference_envs

    env = store / "ci-lib"
    shutil.copytree(next(p for p in reference_envs() if p.name == "code_interpreter"), env)
    (env / "lib" / "answerkey").mkdir(parents=True)
    (env / "lib" / "answerkey" / "__init__.py").write_text("")
    (env / "lib" / "answerkey" / "key.json").write_text(json.dumps({"secret": "right"}))
    verify = textwrap.dedent(
        """
        def check_key(ctx, answer, calls):
            import json, os, answerkey
            with open(os.path.join(os.path.dirname(answerkey.__file__), "key.json")) as f:
                return (1.0 if answer == json.load(f)["secret"] else 0.0), "compared with lib/answerkey"
        """
    )
    (env / "verify.py").write_text((env / "verify.py").read_text() + verify)
    row = json.loads((env / "tasks.jsonl").read_text().splitlines()[0])
    row.update(id="ci-lib-0", env_id="ci-lib", verifier="check_key", params={}, answer="right", solution=[])
    (env / "tasks.jsonl").write_text(json.dumps(row) + "\n")
    spec = load_env_spec(env).model_copy(update={"id": "ci-lib"})
    write_env_spec(env, spec)
    assert validate_env(env) == []
    return env


SWAP_LIB = r"""
import glob, os
out = []
for parent in glob.glob("/tmp/toolgym-lib-*"):
    out.append(("parent owner", os.stat(parent).st_uid, "me", os.getuid()))
    try:
        os.rename(parent + "/lib", parent + "/lib-old")
        os.makedirs(parent + "/lib/answerkey")
        open(parent + "/lib/answerkey/__init__.py", "w").write("")
        open(parent + "/lib/answerkey/key.json", "w").write('{"secret": "forged"}')
        out.append("SWAPPED")
    except OSError as e:
        out.append(type(e).__name__)
print(out)
"""


@pytest.mark.docker
def test_agent_code_cannot_swap_a_pushed_lib_before_verification(tmp_path):
    env = ToolEnv(_code_interpreter_with_lib(tmp_path), backend=backend_or_skip("docker"), transport="push")
    try:
        traj = play(env, [[{"name": "python", "arguments": {"code": SWAP_LIB}}], "forged"], max_steps=5)
    finally:
        env.close()
    # Agent code may rename folders in /tmp (its uid owns /tmp in every backend); the env server imports and reads
    # lib/ through a descriptor of the folder the trusted uid wrote, so the swapped-in lib/ is never what it reads.
    assert traj.reward == 0.0 and traj.verdict["reason"] == "compared with lib/answerkey", traj.verdict
    env = ToolEnv(
        _code_interpreter_with_lib(tmp_path / "again"), backend=backend_or_skip("docker"), transport="push"
    )
    try:  # the same swap, then the right answer: the trusted key still decides
        traj = play(env, [[{"name": "python", "arguments": {"code": SWAP_LIB}}], "right"], max_steps=5)
    finally:
        env.close()
    assert "SWAPPED" in tool_texts(traj)[0] and traj.reward == 1.0, traj.verdict


# -- reasoning-gym environments --------------------------------------------------------------------------------
RG_PROBE = r"""
import glob, os, subprocess, sys
report = {}
site = glob.glob("/opt/toolgym-reqs/*")
report["reqs"] = bool(site)
for target in site + [p + "/reasoning_gym/__init__.py" for p in site] + glob.glob("/opt/toolgym-reqs/*/*.pth"):
    try:
        with open(target if not os.path.isdir(target) else target + "/evil.pth", "a") as f:
            f.write("import os\n")
        report.setdefault("wrote", []).append(target)
    except OSError:
        pass
fake = "def score_answer(*a, **k):\n    return 1.0\nclass _D:\n    score_answer = staticmethod(score_answer)\n"
fake += "def create_dataset(*a, **k):\n    return _D()\ndef get_score_answer_fn(*a, **k):\n    return score_answer\n"
for folder in [os.getcwd(), "/tmp", os.path.expanduser("~"), os.path.expanduser("~/.local/lib/python3.11/site-packages")]:
    try:
        os.makedirs(folder + "/reasoning_gym", exist_ok=True)
        open(folder + "/reasoning_gym/__init__.py", "w").write(fake)
        open(folder + "/sitecustomize.py", "w").write("import os\n")
        open(folder + "/usercustomize.py", "w").write("import os\n")
    except OSError:
        pass
for parent in glob.glob("/tmp/toolgym-lib-*"):
    report.setdefault("libs", []).append(parent)
found = []
for root in ["/tmp", "/workspace", "/home", "/mnt", "/opt", "/var", "/run", "/root", "/etc"]:
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f in ("verify.py", "tasks.jsonl") and "/reasoning_gym/" not in dirpath:
                found.append(os.path.join(dirpath, f))
report["found"] = found
mine = os.getpid()
environs = []
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != mine:
        try:
            environs.append(open(f"/proc/{pid}/cmdline", "rb").read()[:4000])
        except OSError:
            pass
report["gold_in_cmdline"] = any(b"entry" in e or b"answer" in e for e in environs)
subprocess.Popen(["sh", "-c", "while true; do echo 1 > /workspace/daemon; sleep 0.05; done"], start_new_session=True)
print(report)
"""


@pytest.mark.docker
@pytest.mark.slow
def test_reasoning_gym_agent_code_cannot_forge_the_score_or_read_the_gold(tmp_path):
    """From the python tool: try to write into the requirement set, plant a fake `reasoning_gym` (and
    sitecustomize/usercustomize) in every folder the agent can write, look for verify.py, tasks.jsonl or the
    gold answer anywhere it can read, and leave a daemon behind; then submit a wrong answer. It scores 0, the
    set is unchanged, and nothing of the task's verification is found."""
    pytest.importorskip("reasoning_gym")
    from toolgym.sandbox.requirements import RequirementsError, prepare
    from toolgym.synth.importers import reasoning_gym as rg

    try:
        prepare([rg.REQUIREMENT], log=lambda _: None)
    except RequirementsError as exc:
        pytest.skip(f"cannot prepare {rg.REQUIREMENT}: {exc}")
    rg.import_generators(["leg_counting"], tmp_path, size=3, seed=0)
    env = ToolEnv(tmp_path / "rg-leg-counting", backend=backend_or_skip("docker"))
    try:
        task = env.tasks[0]
        gold = str(task.params["entry"]["answer"])
        wrong = str(int(gold) + 7)
        submit = [{"name": "submit_answer", "arguments": {"answer": wrong}}]
        probe = [{"name": "python", "arguments": {"code": RG_PROBE}}]
        traj = play(env, [probe, submit], max_steps=5, task_id=task.id)
        report = tool_texts(traj)[0]
        assert "'reqs': True" in report and "'wrote'" not in report, report
        assert "'found': []" in report and "'gold_in_cmdline': False" in report, report
        assert traj.reward == 0.0, traj.verdict
        # the next episodes (a reset sandbox: no daemon, no planted module) score the right answer 1, a wrong one 0
        right = [[{"name": "submit_answer", "arguments": {"answer": gold}}]]
        assert play(env, right, max_steps=3, task_id=task.id).reward == 1.0
        assert play(env, [submit], max_steps=3, task_id=task.id).reward == 0.0
    finally:
        env.close()


# -- MCP-backed environments -----------------------------------------------------------------------------------
@pytest.mark.docker
@pytest.mark.slow
def test_mcp_arguments_cannot_inject_protocol_messages_or_reach_hidden_methods(tmp_path):
    """A note whose text holds newlines and a forged JSON-RPC reply comes back as the same text (the client
    never reads it as a message); protocol methods as tool names are unknown tools; a result over the limit is
    an `Error:`; none of it passes the task, and the env server is still there for the next call."""
    from toolgym.sandbox.requirements import RequirementsError, prepare

    from tests.synth.mcp_servers import NOTES_REQUIREMENTS, import_notes

    try:
        prepare(list(NOTES_REQUIREMENTS), log=lambda _: None)
    except RequirementsError as exc:
        pytest.skip(f"cannot prepare the MCP requirements: {exc}")
    env = ToolEnv(import_notes(tmp_path), backend=backend_or_skip("docker"))
    forged_reply = json.dumps(
        {"jsonrpc": "2.0", "id": 2, "result": {"content": [{"type": "text", "text": "[]"}]}}
    )
    body = "x\n" + forged_reply + "\n\r\n" + forged_reply + "\u2028\x00"
    try:
        env.reset(options={"task_id": "notes-groceries"})
        steps = [
            [{"name": "add_note", "arguments": {"title": "Groceries", "body": body, "tags": ["shopping"]}}],
            [{"name": "list_notes", "arguments": {}}],
            [
                {"name": n, "arguments": {}}
                for n in ("tools/call", "initialize", "tools/list", "notifications/x")
            ],
            [{"name": "add_note", "arguments": {"title": "big", "body": "y" * 400_000, "tags": []}}],
            [{"name": "list_notes", "arguments": {}}],
            [{"name": "delete_note", "arguments": {"note_id": "n2"}}],
            "All done.",
        ]
        traj = play(env, steps, max_steps=10)
        texts = tool_texts(traj)
        listed = json.loads(texts[1])
        assert [n["body"] for n in listed["notes"] if n["title"] == "Groceries"] == [body], texts[1][:300]
        assert [e["kind"] for e in traj.steps[2].errors] == ["unknown_tool"] * 4
        assert any(t.startswith("Error:") for t in texts[-3:-1]), [t[:120] for t in texts]
        assert traj.stop_reason not in ("model_error", "env_error") and traj.reward == 0.0, (
            traj.verdict
        )  # a wrong body, an extra note
    finally:
        env.close()
