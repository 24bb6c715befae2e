"""MCP servers as toolgym tools: a stdlib-only MCP client (JSON-RPC 2.0 over a server's stdin and stdout, one
message a line) and `McpToolset`, which runs one server process per episode, inside the sandbox.

A Python server is forked from a zygote (toolgym_env.fork_program) that imported, once, what the server had
imported by the end of its handshake when it was imported into toolgym: a server built at import (as SDK servers
usually are) starts in a few milliseconds instead of the second a fresh interpreter spends importing the SDK.

Stdlib only: it runs inside the sandbox (as the top-level module `toolgym_mcp`) and on the host (as
`toolgym.envs.inside.toolgym_mcp`). An imported environment's tools.py is two lines:

    from toolgym_mcp import McpToolset
    SERVER = McpToolset(["python3", "-m", "notes_server"], tools={"add_note": "write", "list_notes": "read"})
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import tempfile
import time

try:  # on the host this file is toolgym.envs.inside.toolgym_mcp; in the sandbox its folder is on sys.path
    from . import toolgym_env
except ImportError:
    import toolgym_env

PROTOCOL_VERSION = "2025-11-25"
"""The revision the client offers in `initialize` (the newest one reached by the handshake; servers that only
speak an older one answer with theirs, which the client accepts)."""
CLIENT_INFO = {"name": "toolgym", "version": "1"}
START_TIMEOUT_S = 60.0
"""A server's start and handshake (a fresh interpreter that imports the MCP Python SDK spends ~1 s of CPU)."""
STDERR_TAIL = 2000
"""The most of a dead server's stderr a tool error quotes."""
_PYTHONS = ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}")
_FLAGS = ("-I", "-S", "-B", "-E", "-s", "-u")


class McpError(Exception):
    """The server answered a request with a JSON-RPC error."""

    def __init__(self, code, message: str, data=None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class ServerGone(Exception):
    """The server exited, closed its output or wrote something that is not JSON-RPC."""


class McpTimeout(Exception):
    """No answer came within the time given."""


def python_program(command: list) -> tuple | None:
    """(flags, kind "m" | "c", target, arguments) of `python [flags] -m MODULE ...` or `python [flags] -c CODE
    ...`, else None (any other program starts as a plain subprocess)."""
    if not command or os.path.basename(command[0]) not in (*_PYTHONS, os.path.basename(sys.executable)):
        return None
    rest = list(command[1:])
    flags = []
    while rest and rest[0] in _FLAGS:
        flags.append(rest.pop(0))
    if len(rest) >= 2 and rest[0] in ("-m", "-c"):
        return tuple(flags), rest[0][1], rest[1], rest[2:]
    return None


def server_environment(extra: dict | None = None) -> dict:
    """The server's environment: PATH, a UTF-8 locale, HOME, and every folder on this process's sys.path as
    PYTHONPATH (the environment's lib/ and its requirements' site folders come first there), plus `extra`."""
    # A pushed lib/ is on this process's path as /proc/self/fd/N (a descriptor only this process holds): the
    # server, another process, gets the folder it names.
    paths = [
        os.path.realpath(p) if p.startswith("/proc/self/fd/") else p
        for p in sys.path
        if p and os.path.isdir(p)
    ]
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME") or tempfile.gettempdir(),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra or {})
    return env


class McpServerProcess:
    """One MCP server process and its JSON-RPC channel. `start()` runs the program (a Python server forked from
    a zygote that preloaded `preload`, where one serves; anything else as a subprocess) in a session of its own,
    and `initialize()` does the handshake; `close()` kills its whole process group."""

    def __init__(
        self, command: list, *, env: dict | None = None, cwd: str | None = None, preload: tuple = ()
    ) -> None:
        self.command = [str(c) for c in command]
        self.env = server_environment(env)
        self.cwd = cwd
        """Where the server runs; None: a folder of its own, made at start and removed at close (so nothing it
        writes there reaches the server of another episode)."""
        self._own_cwd = False
        self.preload = tuple(preload)
        self.pid: int | None = None
        self.forked = False
        """Forked from a zygote (else a fresh subprocess)."""
        self._pidfd: int | None = None
        self._popen = None
        self._stdin: int | None = None
        self._stdout: int | None = None
        self._stderr = None
        self._buffer = b""
        self._next_id = 0
        self.server_info: dict = {}
        self.instructions: str | None = None
        self.protocol_version: str | None = None

    # -- the process ---------------------------------------------------------------------------------------
    def start(self) -> McpServerProcess:
        if self.cwd is None:
            self.cwd, self._own_cwd = tempfile.mkdtemp(prefix="toolgym-mcp-"), True
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        self._stderr = tempfile.TemporaryFile()  # a chatty server must never block on a full pipe
        try:
            program = python_program(self.command)
            got = None
            if program is not None:
                flags, kind, target, args = program
                argv = ["-c" if kind == "c" else "", *args]  # -m: runpy puts the module's file first
                got = toolgym_env.fork_program(
                    flags,
                    self.cwd,
                    [stdin_r, stdout_w, self._stderr.fileno()],
                    kind,
                    target,
                    argv,
                    env=self.env,
                    preload=self.preload,
                )
            if got is not None:
                _, self.pid, self._pidfd = got
                self.forked = True
            else:
                import subprocess

                command = list(self.command)
                if program is not None:
                    command[0] = sys.executable  # the interpreter the sandbox has, whatever the import named
                self._popen = subprocess.Popen(
                    command,
                    stdin=stdin_r,
                    stdout=stdout_w,
                    stderr=self._stderr,
                    cwd=self.cwd,
                    env=self.env,
                    start_new_session=True,
                    close_fds=True,
                )
                self.pid = self._popen.pid
        except OSError as exc:
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            raise ServerGone(f"the MCP server {' '.join(self.command)!r} could not start: {exc}") from None
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        self._stdin, self._stdout = stdin_w, stdout_r
        os.set_blocking(self._stdout, False)
        os.set_blocking(self._stdin, False)
        return self

    def alive(self) -> bool:
        if self.pid is None:
            return False
        if self._popen is not None:
            return self._popen.poll() is None
        return not select.select([self._pidfd], [], [], 0)[0]

    def _ended(self, wait_s: float = 1.0) -> str:
        """How the server's output ended: it exited (with its code, where known) or closed its output."""
        if self._popen is not None:
            try:
                return f"exited with code {self._popen.wait(timeout=wait_s)}"
            except Exception:  # noqa: BLE001 - still running after its output closed
                return "closed its output"
        if self._pidfd is not None and select.select([self._pidfd], [], [], wait_s)[0]:
            return "exited"
        return "closed its output"

    def stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            size = os.fstat(self._stderr.fileno()).st_size
            data = os.pread(self._stderr.fileno(), STDERR_TAIL, max(0, size - STDERR_TAIL))
        except OSError:
            return ""
        return data.decode("utf-8", "replace").strip()

    def _gone(self, why: str) -> ServerGone:
        tail = self.stderr_tail()
        last = tail.splitlines()[-1].strip() if tail else ""
        return ServerGone(f"the MCP server {why}" + (f" (its last words: {last[:300]})" if last else ""))

    def close(self) -> None:
        """Kill the server and everything it started (its process group), and free its pipes."""
        if self.pid is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if self._popen is not None:
                try:
                    self._popen.wait(timeout=5)
                except Exception:  # noqa: BLE001 - unkillable is reported by nobody; the sandbox reset ends it
                    pass
            # A forked one is not waited for: killed, it runs nothing more, and its zygote reaps it.
            self.pid = None
        for fd in (self._stdin, self._stdout, self._pidfd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._stdin = self._stdout = self._pidfd = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._own_cwd:
            import shutil

            shutil.rmtree(self.cwd, ignore_errors=True)
            self._own_cwd = False

    # -- JSON-RPC ------------------------------------------------------------------------------------------
    def _send(self, message: dict, deadline: float) -> None:
        data = (json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        while data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise McpTimeout("the server does not read its input")
            if not select.select([], [self._stdin], [], left)[1]:
                continue
            try:
                data = data[os.write(self._stdin, data) :]
            except BrokenPipeError:
                raise self._gone("closed its input") from None
            except BlockingIOError:
                continue

    def _line(self, deadline: float) -> dict:
        """The next JSON message the server writes."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    raise self._gone(f"wrote a line that is not JSON: {line[:120]!r}") from None
                if isinstance(message, dict):
                    return message
                continue  # a batch or a stray value: nothing a client of one request at a time waits for
            left = deadline - time.monotonic()
            if left <= 0:
                raise McpTimeout("no answer")
            if not select.select([self._stdout], [], [], left)[0]:
                continue
            try:
                chunk = os.read(self._stdout, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                raise self._gone(self._ended())
            self._buffer += chunk

    def notify(self, method: str, params: dict | None = None, timeout_s: float = 5.0) -> None:
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(message, time.monotonic() + timeout_s)

    def send_request(self, method: str, params: dict | None, timeout_s: float = 5.0) -> int:
        """Send one request without waiting for its answer (`reply` reads it); its id."""
        if self._stdin is None:
            raise ServerGone("the MCP server is not running")
        self._next_id += 1
        message = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self._send(message, time.monotonic() + timeout_s)
        return self._next_id

    def reply(self, rid: int, method: str, timeout_s: float) -> dict:
        """The result of request `rid` (a dict); McpError for an error answer, McpTimeout when none came in time
        (the request is then cancelled), ServerGone when the server died. Requests the server makes meanwhile are
        answered (ping) or declined; its notifications (logs, progress) are dropped."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                reply = self._line(deadline)
            except McpTimeout:
                try:
                    self.notify(
                        "notifications/cancelled", {"requestId": rid, "reason": "timed out"}, timeout_s=0.5
                    )
                except (McpTimeout, ServerGone):
                    pass
                raise McpTimeout(f"no answer to {method} within {timeout_s:g} s") from None
            if "method" in reply:
                if "id" in reply:
                    self._answer_server_request(reply, deadline)
                continue
            if reply.get("id") != rid:
                continue  # the late answer of a request that timed out
            if "error" in reply:
                error = (
                    reply["error"] if isinstance(reply["error"], dict) else {"message": str(reply["error"])}
                )
                raise McpError(error.get("code"), str(error.get("message", "")), error.get("data"))
            result = reply.get("result")
            return result if isinstance(result, dict) else {}

    def request(self, method: str, params: dict | None, timeout_s: float) -> dict:
        """Send one request and wait for its result (see `reply`)."""
        started = time.monotonic()
        rid = self.send_request(method, params, timeout_s)
        return self.reply(rid, method, max(0.0, timeout_s - (time.monotonic() - started)))

    def _answer_server_request(self, request: dict, deadline: float) -> None:
        if request["method"] == "ping":
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": {}}
        else:  # sampling, elicitation, roots: a toolgym episode has no user or model to ask
            reply = {
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": {"code": -32601, "message": f"toolgym's client does not serve {request['method']}"},
            }
        self._send(reply, deadline)

    # -- MCP -----------------------------------------------------------------------------------------------
    def initialize(self, timeout_s: float = START_TIMEOUT_S) -> dict:
        """The handshake: `initialize`, then `notifications/initialized`. The server's InitializeResult."""
        self.begin_initialize()
        return self.finish_initialize(timeout_s)

    def begin_initialize(self) -> None:
        """Send `initialize`; the server starts up meanwhile (`finish_initialize` reads its answer)."""
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
        self._initialize_id = self.send_request("initialize", params)

    def finish_initialize(self, timeout_s: float = START_TIMEOUT_S) -> dict:
        result = self.reply(self._initialize_id, "initialize", timeout_s)
        self.protocol_version = result.get("protocolVersion")
        self.server_info = result.get("serverInfo") or {}
        self.instructions = result.get("instructions")
        self.notify("notifications/initialized")
        return result

    def list_tools(self, timeout_s: float = START_TIMEOUT_S) -> list[dict]:
        """Every tool the server lists (following its pages)."""
        tools, cursor = [], None
        while True:
            result = self.request("tools/list", {"cursor": cursor} if cursor else {}, timeout_s)
            tools += [t for t in result.get("tools") or [] if isinstance(t, dict)]
            cursor = result.get("nextCursor")
            if not cursor:
                return tools

    def call_tool(self, name: str, arguments: dict, timeout_s: float) -> dict:
        """The server's CallToolResult for one call ({"content": [...], "structuredContent"?, "isError"?})."""
        return self.request("tools/call", {"name": name, "arguments": arguments}, timeout_s)


def _block_text(block) -> str:
    """One content block as text for the model (binary blocks are described, not inlined)."""
    if not isinstance(block, dict):
        return json.dumps(block, ensure_ascii=False)
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind in ("image", "audio"):
        return f"[{kind} {block.get('mimeType', '')}, {len(block.get('data') or '')} base64 characters]"
    if kind == "resource":
        resource = block.get("resource") or {}
        if "text" in resource:
            return str(resource["text"])
        return f"[resource {resource.get('uri', '')} ({resource.get('mimeType', '')}), binary]"
    if kind == "resource_link":
        return f"[resource {block.get('uri', '')}: {block.get('name', '')}]"
    return json.dumps(block, ensure_ascii=False, sort_keys=True)


def result_value(result: dict):
    """A CallToolResult as a tool's result: its content blocks as text (one line between blocks), or, where it
    has no block, its structured content as JSON data."""
    blocks = result.get("content") or []
    if not blocks and result.get("structuredContent") is not None:
        return result["structuredContent"]
    return "\n".join(_block_text(b) for b in blocks)


def result_data(result: dict):
    """A CallToolResult as data (what a snapshot compares): its structured content, else its text read as JSON
    where it is JSON, else the text."""
    if result.get("structuredContent") is not None:
        return result["structuredContent"]
    text = result_value(result)
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


class McpToolset(toolgym_env.Toolset):
    """An MCP server's tools: one server process per episode, killed at the episode's end, so nothing of one
    episode's state reaches another.

    `command`: the server's program (`["python3", "-m", "notes_server"]`; a Python program runs on the sandbox's
    interpreter, forked from a zygote that loaded `preload` first where one serves). `tools`: the tool list
    recorded at import, {name: "read" | "write"} ("read" only where the server's annotations say readOnlyHint).
    `state_tool`: a read-only tool whose result is the server's state (called with `state_arguments`): the
    toolset's snapshot, which verifiers compare at a turn's end; None (the default) leaves the snapshot None.
    `names`: {toolgym name: MCP name} for tools whose MCP names are not function names (`get-time`).
    `env`: extra environment variables of the server.

    Each server runs in a working folder of its own (new, empty, removed with it); `in_state_dir=True` runs it in
    the episode's copy of state/ instead, for a server that works on seed files. `spare=True` (the default, not
    with `in_state_dir`) keeps the next episode's server started and initialized beforehand, so an episode does
    not wait for its server's start: a spare has answered `initialize` and nothing else, the state a server has
    when it is started at the episode's start. (The spare is the toolset's, not an episode's: it belongs to no
    Context until an episode takes it.)"""

    def __init__(
        self,
        command: list,
        tools: dict,
        *,
        key: str = "mcp",
        names: dict | None = None,
        preload: tuple = (),
        state_tool: str | None = None,
        state_arguments: dict | None = None,
        env: dict | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        in_state_dir: bool = False,
        spare: bool = True,
    ) -> None:
        if state_tool is not None and state_tool not in tools:
            raise ValueError(
                f"the state tool {state_tool!r} is not among the server's tools ({', '.join(tools)})"
            )
        self.command = list(command)
        self.key = key
        self._tools = {name: {"access": access, "submit": False} for name, access in tools.items()}
        self.names = {name: (names or {}).get(name, name) for name in tools}
        self.preload = tuple(preload)
        self.state_tool = state_tool
        self.state_arguments = dict(state_arguments or {})
        self.env = dict(env or {})
        self.start_timeout_s = start_timeout_s
        self.in_state_dir = in_state_dir
        self.spare = spare and not in_state_dir
        self._spares: list = []  # at most one, started for the next episode
        import weakref

        weakref.finalize(self, _close_all, self._spares)

    def tools(self) -> dict:
        return {name: dict(meta) for name, meta in self._tools.items()}

    def _spawn(self, cwd: str | None) -> McpServerProcess:
        server = McpServerProcess(self.command, env=self.env, cwd=cwd, preload=self.preload).start()
        server.begin_initialize()
        return server

    def _taken_spare(self) -> McpServerProcess | None:
        """The spare, handed over, where it is still alive and usable (in this process: a fork copies it)."""
        while self._spares:
            server, owner = self._spares.pop()
            if owner == os.getpid() and server.alive():
                return server
            server.close()
        return None

    def start(self, ctx) -> None:
        episode = ctx.objects[self.key] = {"server": None, "error": None}
        server = self._taken_spare() if self.spare else None
        try:
            if server is None:
                if self.in_state_dir:
                    os.makedirs(ctx.state_dir, exist_ok=True)
                server = self._spawn(ctx.state_dir if self.in_state_dir else None)
            episode["server"] = server
            ctx.on_close(server.close)  # registered first: even a start cut short leaves no process behind
            server.finish_initialize(self.start_timeout_s)
        except (ServerGone, McpTimeout, McpError) as exc:
            episode["error"] = f"the MCP server did not start: {exc}"
            if server is not None:
                server.close()
        if self.spare:
            try:
                self._spares.append((self._spawn(None), os.getpid()))
            except (ServerGone, McpTimeout):
                pass  # the next episode starts its own

    def _server(self, ctx) -> McpServerProcess:
        if self.key not in ctx.objects:
            self.start(ctx)
        episode = ctx.objects[self.key]
        if episode["error"]:
            raise toolgym_env.ToolError(episode["error"])
        return episode["server"]

    def _timeout(self, ctx) -> float:
        """Below the env server's own limit, so a slow server is this call's tool error, not a killed call."""
        limit = float(getattr(ctx, "call_timeout_s", 10.0))
        return max(0.05, min(limit * 0.9, limit - 0.25))

    def call(self, ctx, name: str, arguments: dict):
        server = self._server(ctx)
        timeout = self._timeout(ctx)
        try:
            result = server.call_tool(self.names[name], arguments, timeout)
        except McpTimeout:
            raise toolgym_env.ToolError(
                f"{name} did not finish within {timeout:g} s; try a narrower request."
            ) from None
        except McpError as exc:
            raise toolgym_env.ToolError(f"{name} was refused: {exc.message}") from None
        except ServerGone as exc:
            # The server's state is lost with it: every later call of the episode fails the same way.
            ctx.objects[self.key]["error"] = f"{exc}; its state is lost for this episode"
            server.close()
            raise toolgym_env.ToolError(str(exc)) from None
        value = result_value(result)
        if result.get("isError"):
            raise toolgym_env.ToolError(value if isinstance(value, str) else json.dumps(value))
        return value

    def snapshot(self, ctx):
        if self.state_tool is None:
            return None
        try:
            server = self._server(ctx)
            result = server.call_tool(
                self.names[self.state_tool], dict(self.state_arguments), self._timeout(ctx)
            )
        except (toolgym_env.ToolError, McpTimeout, McpError, ServerGone) as exc:
            return {"error": str(exc)}  # never equal to a working server's state
        if result.get("isError"):
            return {"error": result_value(result)}
        return result_data(result)


def _close_all(spares: list) -> None:
    while spares:
        spares.pop()[0].close()
