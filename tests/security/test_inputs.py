"""Inputs are refused before they can hurt: environment folders that point outside themselves, tool arguments
that are not JSON values, nested past reason or too large for the wire, and a malformed env.json. Every test
fails if the input gets through."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from toolgym.envs import EnvRuntimeError, ToolEnv, validate_env
from toolgym.envs.spec import EnvFormatError, load_env_spec

from ..envs.conftest import write_toy_env


def _bump(arguments: str) -> dict:
    return {
        "content": "",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "bump", "arguments": arguments}}],
    }


@pytest.fixture
def toy(tmp_path) -> Path:
    return write_toy_env(tmp_path / "store")


@pytest.mark.parametrize("kind", ["symlink", "symlinked folder", "hard link", "fifo"])
def test_a_state_file_that_reaches_outside_is_refused_by_validate_and_at_push(
    toy, tmp_path, kind, docker_backend
):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("the host's secret\n")
    state = toy / "state"
    if kind == "symlink":
        os.symlink(secret, state / "notes.txt")
    elif kind == "symlinked folder":
        os.symlink(tmp_path, state / "up")
    elif kind == "hard link":
        os.link(secret, state / "notes.txt")
    else:
        os.mkfifo(state / "pipe")
    problems = validate_env(toy)
    assert problems and any(w in problems[0] for w in ("symlink", "hard link", "FIFO")), problems
    env = ToolEnv(toy, backend=docker_backend, transport="push")
    with pytest.raises(EnvRuntimeError, match="refusing to load"):
        env.reset(seed=0)
    env.close()


@pytest.mark.parametrize(
    "arguments, why",
    [
        ('{"by": NaN}', "NaN"),
        ('{"by": Infinity}', "Infinity"),
        ('{"by": -Infinity}', "Infinity"),
        ("[" * 10_000 + "]" * 10_000, "nested too deeply"),
        ('{"by": ' + "[" * 10_000 + "]" * 10_000 + "}", "nested too deeply"),
    ],
)
def test_arguments_that_are_not_json_values_are_the_agents_error(toy, arguments, why, docker_backend):
    env = ToolEnv(toy, backend=docker_backend)
    try:
        env.reset(seed=0)
        _, _, terminated, truncated, info = env.step(_bump(arguments))
        assert not (terminated or truncated) and "env_error" not in info
        assert info["tool_results"] == [{"name": "bump", "ok": False, "error_kind": "invalid_arguments"}]
        assert why in info["messages"][-1]["content"]
        # the episode goes on
        _, _, _, _, info = env.step(_bump('{"by": 1}'))
        assert info["tool_results"][0]["ok"]
    finally:
        env.close()


def test_arguments_past_the_wire_cap_get_an_error_and_the_episode_goes_on(toy, docker_backend):
    env = ToolEnv(toy, backend=docker_backend)
    try:
        env.reset(seed=0)
        _, _, _, truncated, info = env.step(_bump('{"by": 1, "pad": "' + "x" * 5_000_000 + '"}'))
        assert not truncated and "env_error" not in info
        assert info["messages"][-1]["content"].startswith("Error: the arguments of bump are 5,000,0")
        _, _, _, _, info = env.step(_bump('{"by": 1}'))
        assert info["tool_results"][0]["ok"]
    finally:
        env.close()


def test_a_malformed_env_json_names_its_file(toy):
    (toy / "env.json").write_text('{"id": "toy", "category": "nonsense"}')
    with pytest.raises(EnvFormatError, match=str(toy / "env.json")):
        load_env_spec(toy)
    with pytest.raises(EnvFormatError, match="env.json"):
        ToolEnv(toy)
