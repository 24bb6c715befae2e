"""The vLLM server command for a model, with the tool-call and reasoning parsers that match its chat format.

`serve_command` is a pure function so the CLI can print it (`toolgym serve`) and tests can check it; it uses
`python -m vllm.entrypoints.openai.api_server`, which works where the `vllm` console script does not.
`start_server`, `wait_until_ready` and `stop_server` run it (`toolgym serve --start`, tests, benchmarks).
Parser and tokenizer-mode names are those registered in vLLM 0.32 (vllm/tool_parsers, vllm/reasoning).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO


@dataclass(frozen=True)
class ServeRecipe:
    """How vLLM must be told about one model family, and which of our encodings speaks its format."""

    family: str
    encoding: str
    """Our encoding for the raw `/v1/completions` mode (toolgym.agent.encodings)."""
    tool_call_parser: str
    reasoning_parser: str | None = None
    tokenizer_mode: str | None = None
    """DeepSeek-V3.2 ships no chat template; vLLM's `deepseek_v32` tokenizer mode carries the encoder."""


RECIPES: dict[str, ServeRecipe] = {
    # The deepseek_v3 reasoning parser turns on per request with chat_template_kwargs {"thinking": true}.
    "deepseek_v32": ServeRecipe(
        "deepseek_v32", "deepseek_v32", "deepseek_v32", "deepseek_v3", "deepseek_v32"
    ),
    "qwen3": ServeRecipe("qwen3", "hermes", "hermes", "qwen3"),
    "hermes": ServeRecipe("hermes", "hermes", "hermes"),
}

_FAMILY_PATTERNS: list[tuple[str, str]] = [
    (r"deepseek.*v3[._-]?2", "deepseek_v32"),
    (r"qwen-?3", "qwen3"),
    (r"qwen-?2|qwq|hermes", "hermes"),
    # SmolLM2 (the embedded default model) is a llama model in ChatML, tuned on <tool_call> JSON calls
    (r"smollm", "hermes"),
]


def model_family(model: str) -> str:
    """The recipe name for a model directory or hub name (from its last path parts, case-insensitive)."""
    name = "/".join(PurePath(model).parts[-2:]).lower()
    for pattern, family in _FAMILY_PATTERNS:
        if re.search(pattern, name):
            return family
    if Path(model).is_dir():
        from .template_check import chat_template_of

        # a local ChatML checkpoint under any name: the hermes format is ChatML plus <tool_call> JSON
        if "<|im_start|>" in (chat_template_of(model) or ""):
            return "hermes"
    raise ValueError(
        f"cannot tell the chat format of model {model!r} from its name; pass family= one of {', '.join(RECIPES)}."
    )


def recipe_for(model: str, family: str | None = None) -> ServeRecipe:
    name = family or model_family(model)
    if name not in RECIPES:
        raise ValueError(f"unknown model family {name!r}; use one of {', '.join(RECIPES)}.")
    return RECIPES[name]


def serve_command(
    model_dir: str,
    *,
    family: str | None = None,
    served_model_name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    python: str = "python",
    max_model_len: int | None = None,
    tensor_parallel_size: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv that serves `model_dir` on an OpenAI-compatible API with tool calls and reasoning parsed.

    The served name defaults to the directory's name, which is what clients pass as `model`.
    """
    recipe = recipe_for(model_dir, family)
    argv = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir]
    argv += ["--served-model-name", served_model_name or PurePath(model_dir).name]
    argv += ["--host", host, "--port", str(port)]
    if recipe.tokenizer_mode:
        argv += ["--tokenizer-mode", recipe.tokenizer_mode]
    argv += ["--enable-auto-tool-choice", "--tool-call-parser", recipe.tool_call_parser]
    if recipe.reasoning_parser:
        argv += ["--reasoning-parser", recipe.reasoning_parser]
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    if tensor_parallel_size:
        argv += ["--tensor-parallel-size", str(tensor_parallel_size)]
    return [*argv, *extra_args]


def serve_command_line(model_dir: str, **kwargs: object) -> str:
    """`serve_command` as one shell-quoted line, for printing."""
    return shlex.join(serve_command(model_dir, **kwargs))  # type: ignore[arg-type]


CPU_GPU_MEMORY_UTILIZATION = 0.3
"""vLLM's CPU build sizes its KV cache from this share of the machine's memory; 0.9 would take most of it."""


def cpu_only() -> bool:
    """Whether this machine has no NVIDIA or AMD GPU device, so vLLM runs its CPU build."""
    return not (Path("/dev/nvidia0").exists() or Path("/dev/kfd").exists() or shutil.which("nvidia-smi"))


def client_base_url(host: str, port: int) -> str:
    """The URL clients use for a server bound to `host` (a wildcard address is reached on loopback)."""
    reach = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://[{reach}]:{port}" if ":" in reach else f"http://{reach}:{port}"


def rollout_command_line(
    base_url: str, served_model_name: str, encoding: str, *, corpus: str = "reference", out: str | None = None
) -> str:
    """The `toolgym rollout` line that runs a served model with the encoding its chat format needs."""
    out = out or f"runs/served-{re.sub(r'[^A-Za-z0-9._-]+', '-', served_model_name)}"
    argv = ["toolgym", "rollout", corpus, "--policy", "llm", "--base-url", base_url]
    argv += ["--model", served_model_name, "--encoding", encoding, "--out", out]
    return shlex.join(argv)


class ServerStartError(RuntimeError):
    """The server exited, or did not answer, before it was ready."""


def start_server(argv: Sequence[str], *, log: IO[bytes] | None = None) -> subprocess.Popen:
    """Run a server command in a session of its own, so `stop_server` reaches vLLM's engine processes too.

    Its output goes to `log` (a binary file), else to this process's stdout and stderr.
    """
    if log is None:
        return subprocess.Popen(list(argv), start_new_session=True)
    return subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_ready(
    proc: subprocess.Popen, base_url: str, *, timeout_s: float = 600.0, poll_s: float = 1.0
) -> None:
    """Block until `base_url`/v1/models answers 200; raise ServerStartError if `proc` exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise ServerStartError(f"the server exited with code {proc.returncode} before it answered")
        try:
            if (
                httpx.get(base_url.rstrip("/") + "/v1/models", timeout=min(5.0, poll_s * 5)).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(f"the server did not answer {base_url}/v1/models within {timeout_s:.0f} s")
        time.sleep(poll_s)


def stop_server(proc: subprocess.Popen, *, timeout_s: float = 30.0) -> int:
    """SIGTERM the server's session (vLLM shuts its engine processes down on it), SIGKILL whatever of the
    session is left `timeout_s` later; returns the server's exit code."""
    _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pass
    while time.monotonic() < deadline and _signal_group(proc.pid, 0):
        time.sleep(0.2)  # the engine processes finish their own shutdown
    _signal_group(proc.pid, signal.SIGKILL)
    return proc.wait()


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when none of it is left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True
