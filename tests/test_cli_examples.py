"""Every `toolgym` subcommand's --help examples run as written.

The examples are read from the real parser (each subcommand's epilog, below its "example:" line), so a new
command is covered the day it lands. They run one after another in one shared working folder, ordered so
that each finds what an earlier one made (a corpus from `synth`, a run from `rollout`, a checkpoint from
`train`), through bash exactly as a user would paste them, with this venv's `toolgym` first on PATH.

- An example that names a model server (`--base-url http://127.0.0.1:PORT`) gets a stub OpenAI-compatible
  server on that port, which answers every request with a plain final answer.
- An example that starts a server (`--start`) runs until it prints its rollout line, then gets Ctrl-C and
  must exit 0.
- The inputs a user brings are made first: a requirements file, an MCP server with its tasks and verifier.

Examples that cannot run in CI go in CANNOT_RUN with the reason; keep it as short as possible. An example
another test already runs exactly as written goes in RUN_ELSEWHERE, naming that test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agent.fake_server import FakeModel, chat_reply, serve, text_reply
from toolgym.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
MCP_SERVERS = ROOT / "tests" / "synth" / "mcp_servers"

# Commands in the order their examples run: each may read what the ones before it wrote. A command not
# named here (a new one) runs after all of these, when every kind of input exists.
ORDER = [
    "doctor",
    "sandbox setup",
    "sandbox reap",
    "envs list",
    "envs show",
    "envs schema",
    "envs build-reference",
    "envs import-reasoning-gym",
    "envs import-mcp",
    "envs validate",
    "sandbox build-image",
    "sandbox run",
    "envs serve-mcp",
    "synth envs",
    "synth tasks",
    "synth report",
    "synth split",
    "synth filter",
    "serve",
    "rollout",
    "eval",
    "export sft",
    "export rl",
    "train sft",
    "train grpo",
    "model default",
    "model corpus",
    "model train",
    "model quality",
    "model generate",
    "model bench",
    "model",
    "model retrofit",
    "demo",
]

# example text -> why it cannot run in CI
CANNOT_RUN: dict[str, str] = {}

# example text -> the test that already runs this command (kept out of here to save its minutes)
RUN_ELSEWHERE: dict[str, str] = {
    "toolgym serve default --start                  # the embedded SmolLM2-135M-Instruct on vLLM CPU": (
        "tests/integration/test_serve_default.py runs this command (on a free port), talks to the server and "
        "stops it: 2-3 min of vLLM start-up not paid twice"
    ),
}

EXAMPLE_TIMEOUT_S = 570  # under pytest's 600 s per test
BASE_URL = re.compile(r"--base-url\s+http://127\.0\.0\.1:(\d+)")


@dataclass(frozen=True)
class Example:
    command: str  # "synth tasks"
    text: str  # as printed, continuation lines included

    def __str__(self) -> str:
        return f"[{self.command}] " + re.sub(r"\s*\\\n\s*", " ", self.text)


def example_texts(epilog: str) -> list[str]:
    """The commands of an epilog's example block: indented lines, `\\` continuations joined, comments out."""
    lines = epilog.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() in ("example:", "examples:")]
    if not starts:
        return []
    out: list[str] = []
    current: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if not line.startswith("  ") and not current:
            continue  # prose after the examples
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current.append(line.strip() if not current else line)
        if not stripped.endswith("\\"):
            out.append("\n".join(current))
            current = []
    if current:
        out.append("\n".join(current))
    return out


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) of every subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from subcommands(sub, (*path, name))


def collect() -> list[Example]:
    found = [
        Example(" ".join(path), text)
        for path, sub in subcommands(build_parser())
        for text in example_texts(sub.epilog or "")
    ]
    rank = {name: i for i, name in enumerate(ORDER)}
    # stable: a command's own examples keep their order; unknown commands go last, by name
    return sorted(
        found, key=lambda e: (rank.get(e.command, len(ORDER)), e.command if e.command not in rank else "")
    )


EXAMPLES = collect()


def test_every_subcommand_shows_an_example():
    parsers = dict(subcommands(build_parser()))
    leaves = [
        " ".join(path)
        for path, p in parsers.items()
        if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)
    ]
    missing = [name for name in leaves if not example_texts(parsers[tuple(name.split())].epilog or "")]
    assert not missing, f"subcommands whose --help ends with no example: {missing}"
    assert {"synth tasks", "rollout", "eval", "export sft"} <= {e.command for e in EXAMPLES}


def test_example_blocks_are_read_as_a_shell_would():
    epilog = "example:\n  toolgym a --x 1   # note\n  # a comment\n  toolgym b \\\n      --y 2\nprose line\n"
    assert example_texts(epilog) == ["toolgym a --x 1   # note", "toolgym b \\\n      --y 2"]


# --- running them -----------------------------------------------------------------------------------------------


class AnswersEverything(FakeModel):
    """A model server that gives up politely on every task: each request gets a final answer, no tool call."""

    def answer(self, path, body):
        self.requests.append((path, body))
        if path.endswith("/chat/completions"):
            return 200, chat_reply({"content": "I cannot finish this task."}), 0.0
        prompt = body.get("prompt", "")
        thinking = isinstance(prompt, str) and prompt.rstrip().endswith("<think>")
        return (
            200,
            text_reply(("Nothing to look up.</think>" if thinking else "") + "I cannot finish this task."),
            0.0,
        )


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def bring_user_inputs(work: Path) -> None:
    """What the examples expect a user to have: a requirements file, an MCP server, its tasks and verifier,
    and vLLM's own venv (`make vllm-env`)."""
    (work / "requirements.txt").write_text("mcp==2.3.0\n")
    shutil.copytree(MCP_SERVERS / "servers", work / "servers", ignore=shutil.ignore_patterns("__pycache__"))
    tasks = (
        (MCP_SERVERS / "notes_tasks.jsonl").read_text().replace('"env_id": "mcp-notes"', '"env_id": "notes"')
    )
    (work / "notes_tasks.jsonl").write_text(tasks)
    shutil.copy(MCP_SERVERS / "notes_verify.py", work / "notes_verify.py")
    if (
        ROOT / ".venv-vllm"
    ).exists():  # `toolgym serve --start` finds vLLM in ./.venv-vllm, as in the checkout
        (work / ".venv-vllm").symlink_to(ROOT / ".venv-vllm")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("examples")
    bring_user_inputs(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def machine_calibration_kept():
    """`model bench --calibrate` stores its crossover in the real cache (the default model's conversion is
    cached there too, so the cache stays): this machine's own calibration is put back afterwards."""
    from toolgym.model.dsa import crossover_path

    path = crossover_path()
    saved = path.read_bytes() if path.is_file() else None
    yield
    if saved is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(saved)


def shell_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("TOOLGYM_ENV_STORE", None)
    env["TOOLGYM_BENCH_SECONDS"] = "0.3"  # `model bench` examples: few timing rounds, the same code paths
    return env


def run_to_the_end(text: str, work: Path) -> tuple[int, str]:
    """Run one example; past the time limit its whole process group is killed, not only bash."""
    proc = subprocess.Popen(
        ["bash", "-c", text],
        cwd=work,
        env=shell_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=EXAMPLE_TIMEOUT_S)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return -9, output + f"\n(killed after {EXAMPLE_TIMEOUT_S} s)"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_until_ready(text: str, work: Path) -> tuple[int, str]:
    """A server example: wait for its rollout line, press Ctrl-C, return (exit code, output)."""
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {text}"],
        cwd=work,
        env=shell_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out: list[str] = []
    deadline = time.monotonic() + EXAMPLE_TIMEOUT_S - 30
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if "run it with:" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        out.append(rest or "")
        return proc.returncode, "".join(out)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[str(e) for e in EXAMPLES])
def test_example_runs_as_written(example: Example, work: Path):
    if example.text in CANNOT_RUN:
        pytest.skip(CANNOT_RUN[example.text])
    if example.text in RUN_ELSEWHERE:
        pytest.skip(RUN_ELSEWHERE[example.text])
    text = example.text
    if text.startswith("sudo ") and os.geteuid() == 0:
        text = text[len("sudo ") :]  # root needs no sudo, and CI's image may not have it
    stub = None
    port = BASE_URL.search(text)
    if port and not port_in_use(int(port.group(1))):
        stub = serve(AnswersEverything(), port=int(port.group(1)))
        stub.__enter__()
    try:
        if "--start" in text.split():
            code, output = run_until_ready(text, work)
        else:
            code, output = run_to_the_end(text, work)
    finally:
        if stub is not None:
            stub.__exit__(None, None, None)
    assert code == 0, f"`{example}` exited {code} in {work}:\n{output[-3000:]}"
