"""`toolgym serve`: the vLLM command that serves a model with the right tool-call and reasoning parsers.

`toolgym serve default --start` serves the embedded model: it waits until the server answers, then prints its
URL and the `toolgym rollout` line that runs it, and stops the server on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path

DEFAULT_SERVED_NAME = "default"
"""The embedded model is served under the name `--model default` means everywhere else."""


def run(args) -> int:
    from toolgym.agent.serve import CPU_GPU_MEMORY_UTILIZATION, cpu_only, recipe_for, serve_command

    try:
        model_dir, served_name = _model(args)
        recipe = recipe_for(model_dir, args.family)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"toolgym: {exc}", file=sys.stderr)
        return 2
    python = args.python or _vllm_python()
    utilization = args.gpu_memory_utilization
    if utilization is None and cpu_only():
        utilization = CPU_GPU_MEMORY_UTILIZATION
    extra = ["--gpu-memory-utilization", str(utilization)] if utilization else []
    if args.model == "default" and "--dtype" not in args.extra:
        from toolgym.model.default import VLLM_ARGS

        extra += list(VLLM_ARGS)  # vLLM CPU's default bfloat16 cast makes this model answer nonsense
    argv = serve_command(
        model_dir,
        family=recipe.family,
        served_model_name=served_name,
        port=args.port,
        host=args.host,
        python=python,
        max_model_len=args.max_model_len,
        extra_args=extra + list(args.extra),
    )
    import shlex

    print(shlex.join(argv), flush=True)
    if not args.start:
        return 0
    if not Path(python).exists() and shutil.which(python) is None:
        print(
            f"toolgym: no Python with vLLM at {python}: run `make vllm-env` or pass --python.",
            file=sys.stderr,
        )
        return 2
    if not Path(model_dir).is_dir():
        print(
            f"toolgym: model folder {model_dir} does not exist: pass a local checkpoint folder, or `default`.",
            file=sys.stderr,
        )
        return 2
    return _start(args, argv, model_dir, served_name or Path(model_dir).name, recipe.encoding)


def _model(args) -> tuple[str, str | None]:
    """The model folder to serve and its served name (None: vLLM's default, the folder's name)."""
    from toolgym.model.default import DEFAULT_MODEL_NAME

    if args.model != DEFAULT_MODEL_NAME:
        return args.model, args.served_model_name
    from toolgym.model.default import resolve_model

    folder = resolve_model(args.model, progress=lambda line: print(f"toolgym: {line}", file=sys.stderr))
    return str(folder), args.served_model_name or DEFAULT_SERVED_NAME


def _start(args, argv: list[str], model_dir: str, served_name: str, encoding: str) -> int:
    from toolgym.agent.serve import (
        ServerStartError,
        client_base_url,
        rollout_command_line,
        start_server,
        stop_server,
        wait_until_ready,
    )
    from toolgym.agent.template_check import local_template_renders_tools

    base = client_base_url(args.host, args.port)
    renders_tools = local_template_renders_tools(model_dir)
    log = open(args.log, "ab") if args.log else None  # noqa: SIM115 (open for the server's whole life)
    proc = start_server(argv, log=log)

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        try:
            wait_until_ready(proc, base, timeout_s=args.ready_timeout)
        except ServerStartError as exc:
            where = f"see {args.log}" if args.log else "see its output above"
            print(f"toolgym: vLLM did not start: {exc}; {where}.", file=sys.stderr)
            return 1
        print(f"serving {served_name} at {base} (vLLM pid {proc.pid}); Ctrl-C stops it")
        print(f"run it with:  {rollout_command_line(base, served_name, encoding)}")
        if renders_tools is False:
            print(
                "its chat template drops tools, so `--encoding chat` is refused: use the line above "
                f"(--encoding {encoding} renders the tools into the prompt)"
            )
        sys.stdout.flush()
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        # a second Ctrl-C or SIGTERM must not cut the shutdown short and orphan vLLM's engine
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        code = stop_server(proc)
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, previous)
        if log is not None:
            log.close()
        print(f"toolgym: vLLM stopped (exit code {code})", file=sys.stderr)


def _vllm_python() -> str:
    """vLLM's own environment (`make vllm-env`): beside the working folder, else beside this checkout, so the
    command works from any folder; else whatever `python` is (a user who installed vLLM themselves)."""
    checkout = Path(__file__).resolve().parents[2]
    for root in (Path.cwd(), checkout):
        here = root / ".venv-vllm" / "bin" / "python"
        if here.exists():
            return str(here)
    return "python"


def add_parser(sub) -> None:
    from toolgym.cli import add_command

    p = add_command(
        sub,
        "serve",
        "Print (or --start) the vLLM command serving MODEL with matching tool and reasoning parsers.",
        "toolgym serve default --start                  # the embedded SmolLM2-135M-Instruct on vLLM CPU\n"
        "toolgym serve /models/DeepSeek-V3.2            # DSML tokenizer mode, deepseek_v32 tool parser\n"
        "toolgym serve /models/Qwen3-8B --port 8001       # hermes tool calls, qwen3 reasoning parser",
        run,
    )
    p.add_argument(
        "model", help="a local model directory (nothing is downloaded), or 'default' for the embedded model"
    )
    p.add_argument(
        "--family",
        default=None,
        help="chat format when the name does not tell it (deepseek_v32, qwen3, hermes, ...)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--served-model-name",
        default=None,
        help="the name clients pass as --model (default: the folder's name; 'default' for the embedded model)",
    )
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument(
        "--gpu-memory-utilization",
        type=float,
        default=None,
        help="vLLM's memory share (default: vLLM's own with a GPU, 0.3 on a CPU-only machine)",
    )
    p.add_argument(
        "--python", default=None, help="the Python that has vLLM (default: ./.venv-vllm/bin/python)"
    )
    p.add_argument(
        "--start",
        action="store_true",
        help="run the server, wait until it answers, print the rollout line; Ctrl-C stops it",
    )
    p.add_argument("--log", default=None, help="with --start: append vLLM's output to this file")
    p.add_argument(
        "--ready-timeout", type=float, default=600.0, help="with --start: seconds to wait for the server"
    )
    p.add_argument(
        "extra", nargs="*", help="more vLLM arguments: toolgym's options first, then MODEL -- --vllm-flag ..."
    )
