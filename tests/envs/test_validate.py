"""`validate_env` / `toolgym envs validate` reject each kind of malformed environment with one clear sentence."""

from __future__ import annotations

import json

from toolgym.envs import validate_env


def _edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_a_good_environment_has_no_problems(toy_env):
    assert validate_env(toy_env) == []


def test_missing_field(toy_env):
    _edit_json(toy_env / "env.json", lambda d: d.pop("category"))
    assert "env.json: the required field 'category' is missing; add it." in validate_env(toy_env)


def test_bad_field_and_unknown_field(toy_env):
    _edit_json(toy_env / "env.json", lambda d: d.update(category="poetry", colour="red"))
    problems = validate_env(toy_env)
    assert any(p.startswith("env.json: field 'category' is invalid") for p in problems)
    assert "env.json: 'colour' is not a field of the format; remove it." in problems


def test_schema_that_does_not_match_the_function(toy_env):
    def change(d):
        d["tools"][0]["function"]["parameters"]["properties"]["a"]["type"] = "string"

    _edit_json(toy_env / "env.json", change)
    problems = validate_env(toy_env)
    assert any(
        "tool 'add': the parameter schema in env.json does not match the signature of add()" in p
        for p in problems
    )


def test_verifier_named_by_a_task_but_absent(toy_env):
    (toy_env / "verify.py").write_text("def check_counter(ctx, answer, calls, value):\n    return 1.0\n")
    problems = validate_env(toy_env)
    assert (
        "task toy-add: names verifier 'check_answer', which verify.py does not define; add it to verify.py "
        "or fix the name."
    ) in problems


def test_state_that_does_not_load(toy_env):
    (toy_env / "state" / "db.sqlite").write_bytes(b"this is not a database" * 100)
    problems = validate_env(toy_env)
    assert any(p.startswith("state file state/db.sqlite is not a loadable SQLite database") for p in problems)
    assert "the content hash in env.json is out of date; rewrite env.json with write_env_spec()." in problems


def test_reference_solution_naming_an_unknown_tool_or_bad_arguments(toy_env):
    lines = [json.loads(x) for x in (toy_env / "tasks.jsonl").read_text().splitlines()]
    lines[0]["solution"][0] = {"name": "multiply", "arguments": {}}
    lines[1]["solution"][0] = {"name": "bump", "arguments": {"by": "seven"}}
    (toy_env / "tasks.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    problems = validate_env(toy_env)
    assert (
        "task toy-add: reference solution step 1 calls unknown tool 'multiply'; use one of the environment's "
        "tools."
    ) in problems
    assert any(
        p.startswith("task toy-bump: reference solution step 1: argument 'by' must be an integer")
        for p in problems
    )


def test_tools_module_that_does_not_import_and_missing_files(toy_env):
    (toy_env / "tools.py").write_text("def broken(:\n")
    (toy_env / "verify.py").unlink()
    problems = validate_env(toy_env)
    assert any(p.startswith("tools.py does not import (SyntaxError") for p in problems)
    assert any("but there is no verify.py; add one." in p for p in problems)


def test_not_json_and_not_a_folder(toy_env, tmp_path):
    (toy_env / "env.json").write_text("{ nope")
    assert any(p.startswith("env.json is not valid JSON") for p in validate_env(toy_env))
    assert validate_env(tmp_path / "nothing")[0].endswith(
        "pass the path of an environment folder (it holds env.json)."
    )
