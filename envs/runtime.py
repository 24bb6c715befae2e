"""The host's handle on an env server running in a sandbox: loading the server, the two transports, one
request per Python cell (~0.3 ms round trip).

The server's own code is sent into a trusted Python session as source (no mount needed). The environment
arrives either through a read-only mount of its store ("mount") or as files pushed into the session ("push");
verify.py is pushed only when an episode is verified, so agent code never sees it during the episode.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolgym.sandbox import PythonSession, Sandbox

from .spec import unsafe_files

INSIDE_DIR = Path(__file__).resolve().parent / "inside"
STORE_MOUNT_ROOT = "/mnt/envstore"
PUSHED_FILES_MAX = 256 * 1024 * 1024
_BOOT = None


class EnvRuntimeError(RuntimeError):
    """The env server itself failed (not a tool: tool failures are tool errors for the model)."""


def store_mount(store: str | Path) -> str:
    """Where a store folder is mounted inside a sandbox: a fixed path per host path, so pools can share it."""
    store = Path(store).resolve()
    return f"{STORE_MOUNT_ROOT}/{hashlib.sha256(str(store).encode()).hexdigest()[:12]}"


def sandbox_mounts(stores: list[str | Path] | None = None) -> dict[str, str]:
    """Read-only mounts that let sandboxes load environments of `stores` (default: every known store) without
    pushing their files: `SandboxPool(8, mounts=toolgym.envs.sandbox_mounts())`. Only for categories where the
    agent runs no code (general, search): agent code could read every verify.py and task of a mounted store."""
    if stores is None:
        from .registry import stores as known_stores

        stores = known_stores()
    return {str(Path(s).resolve()): store_mount(s) for s in stores if Path(s).is_dir()}


def mounted_path(env_dir: Path, mounts: dict[str, str]) -> str | None:
    """The sandbox path of a host env folder under `mounts`, or None when no mounted store holds it."""
    env_dir = env_dir.resolve()
    for host, target in mounts.items():
        host_path = Path(host).resolve()
        if env_dir == host_path or host_path in env_dir.parents:
            return target + "/" + env_dir.relative_to(host_path).as_posix()
    return None


def _boot_code() -> str:
    """A cell that defines the in-sandbox modules `toolgym_env` and `envserver` from their source."""
    global _BOOT
    if _BOOT is None:
        sources = {name: (INSIDE_DIR / f"{name}.py").read_text() for name in ("toolgym_env", "envserver")}
        _BOOT = (
            "import sys as _s, types as _t\n"
            "def _toolgym_define(name, src):\n"
            "    m = _t.ModuleType(name); m.__file__ = '<toolgym:' + name + '>'\n"
            "    _s.modules[name] = m\n"
            "    exec(compile(src, m.__file__, 'exec'), m.__dict__)\n"
            "if 'envserver' not in _s.modules:\n"
            f"    _toolgym_define('toolgym_env', {sources['toolgym_env']!r})\n"
            f"    _toolgym_define('envserver', {sources['envserver']!r})\n"
            "import envserver\n"
        )
    return _BOOT


def _mcp_code(env_dir: Path) -> str:
    """For an environment whose tools.py uses `toolgym_mcp` (an imported MCP server): a line defining it in the
    session first (25 KB of source that other environments do not compile)."""
    tools = env_dir / "tools.py"
    if not tools.exists() or "toolgym_mcp" not in tools.read_text(errors="replace"):
        return ""
    source = (INSIDE_DIR / "toolgym_mcp.py").read_text()
    return f"if 'toolgym_mcp' not in _s.modules:\n    _toolgym_define('toolgym_mcp', {source!r})\n"


def check_env_files(env_dir: Path) -> None:
    """Refuse an environment folder whose files could reach outside it (symlinks, hard links, devices)."""
    problems = unsafe_files(env_dir)
    if problems:
        raise EnvRuntimeError(f"refusing to load {env_dir}: {problems[0]}")


def pushed_files(env_dir: Path) -> dict[str, str]:
    """What the push transport sends: env.json, tools.py, state/ and lib/ (never verify.py or tasks), as base64."""
    check_env_files(env_dir)
    paths = [env_dir / "env.json", env_dir / "tools.py"]
    for folder in ("state", "lib"):
        if (env_dir / folder).is_dir():
            paths += sorted(
                p for p in (env_dir / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
            )
    total = sum(p.stat().st_size for p in paths)
    if total > PUSHED_FILES_MAX:
        raise EnvRuntimeError(
            f"the environment's files are {total >> 20} MiB, too many to push; mount its store "
            "instead (SandboxPool(mounts=toolgym.envs.sandbox_mounts()))"
        )
    return {p.relative_to(env_dir).as_posix(): base64.b64encode(p.read_bytes()).decode() for p in paths}


REPLAY_CHUNK = 256
"""Episodes per replay request at most: the sandboxed server builds each request's reply (observed results
included) in its memory, so an environment with thousands of admission scripts goes in several requests."""


@dataclass
class Script:
    """A scripted episode: the task (a TaskSpec or its dict), the tool calls to make in order, and the final
    answer when no call submits one. Reference solutions, do-nothing and guess checks, random policies and
    rescoring are all scripts."""

    task: Any
    calls: list = field(default_factory=list)
    answer: str | None = None
    digest: bool = False
    """Also report verify.py's `db_digest` of the final database."""
    observe: bool = False
    """Also report what each call returned (`observed`: {"name", "ok", "content"} per call, each content cut to
    OBSERVE_MAX_CHARS): how a shortcut solver's probe learns what it may pick from."""
    also: list = field(default_factory=list)
    """Other final answers for the same calls: each verdict in `also`, as if each were a script of its own (the
    server verifies them on the same end state where that is the same thing)."""
    turns: list | None = None
    """A multi-turn script: {"calls", "answer"} per user turn (then `calls` and `answer` are not used); each
    turn's tools come from the task."""

    def request(self) -> dict:
        task = self.task if isinstance(self.task, dict) else _task_request(self.task)
        turns = None
        if self.turns is not None:
            tools = task.get("turn_tools") or []
            turns = [
                {
                    "calls": _plain_calls(t.get("calls", [])),
                    "answer": t.get("answer"),
                    **({"tools": tools[i]} if i < len(tools) and tools[i] is not None else {}),
                }
                for i, t in enumerate(self.turns)
            ]
        return {
            "task": {k: task.get(k) for k in ("id", "verifier", "params", "config", "tools") if k in task},
            "calls": _plain_calls(self.calls),
            "answer": self.answer,
            "digest": self.digest,
            "observe": self.observe,
            **({"also": list(self.also)} if self.also else {}),
            **({"turns": turns} if turns is not None else {}),
        }


def _plain_calls(calls) -> list[dict]:
    return [c if isinstance(c, dict) else {"name": c.name, "arguments": c.arguments} for c in calls]


def _task_request(task) -> dict:
    """What the env server needs of a TaskSpec for an episode: its id, verifier and the verifier's arguments
    (with the ground truth a built-in verifier replays), its configuration and the tools of each turn."""
    out = {"id": task.id, "verifier": task.verifier, "params": task.verify_params()}
    if task.config is not None:
        out["config"] = task.config
    # Only a multi-turn task has per-turn tools (admission builds this for every replayed script: no TurnSpec
    # is made for single-turn ones).
    tools = [t.tools for t in task.turns] if task.turns is not None else [None]
    if tools[0] is not None:
        out["tools"] = tools[0]
    if any(t is not None for t in tools):
        out["turn_tools"] = tools
    return out


def episode_start(task) -> dict:
    """The reset request of an episode of `task` (a TaskSpec): id, verifier's name (not its params), configuration,
    the first turn's tools."""
    request = _task_request(task)
    return {k: request[k] for k in ("id", "verifier", "config", "tools") if k in request}


def replay(
    ops: EnvServerOps,
    task,
    calls=(),
    answer: str | None = None,
    *,
    digest: bool = False,
    observe: bool = False,
) -> dict:
    """The one replay path: run `calls` for `task` through an env server (sandboxed or in-process) from a fresh
    state, stop at a submit, verify. Used by admission, the reference builders, rescoring and tests."""
    return ops.replay(task, calls, answer, digest=digest, observe=observe)


class EnvServerOps:
    """The env server's operations, over whatever `request` reaches it."""

    call_timeout_s: float = 10.0
    _verify_source: str | None = None

    def request(self, op: str, timeout_s: float | None = None, **fields) -> dict:
        raise NotImplementedError

    def reset(self, task: dict) -> dict:
        return self.request("reset", timeout_s=60, task=task)

    def call(self, name: str, arguments) -> dict:
        return self.request("call", name=name, arguments=arguments)

    def next_turn(self, answer=None, tools: list | None = None) -> dict:
        """The user's next turn begins (the server closes the current one for verifiers)."""
        return self.request("turn", answer=answer, tools=tools)

    def verify(self, name: str, params: dict, answer) -> dict:
        return self.request(
            "verify", timeout_s=300, name=name, params=params, answer=answer, source=self._verify_source
        )

    def replay(
        self, task, calls=(), answer: str | None = None, *, digest: bool = False, observe: bool = False
    ) -> dict:
        """One scripted episode (see `replay`): {"reward", "reason", "calls_ok"[, "db_digest"][, "observed"]}."""
        return self.replay_many([Script(task, list(calls), answer, digest, observe)])[0]

    def replay_many(self, scripts: list[Script]) -> list[dict]:
        """Several scripted episodes, REPLAY_CHUNK to a request (one round trip each to a sandboxed server)."""
        out = []
        for start in range(0, len(scripts), REPLAY_CHUNK):
            episodes = [s.request() for s in scripts[start : start + REPLAY_CHUNK]]
            timeout = 60 + sum(
                self.call_timeout_s * (len(e["calls"]) + 1) * (1 + len(e.get("also", []))) for e in episodes
            )
            out += self.request("replay", timeout_s=timeout, episodes=episodes, source=self._verify_source)[
                "verdicts"
            ]
        return out

    def state_hash(self) -> str:
        return self.request("hash", timeout_s=60)["hash"]

    def log(self) -> dict:
        return self.request("log")


class LocalEnvServer(EnvServerOps):
    """The same env server in this process, with no sandbox: only for trusted code (validation of generated
    tasks, the in-process baseline of the benchmarks). Tools run with this process's rights."""

    def __init__(self, env_dir: Path, call_timeout_s: float = 10.0, paths: list[str] | None = None) -> None:
        import tempfile
        from concurrent.futures import ThreadPoolExecutor

        from .inside.envserver import EnvServer

        check_env_files(env_dir)
        self.env_dir = env_dir
        self.call_timeout_s = call_timeout_s
        self.scratch = tempfile.mkdtemp(prefix="toolgym-env-")
        # One thread for the server's whole life: its SQLite connections belong to the thread that opened them.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="toolgym-local-env")
        self.server = self._thread.submit(
            EnvServer, str(env_dir), scratch=self.scratch, paths=list(paths or [])
        ).result()

    def request(self, op: str, timeout_s: float | None = None, **fields) -> dict:
        req = json.dumps({"op": op, **fields})
        return json.loads(self._thread.submit(self.server.handle, req).result())

    def close(self) -> None:
        import shutil

        self._thread.submit(self.server.unload).result()
        self._thread.shutdown()
        shutil.rmtree(self.scratch, ignore_errors=True)


class EnvServerHandle(EnvServerOps):
    """An env server for one environment in one sandbox, loaded into a trusted Python session.

    `env_path` is where the env folder is mounted in the sandbox; None pushes its files instead."""

    def __init__(
        self,
        sandbox: Sandbox,
        env_dir: Path,
        env_path: str | None,
        call_timeout_s: float = 10.0,
        paths: list[str] | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.env_dir = env_dir
        self.env_path = env_path
        self.call_timeout_s = call_timeout_s
        self.paths = list(paths or [])
        """Folders of the sandbox the server puts on sys.path (the environment's requirements)."""
        self.session: PythonSession = sandbox.python(trusted=True)
        self._cell(_boot_code() + self._start_code(), timeout_s=120)  # one cell: each costs a round trip

    def _start_code(self) -> str:
        return _mcp_code(self.env_dir) + self._server_code()

    def _server_code(self) -> str:
        verify = self.env_dir / "verify.py"
        self._verify_source = None
        if self.env_path is None and verify.exists():  # optional where tasks use built-in verifiers
            self._verify_source = verify.read_text()
        if self.env_path is not None:
            check_env_files(self.env_dir)
            return (
                "__toolgym_env = envserver.serve(envserver.EnvServer("
                f"{self.env_path!r}, sandboxed=True, paths={self.paths!r}))\n"
            )
        files = json.dumps(pushed_files(self.env_dir))
        return f"__toolgym_env = envserver.serve_pushed(__import__('json').loads({files!r}), paths={self.paths!r})\n"

    def load(
        self,
        env_dir: Path,
        env_path: str | None,
        call_timeout_s: float = 10.0,
        paths: list[str] | None = None,
    ) -> None:
        """Serve another environment from the same session: the previous one's episode is closed and its
        server dropped. Only for sessions whose sandbox ran no agent code (nothing there is untrusted), where it
        saves a new interpreter and the server's imports (~30 ms of the sandbox's CPU)."""
        self.env_dir, self.env_path, self.call_timeout_s = env_dir, env_path, call_timeout_s
        self.paths = list(paths or [])
        self._cell("__toolgym_env.unload()\n" + self._start_code(), timeout_s=120)

    def _cell(self, code: str, timeout_s: float) -> str | None:
        r = self.session.run(code, timeout_s=timeout_s)
        if r.restarted:
            why = r.error.message if r.error is not None else "a tool would not stop"
            raise EnvRuntimeError(f"the env server's Python session was restarted: {why}")
        if r.timed_out:
            raise EnvRuntimeError(f"the env server did not answer within {timeout_s:g} s")
        if r.error is not None:
            raise EnvRuntimeError(
                f"the env server failed: {r.error.type}: {r.error.message}\n{r.error.traceback}"
            )
        return r.result

    def request(self, op: str, timeout_s: float | None = None, **fields) -> dict:
        req = json.dumps({"op": op, **fields})
        # The server enforces the per-call limit itself (SIGALRM); the cell limit is only the backstop.
        result = self._cell(f"__toolgym_env.handle({req!r})", timeout_s or self.call_timeout_s + 10)
        if result is None:
            raise EnvRuntimeError("the env server returned nothing")
        return json.loads(ast.literal_eval(result))

    def close(self) -> None:
        try:
            self.session.close()
        except Exception:  # noqa: BLE001 - the sandbox may already be gone or reset
            pass
