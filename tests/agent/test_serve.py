"""The vLLM serve command picks the parsers that match each model's chat format."""

from __future__ import annotations

import shlex

import pytest
from toolgym.agent import encodings
from toolgym.agent.serve import RECIPES, model_family, serve_command, serve_command_line


def flags(argv):
    """{--flag: value or True} of an argv."""
    out, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--"):
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            out[argv[i]] = argv[i + 1] if has_value else True
            i += 2 if has_value else 1
        else:
            i += 1
    return out


def test_deepseek_v32_command():
    argv = serve_command("/models/DeepSeek-V3.2", port=8100, max_model_len=32768, tensor_parallel_size=8)
    assert argv[:5] == [
        "python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/models/DeepSeek-V3.2",
    ]
    assert flags(argv) == {
        "--model": "/models/DeepSeek-V3.2",
        "--served-model-name": "DeepSeek-V3.2",
        "--host": "127.0.0.1",
        "--port": "8100",
        "--tokenizer-mode": "deepseek_v32",
        "--enable-auto-tool-choice": True,
        "--tool-call-parser": "deepseek_v32",
        "--reasoning-parser": "deepseek_v3",
        "--max-model-len": "32768",
        "--tensor-parallel-size": "8",
    }


@pytest.mark.parametrize(
    "model, family, reasoning",
    [
        ("Qwen/Qwen2.5-7B-Instruct", "hermes", None),
        ("/m/NousResearch/Hermes-3-Llama-3.1-8B", "hermes", None),
        ("/m/Qwen3-8B", "qwen3", "qwen3"),
        ("deepseek-ai/DeepSeek-V3.2-Exp", "deepseek_v32", "deepseek_v3"),
    ],
)
def test_family_by_name(model, family, reasoning):
    assert model_family(model) == family
    got = flags(serve_command(model))
    assert got.get("--reasoning-parser") == reasoning
    assert got["--tool-call-parser"] == ("deepseek_v32" if family == "deepseek_v32" else "hermes")
    assert RECIPES[family].encoding in encodings.ENCODINGS


def test_unknown_model_asks_for_a_family():
    with pytest.raises(ValueError, match="pass family= one of deepseek_v32, qwen3, hermes"):
        serve_command("/models/mystery-7b")
    assert flags(serve_command("/models/mystery-7b", family="hermes"))["--tool-call-parser"] == "hermes"


def test_command_line_is_shell_quoted():
    line = serve_command_line("/my models/Qwen3-0.6B", extra_args=["--dtype", "bfloat16"])
    assert shlex.split(line)[4] == "/my models/Qwen3-0.6B" and line.endswith("--dtype bfloat16")


def test_serve_cli_prints_the_command_and_names_the_fix():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "toolgym", "serve", "/models/DeepSeek-V3.2", "--port", "9000"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0
    assert "--tokenizer-mode deepseek_v32" in r.stdout and "--tool-call-parser deepseek_v32" in r.stdout
    assert "--port 9000" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "toolgym", "serve", "/models/mystery-7b"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "family=" in r.stderr and "Traceback" not in r.stderr


# --- the embedded model's recipe, and chat templates that drop tools ---------------------------------------


def smollm2_template() -> str:
    """SmolLM2's chat template: from the converted default model, else from the GGUF's metadata."""
    from toolgym.agent.template_check import chat_template_of
    from toolgym.model import default

    try:
        folder = default.find_default_model()
        if folder is not None:
            return chat_template_of(folder)
        source = default.gguf_path()
    except default.DefaultModelError as exc:
        pytest.skip(f"no embedded model here: {exc}")
    gguf = pytest.importorskip("gguf")
    field = gguf.GGUFReader(source).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode()


def tiny_template() -> str:
    from tests.integration.tiny_hf_model import CHAT_TEMPLATE

    return CHAT_TEMPLATE


def test_a_template_that_lists_tools_renders_them():
    from toolgym.agent.template_check import (
        PROBE_MESSAGES,
        PROBE_TOOL,
        render_chat_template,
        template_renders_tools,
    )

    assert template_renders_tools(tiny_template())
    text = render_chat_template(tiny_template(), PROBE_MESSAGES, [PROBE_TOOL])
    assert '"name": "toolgym_template_probe"' in text and text.endswith("<|im_start|>assistant\n")


def test_smollm2s_template_drops_tools():
    from toolgym.agent.template_check import (
        PROBE_MESSAGES,
        PROBE_TOOL,
        render_chat_template,
        template_renders_tools,
    )

    template = smollm2_template()
    assert not template_renders_tools(template, {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"})
    text = render_chat_template(template, PROBE_MESSAGES, [PROBE_TOOL])
    assert "<|im_start|>user\nWhat can you do?<|im_end|>" in text and "toolgym_template_probe" not in text


def write_checkpoint(folder, template, how):
    """A checkpoint folder's tokenizer files holding `template` the way transformers 5 or 4 saves it."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    config = {"eos_token": {"content": "<|im_end|>"}, "bos_token": None}
    if how == "jinja":
        (folder / "chat_template.jinja").write_text(template)
    elif how == "string":
        config["chat_template"] = template
    else:  # named templates: a tools request uses 'tool_use'
        config["chat_template"] = [
            {"name": "default", "template": "{{ messages[0].content }}"},
            {"name": "tool_use", "template": template},
        ]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("how", ["jinja", "string", "named"])
def test_the_check_reads_every_saved_form(tmp_path, how):
    from toolgym.agent.template_check import (
        ChatTemplateDropsTools,
        local_template_renders_tools,
        require_tools_in_chat_template,
    )

    good = write_checkpoint(tmp_path / "good", tiny_template(), how)
    bad = write_checkpoint(tmp_path / "bad", smollm2_template(), how)
    assert local_template_renders_tools(good) is True
    assert local_template_renders_tools(bad) is False
    assert local_template_renders_tools(tmp_path) is None  # no template: nothing to judge
    require_tools_in_chat_template(None, str(good))
    with pytest.raises(ChatTemplateDropsTools) as refused:
        require_tools_in_chat_template(None, str(bad))
    message = str(refused.value)
    assert "`--encoding hermes`" in message and message.count(". ") == 0 and message.endswith(".")
    assert isinstance(refused.value, ValueError)  # the rollout command reports ValueErrors in one line


def fake_tokenize_server(template, status=200):
    """A vLLM-like /tokenize that renders `template` and returns one token per character."""
    import httpx
    from toolgym.agent.template_check import render_chat_template

    requests = []

    def handle(request):
        import json

        body = json.loads(request.content)
        requests.append((request.url.path, body))
        if status != 200:
            return httpx.Response(status, json={"error": "not found"})
        text = render_chat_template(template, body["messages"], body.get("tools"))
        return httpx.Response(200, json={"tokens": [ord(c) for c in text], "count": len(text)})

    return httpx.MockTransport(handle), requests


def test_the_served_check_probes_the_tokenize_endpoint():
    from toolgym.agent.template_check import served_template_renders_tools

    transport, requests = fake_tokenize_server(smollm2_template())
    assert served_template_renders_tools("http://x:8000/v1", "default", transport=transport) is False
    assert [path for path, _ in requests] == ["/tokenize", "/tokenize"]
    assert requests[0][1]["tools"][0]["function"]["name"] == "toolgym_template_probe"
    assert "tools" not in requests[1][1] and requests[1][1]["model"] == "default"
    transport, _ = fake_tokenize_server(tiny_template())
    assert served_template_renders_tools("http://x:8000", "m", transport=transport) is True
    transport, _ = fake_tokenize_server(tiny_template(), status=404)  # not vLLM: cannot tell
    assert served_template_renders_tools("http://x:8000", "m", transport=transport) is None


def test_smollm2_and_any_chatml_checkpoint_get_the_hermes_recipe(tmp_path):
    assert model_family("/cache/models/SmolLM2-135M-Instruct.Q4_1-b179c9523d0e6a0f") == "hermes"
    chatml = write_checkpoint(tmp_path / "m" / "my-model", tiny_template(), "jinja")
    assert model_family(str(chatml)) == "hermes"
    plain = write_checkpoint(tmp_path / "m" / "other-model", "{{ messages[0].content }}", "jinja")
    with pytest.raises(ValueError, match="pass family="):
        model_family(str(plain))


def test_rollout_line_names_the_encoding():
    from toolgym.agent.serve import client_base_url, rollout_command_line

    base = client_base_url("0.0.0.0", 8123)
    assert base == "http://127.0.0.1:8123"
    argv = shlex.split(rollout_command_line(base, "default", "hermes"))
    assert flags(argv) == {
        "--policy": "llm",
        "--base-url": base,
        "--model": "default",
        "--encoding": "hermes",
        "--out": "runs/served-default",
    }


def test_serve_default_prints_the_embedded_models_command():
    import subprocess
    import sys

    from toolgym.agent.serve import cpu_only
    from toolgym.model import default

    try:
        folder = default.find_default_model()
    except default.DefaultModelError as exc:
        pytest.skip(f"no embedded model here: {exc}")
    if folder is None:
        pytest.skip("the embedded model is not converted yet (`toolgym model default`)")
    r = subprocess.run(
        [sys.executable, "-m", "toolgym", "serve", "default", "--port", "8123"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    got = flags(shlex.split(r.stdout.strip().splitlines()[-1]))
    assert got["--model"] == str(folder) and got["--served-model-name"] == "default"
    assert got["--tool-call-parser"] == "hermes" and "--reasoning-parser" not in got
    assert got.get("--gpu-memory-utilization") == ("0.3" if cpu_only() else None)
    assert got["--dtype"] == "float32"  # vLLM CPU's default bfloat16 cast breaks this model


# --- --start: a fake vLLM that answers /v1/models, with an engine child in its session -----------------------

FAKE_VLLM = r"""
import http.server, subprocess, sys, time
argv = sys.argv
port = int(argv[argv.index("--port") + 1])
delay = float(argv[argv.index("--delay") + 1]) if "--delay" in argv else 0.0
if "--fail" in argv:
    sys.exit(3)
engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # like vLLM's EngineCore
print("engine", engine.pid, flush=True)
time.sleep(delay)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.end_headers()
        self.wfile.write(b'{"data": []}')
    def log_message(self, *a):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def fake_python(tmp_path):
    """An executable standing in for .venv-vllm's python: it ignores `-m vllm...` and runs FAKE_VLLM."""
    import sys

    server = tmp_path / "fake_vllm.py"
    server.write_text(FAKE_VLLM)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(server))} "$@"\n')
    python.chmod(0o755)
    return str(python)


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid):
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purposes
        return f.read().split(") ")[1][0] != "Z"


def test_start_waits_for_the_server_and_stop_ends_its_whole_session(fake_python, tmp_path):
    from toolgym.agent.serve import ServerStartError, start_server, stop_server, wait_until_ready

    port = free_port()
    log = open(tmp_path / "log", "wb")
    proc = start_server([fake_python, "--port", str(port), "--delay", "1.5"], log=log)
    try:
        wait_until_ready(proc, f"http://127.0.0.1:{port}", timeout_s=30, poll_s=0.2)
    finally:
        code = stop_server(proc, timeout_s=5)
    engine = int((tmp_path / "log").read_text().split()[1])
    assert code == -15 and not alive(proc.pid) and not alive(engine)

    proc = start_server([fake_python, "--port", str(port), "--fail"], log=log)
    with pytest.raises(ServerStartError, match="exited with code 3"):
        wait_until_ready(proc, f"http://127.0.0.1:{port}", timeout_s=30, poll_s=0.2)
    proc = start_server([fake_python, "--port", str(port), "--delay", "30"], log=log)
    with pytest.raises(ServerStartError, match="did not answer"):
        wait_until_ready(proc, f"http://127.0.0.1:{port}", timeout_s=1, poll_s=0.2)
    stop_server(proc, timeout_s=5)


def test_serve_start_prints_the_rollout_line_and_stops_on_sigterm(fake_python, tmp_path):
    import signal
    import subprocess
    import sys

    import httpx

    model = write_checkpoint(tmp_path / "SmolLM2-like", smollm2_template(), "jinja")
    port = free_port()
    cmd = [sys.executable, "-m", "toolgym", "serve", str(model), "--start", "--python", fake_python]
    cmd += ["--port", str(port), "--log", str(tmp_path / "vllm.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [proc.stdout.readline() for _ in range(4)]
    assert lines[1].startswith(f"serving SmolLM2-like at http://127.0.0.1:{port}")
    rollout = shlex.split(lines[2].split(":", 1)[1])
    assert (
        flags(rollout)["--encoding"] == "hermes"
        and flags(rollout)["--base-url"] == f"http://127.0.0.1:{port}"
    )
    assert "drops tools" in lines[3] and "--encoding chat" in lines[3]
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    engine = int((tmp_path / "vllm.log").read_text().split()[1])
    assert not alive(engine) and "vLLM stopped" in proc.stderr.read()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models")


def test_serve_start_names_the_log_when_vllm_fails(fake_python, tmp_path):
    import subprocess
    import sys

    model = write_checkpoint(tmp_path / "Qwen2-tiny", tiny_template(), "jinja")
    cmd = [sys.executable, "-m", "toolgym", "serve", "--start", "--python", fake_python]
    cmd += ["--log", str(tmp_path / "vllm.log"), str(model), "--", "--fail"]  # vLLM's own flags last
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert (
        f"vLLM did not start: the server exited with code 3 before it answered; see {tmp_path}/vllm.log."
        in r.stderr
    )
