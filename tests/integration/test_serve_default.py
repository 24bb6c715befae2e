"""`toolgym serve default --start` brings up vLLM CPU on the embedded model, and a chat request gets an answer.

The command runs as a user would run it, in a subprocess; the test reads the base URL and the rollout line it
prints, talks to the server, runs the printed rollout line (2 tasks, hermes and deepseek_v32), probes its
chat template, then stops it with SIGTERM and checks that nothing of
vLLM is left. Where the embedded model cannot be made here, the tiny random model stands in for it.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

import httpx
import pytest
from toolgym.agent.template_check import ChatTemplateDropsTools, require_tools_in_chat_template

from . import tiny_hf_model
from .test_vllm import free_port, vllm_python

pytestmark = pytest.mark.slow


def model_argument(tmp_path) -> tuple[list[str], bool]:
    """`default` where the embedded model converts here, else the tiny model; and whether it is the default."""
    from toolgym.model.default import DefaultModelError, ensure_default_model

    try:
        ensure_default_model()
        return ["default"], True
    except DefaultModelError:
        return ["--family", "hermes", str(tiny_hf_model.build(tmp_path / "tiny-qwen2"))], False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_serve_default_start_answers_a_chat_request_and_stops_cleanly(tmp_path):
    python = vllm_python()
    model, is_default = model_argument(tmp_path)
    port = free_port()
    log = tmp_path / "vllm.log"
    cmd = [sys.executable, "-m", "toolgym", "serve", "--start", "--python", python, "--port", str(port)]
    cmd += ["--log", str(log), "--ready-timeout", "400", *model]
    serve = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    vllm_pid = None
    try:
        command = shlex.split(serve.stdout.readline())
        ready = serve.stdout.readline()
        assert ready.startswith("serving "), f"{ready!r}; stderr: {serve.stderr.read()}; see {log}"
        vllm_pid = int(ready.split("vLLM pid ")[1].split(")")[0])
        argv = dict(zip(command, command[1:], strict=False))
        assert argv["--tool-call-parser"] == "hermes" and argv["--gpu-memory-utilization"] == "0.3"
        base = ready.split(" at ")[1].split()[0]
        rollout = shlex.split(serve.stdout.readline().split(":", 1)[1])
        served = rollout[rollout.index("--model") + 1]
        assert rollout[rollout.index("--encoding") + 1] == "hermes"
        assert base == f"http://127.0.0.1:{port}"

        reply = httpx.post(
            base + "/v1/chat/completions",
            json={
                "model": served,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "max_tokens": 16,
                "temperature": 0.0,
            },
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["choices"][0]["message"]["content"] and body["usage"]["completion_tokens"] > 0

        # the printed rollout line runs as printed (bounded), and with the other raw encoding
        for encoding in ("hermes", "deepseek_v32"):
            line = [*rollout[1:]]
            line[line.index("--encoding") + 1] = encoding
            line[line.index("--out") + 1] = str(tmp_path / f"run-{encoding}")
            line += ["--limit", "2", "--max-steps", "2", "--max-tokens", "48", "--temperature", "0"]
            r = subprocess.run(
                [sys.executable, "-m", "toolgym", *line, "--no-progress"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert r.returncode == 0 and "2 episodes" in r.stdout, r.stdout + r.stderr

        if is_default:  # SmolLM2's template drops tools: the served probe must refuse --encoding chat
            assert "drops tools" in serve.stdout.readline()
            with pytest.raises(ChatTemplateDropsTools, match="--encoding hermes"):
                require_tools_in_chat_template(base, served)
        else:
            require_tools_in_chat_template(base, served)
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            code = serve.wait(timeout=90)
        except subprocess.TimeoutExpired:  # never leave a server behind, even when the test fails
            serve.kill()
            if vllm_pid and group_alive(vllm_pid):
                os.killpg(vllm_pid, signal.SIGKILL)
            raise
        stderr = serve.stderr.read()
    assert code == 0, stderr
    assert "vLLM stopped" in stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)
    assert not group_alive(vllm_pid)  # the API server and its engine processes are all gone
