"""The env server: loads one environment inside the sandbox and runs its tools and verifiers for an episode.

Stdlib only. The host loads it into a trusted Python session and talks to it through `handle(request_json)`;
every bad call (unknown tool, bad JSON, wrong or missing arguments, a tool that raises, a huge result) comes
back as a tool error written for the model, never as a crash.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import site
import sqlite3
import stat
import sys
import threading
import traceback
import types

try:  # on the host this file is toolgym.envs.inside.envserver; in the sandbox its folder is on sys.path
    from . import toolgym_env
except ImportError:
    import toolgym_env

sys.modules.setdefault("toolgym_env", toolgym_env)
if (
    __package__
):  # on the host: what an imported MCP environment's tools.py imports (the runtime defines it in a
    from . import toolgym_mcp  # sandbox where an environment needs it)

    sys.modules.setdefault("toolgym_mcp", toolgym_mcp)
Context, ToolError, Toolset = toolgym_env.Context, toolgym_env.ToolError, toolgym_env.Toolset
BUILTIN_PREFIX = "toolgym:"

FILE_CATEGORIES = ("code", "code_interpreter")  # the agent works on files: state goes to /workspace
OBSERVE_MAX_CHARS = 20000
READ_CACHE_MAX = 50_000
"""Cached read replies a server keeps for admission's replays at most (then it starts again)."""
"""The most of one call's result an observing replay sends back (a probe needs the rows, not a whole file)."""
_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _kind(value) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _type_ok(value, t: str) -> bool:
    if t == "string":
        return isinstance(value, str)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    if t == "null":
        return value is None
    return True


def check_value(schema: dict, value, where: str) -> str | None:
    """The first way `value` breaks `schema` (types, enums, items, nested objects), or None. Small on purpose:
    the subset of JSON Schema that tool signatures produce."""
    if "anyOf" in schema:
        errors = [check_value(s, value, where) for s in schema["anyOf"]]
        return None if any(e is None for e in errors) else errors[0]
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else list(types)
        if not any(_type_ok(value, t) for t in types):
            want = " or ".join(
                {"null": "null"}.get(t, ("an " if t[0] in "aeiou" else "a ") + t) for t in types
            )
            return f"{where} must be {want}, got {json.dumps(value)[:60]} ({_kind(value)})"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} must be one of {', '.join(json.dumps(v) for v in schema['enum'])}, got {json.dumps(value)[:60]}"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            err = check_value(schema["items"], item, f"{where}[{i}]")
            if err:
                return err
    if isinstance(value, dict) and schema.get("type") == "object":
        return check_object(schema, value, where)
    return None


def check_object(schema: dict, value: dict, where: str) -> str | None:
    props = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            return f"{where} is missing the required argument '{name}'"
    extra = schema.get("additionalProperties", True if "properties" not in schema else False)
    for name, v in value.items():
        if name in props:
            err = check_value(props[name], v, f"argument '{name}'")
            if err:
                return err
        elif extra is False:
            allowed = ", ".join(props) or "none"
            return f"{where} got an unexpected argument '{name}' (allowed: {allowed})"
        elif isinstance(extra, dict):
            err = check_value(extra, v, f"argument '{name}'")
            if err:
                return err
    return None


def validate_arguments(tool_name: str, parameters: dict, arguments) -> str | None:
    """A sentence for the model when `arguments` do not fit the tool's parameter schema, else None."""
    if not isinstance(arguments, dict):
        return f"the arguments of {tool_name} must be a JSON object, got {_kind(arguments)}"
    return check_object({**parameters, "type": "object"}, arguments, f"the call to {tool_name}")


def load_module(name: str, path: str):
    """Import a file as a fresh module (tools.py, verify.py), not cached in sys.modules."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def state_hash(state_dir: str) -> str:
    """sha256 of a canonical dump of a state folder: SQLite databases by their SQL dump, other files by bytes."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(state_dir):
        dirs.sort()
        dirs[:] = [d for d in dirs if d not in ("__pycache__", ".pytest_cache")]
        for name in sorted(files):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, state_dir)
            if name.endswith(("-journal", "-wal", "-shm", ".pyc")):
                continue
            h.update(rel.encode() + b"\0")
            if name.endswith((".sqlite", ".db")):
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    for line in conn.iterdump():
                        h.update(line.encode() + b"\n")
                finally:
                    conn.close()
            else:
                with open(path, "rb") as f:
                    h.update(f.read())
            h.update(b"\0")
    return h.hexdigest()


class _CallTimeout(BaseException):
    """Raised in a tool that runs past its time (BaseException so a tool's `except Exception` cannot eat it)."""


def _run_with_timeout(fn, timeout_s: float):
    """Run fn() with a SIGALRM deadline where we can (the main thread); elsewhere without one."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return fn()

    def on_alarm(signum, frame):
        raise _CallTimeout

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value (send a number or a string)")


def _finite(value, depth: int = 0) -> bool:
    """No NaN or Infinity anywhere in `value`, and nested at most 100 deep."""
    if depth > 100:
        return False
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return all(_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v, depth + 1) for v in value)
    return True


def module_from_source(name: str, source: str, filename: str):
    """A fresh module from source text (tools.py or verify.py pushed by the host)."""
    module = types.ModuleType(name)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


class EnvServer:
    """One environment; `reset(task)` starts an episode on a fresh copy of its state/.

    Two ways in: `EnvServer(env_dir)` reads a folder (the env store mounted read-only), or
    `EnvServer(files={relpath: bytes})` takes the files the host pushed (env.json, tools.py, state/...), kept in
    this process's memory so agent code cannot change the seed state of later episodes. Pushed, verify.py
    arrives only at verification time (`verify(..., source=...)`), so agent code never sees it before."""

    def __init__(
        self,
        env_dir: str | None = None,
        scratch: str | None = None,
        files: dict | None = None,
        sandboxed: bool = False,
        paths: list | None = None,
    ) -> None:
        self.env_dir = env_dir
        self.files = files
        self._paths = self._import_paths(paths or [])
        """Folders put first on sys.path for this environment (its lib/, its requirements' site folders)."""
        if files is not None:
            self.spec = json.loads(files["env.json"])
            self.tools_module = module_from_source("tools", files["tools.py"].decode(), "tools.py")
        else:
            with open(os.path.join(env_dir, "env.json"), encoding="utf-8") as f:
                self.spec = json.load(f)
            self.tools_module = load_module("tools", os.path.join(env_dir, "tools.py"))
        limits = self.spec.get("limits", {})
        self.call_timeout_s = float(limits.get("call_timeout_s", 10.0))
        self.max_result_chars = int(limits.get("max_result_chars", 20000))
        self.verify_module = None
        self._verify_digest: str | None = None
        self.schemas = {t["function"]["name"]: t["function"] for t in self.spec.get("tools", [])}
        self.toolsets = toolsets_of(self.tools_module)
        given = {name: fn for ts in self.toolsets for name, fn in _toolset_functions(ts).items()}
        self.functions = {
            name: given.get(name) or getattr(self.tools_module, name, None) for name in self.schemas
        }
        self.check_arguments = {
            t["function"]["name"]: t.get("check_arguments", True) is not False
            for t in self.spec.get("tools", [])
        }
        self.allowed: set | None = None
        """The tools of the current user turn (None: all of them)."""
        self._turn_db = False
        category = self.category = self.spec.get("category", "general")
        self.sandboxed = sandboxed
        """In a sandbox (never in-process on the host): verification first stops every process of the agent."""
        self.scratch = scratch or ("/workspace" if category in FILE_CATEGORIES else "/tmp/env-state")
        self.ctx: Context | None = None
        self.calls: list[dict] = []
        self._wrote = False
        """Whether this episode called a tool that is not a plain read (a write, a submit, an unknown one)."""
        self._state: tuple | None = None
        """state/'s (files, folders, folder set), read on the first reset."""
        self._tree: dict | None = None
        """The scratch folder as scanned right after the last reset: what the next reset may keep."""
        self._agent_ran = False
        """Whether a tool ran since the agent's processes were last stopped (a file category's tools run its code)."""
        """The scratch folder's files (name, size, mtime) right after a full reset, where state is a database."""
        self._read_cache: dict | None = None
        """While replaying: [task id,] tool, arguments -> the reply of a read on untouched state."""
        self._replay_reads: dict = {}
        """The read cache of every replay request (the state they start from never changes)."""

    # -- imports ---------------------------------------------------------------------------------------
    def _import_paths(self, paths: list) -> list:
        """lib/ (the store's folder, or the pushed files written once where agent code cannot change them) and
        `paths` (site folders of the environment's requirements), put first on sys.path."""
        lib = None
        if self.files is not None:
            pushed = {k[len("lib/") :]: v for k, v in self.files.items() if k.startswith("lib/")}
            lib = _write_lib(pushed) if pushed else None
        elif self.env_dir is not None and os.path.isdir(os.path.join(self.env_dir, "lib")):
            lib = os.path.join(self.env_dir, "lib")
        out = ([lib] if lib else []) + [str(p) for p in paths]
        before = list(sys.path)
        for path in paths:
            # A site folder (pip's --target) may hold .pth files: addsitedir reads them, sys.path.insert would not.
            site.addsitedir(str(path))
        if lib and lib not in sys.path:
            sys.path.insert(0, lib)
        out += [p for p in sys.path if p not in before and p not in out]  # what the .pth files added
        return out

    def unload(self) -> None:
        """Take this environment's folders off sys.path and forget the modules imported from them, so another
        environment served by the same process imports its own modules of the same names."""
        self.close()
        for toolset in self.toolsets:
            getattr(toolset, "unload", lambda: None)()
        roots = tuple(os.path.join(p, "") for p in self._paths)
        for name, module in list(sys.modules.items()):
            where = getattr(module, "__file__", None) or ""
            if roots and where.startswith(roots):
                del sys.modules[name]
        sys.path[:] = [p for p in sys.path if p not in self._paths]
        for path in self._paths:
            if path.startswith("/proc/self/fd/"):  # a pushed lib/, held open (see _write_lib)
                try:
                    os.close(int(path.rsplit("/", 1)[1]))
                except (OSError, ValueError):
                    pass
        self._paths = []

    # -- episode ---------------------------------------------------------------------------------------
    def _state_files(self) -> tuple[dict, list, set]:
        """state/'s files (relative path -> bytes) and folders (sorted, and as a set), read once: every reset
        writes these bytes, so nothing an episode does to the store (or a later edit of it) reaches another
        episode."""
        if self._state is None:
            files, dirs = {}, set()
            if self.files is not None:
                for rel, data in sorted(self.files.items()):
                    if rel.startswith("state/"):
                        files[rel[len("state/") :]] = data
            else:
                state = os.path.join(self.env_dir, "state")
                for root, subdirs, names in os.walk(state):
                    rel_root = os.path.relpath(root, state)
                    for name in subdirs:
                        dirs.add(os.path.normpath(os.path.join(rel_root, name)))
                    for name in sorted(names):
                        with open(os.path.join(root, name), "rb") as f:
                            files[os.path.normpath(os.path.join(rel_root, name))] = f.read()
            for rel in files:
                parent = os.path.dirname(rel)
                while parent:
                    dirs.add(parent)
                    parent = os.path.dirname(parent)
            self._state = (files, sorted(dirs), dirs)
        return self._state

    def _scan(self) -> dict:
        """Every entry under the scratch folder (relative path -> what lstat says of it): mode, inode, size,
        owner, links and both change times. Writing, truncating, chmod, chown, xattrs, links and renames all move
        the ctime, which no one can set back, so an entry that scans the same holds the same bytes."""
        out = {}
        stack = [""]
        while stack:
            rel_dir = stack.pop()
            with os.scandir(os.path.join(self.scratch, rel_dir)) as it:
                for entry in it:
                    rel = os.path.join(rel_dir, entry.name) if rel_dir else entry.name
                    st = entry.stat(follow_symlinks=False)
                    out[rel] = (
                        st.st_mode,
                        st.st_ino,
                        st.st_size,
                        st.st_uid,
                        st.st_gid,
                        st.st_nlink,
                        st.st_mtime_ns,
                        st.st_ctime_ns,
                    )
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(rel)
        return out

    def _restore_state(self) -> None:
        """Make the scratch folder hold exactly state/ again, rewriting only what the last episode changed
        (admission replays thousands of episodes that change one file or none: copying all of state/ was most of
        a reset's cost). An entry scanned as it was right after the last restore is kept; any other entry is
        removed (a changed folder with everything under it), then state/ is written again where missing."""
        files, dirs, dir_set = self._state_files()
        os.makedirs(self.scratch, exist_ok=True)
        before = self._tree or {}
        now = self._scan()
        gone: list[str] = []
        for rel in sorted(now):
            if any(rel.startswith(g + os.sep) for g in gone):
                continue
            if before.get(rel) == now[rel] and (rel in files or rel in dir_set):
                continue
            path = os.path.join(self.scratch, rel)
            if stat.S_ISDIR(now[rel][0]):
                shutil.rmtree(path)
            else:
                os.remove(path)
            gone.append(rel)
        for rel in dirs:
            path = os.path.join(self.scratch, rel)
            if not os.path.isdir(path):
                os.mkdir(path)
                if self.files is None:  # the store is read-only; the copy must not be
                    os.chmod(path, 0o755)
        for rel, data in files.items():
            path = os.path.join(self.scratch, rel)
            if not os.path.lexists(path):
                with open(path, "wb") as f:
                    f.write(data)
                if self.files is None:
                    os.chmod(path, 0o644)
        self._tree = self._scan()

    def reset(self, task: dict) -> dict:
        """The scratch folder back to state/ (only what changed is rewritten), a new call log, the task's fixed
        clock and ids."""
        if self.ctx is not None:
            self.ctx.close()
        if self.sandboxed and self.category in FILE_CATEGORIES and self._agent_ran:
            # Nothing of the agent's may live on to write into the files kept for the next episode.
            survivors = stop_agent_processes()
            if survivors:
                raise RuntimeError(f"{survivors} of the agent's processes could not be stopped")
        self._agent_ran = False
        self._restore_state()
        return self._new_episode(task)

    def _new_episode(self, task: dict) -> dict:
        self.ctx = Context(self.scratch, str(task.get("id", "")), call_timeout_s=self.call_timeout_s)
        self.ctx.config = task.get("config")
        # The database's digest at every turn's end only where the built-in verifier will compare it: a verify.py
        # verifier reads the final state itself, and admission verifies thousands of single-turn episodes.
        self._turn_db = str(task.get("verifier") or "").startswith(BUILTIN_PREFIX)
        self.calls = []
        self._wrote = False
        tools = task.get("tools")
        self.allowed = set(tools) if tools is not None else None
        for toolset in self.toolsets:
            toolset.start(self.ctx)
        return {"ok": True, "scratch": self.scratch}

    # -- turns -----------------------------------------------------------------------------------------
    def next_turn(self, answer=None, tools: list | None = None) -> dict:
        """The user's next turn begins: the current one ends (its calls, the agent's final text and the state
        are kept for verifiers in `ctx.turns`) and `tools` (None: all) are the ones the agent may call now."""
        if self.ctx is None:
            self.reset({"id": ""})
        self._close_turn(answer)
        self.ctx.turn += 1
        self.allowed = set(tools) if tools is not None else None
        return {"ok": True, "turn": self.ctx.turn}

    def _close_turn(self, answer=None, final: bool = False) -> None:
        ctx = self.ctx
        if ctx.turns and ctx.turns[-1]["index"] == ctx.turn:
            return  # closed already (a second verification of the same end)
        if self.sandboxed and self.category in FILE_CATEGORIES and self._agent_ran:
            stop_agent_processes()  # the state of a turn's end is what nothing of the agent's can change any more
            self._agent_ran = False
        calls = [dict(c) for c in self.calls if c.get("turn") == ctx.turn]
        ctx.turns.append(_Turn(index=ctx.turn, answer=answer, calls=calls, snapshot=self._snapshot))
        if final is False:
            ctx.turns[-1]["state"]  # a turn that ends before the episode does: its state now, while it is so

    def _snapshot(self) -> dict:
        """The state verifiers compare at a turn's end: every toolset's snapshot, or (an environment of @tool
        functions over a database, judged by the built-in verifier) the database's digest."""
        if self.toolsets:
            try:
                return {ts.key: ts.snapshot(self.ctx) for ts in self.toolsets}
            except Exception as exc:  # noqa: BLE001 - the turn cannot be judged on its state: it fails, with why
                return toolgym_env.Unjudgeable(f"the snapshot raised {type(exc).__name__}: {exc}")
        if self._turn_db and self.category not in FILE_CATEGORIES:
            if os.path.exists(os.path.join(self.scratch, "db.sqlite")):
                return {"db": toolgym_env.state_digest(self.ctx.db)}
        return {}

    def _untouched(self) -> bool:
        """Whether the last episode left the state exactly as the reset wrote it: no row changed through its
        database, and every file scans as the reset left it (the same strength as a reset's own check). Then
        the next replay may reuse the copy (admission replays thousands of read-only scripts, and a submit
        ends most of them). Never in a file category, where the agent's processes may still run."""
        if self.category in FILE_CATEGORIES or self.ctx is None or self._tree is None or self.ctx.changes():
            return False
        return self._scan() == self._tree

    def call(self, name: str, arguments) -> dict:
        """Run one tool call. `arguments` is the JSON string the model wrote (or a dict). Always returns
        {"ok", "content", "submitted"}; on a bad call `content` is an error message for the model."""
        if self.ctx is None:
            self.reset({"id": ""})
        entry = {"name": name, "arguments": arguments, "ok": False}
        self.calls.append(entry)
        self._agent_ran = True
        result = self._call(name, arguments, entry)
        entry["ok"] = result["ok"]
        entry["digest"] = _digest(result["content"])
        entry["result"] = result["content"]
        entry["turn"] = self.ctx.turn
        if not result["ok"]:
            entry["error"] = result["content"]
            entry["error_kind"] = result["error_kind"]
        result["submitted"] = bool(self.ctx.submitted) and result["ok"] and entry.get("submit", False)
        entry.pop("submit", None)
        if result["submitted"]:
            result["answer"] = self.ctx.answer
        return result

    def _error(self, message: str, kind: str = "tool_error") -> dict:
        """A failed call: the sentence for the model, and its kind (unknown_tool, invalid_arguments, tool_error)."""
        return {"ok": False, "content": "Error: " + message, "error_kind": kind}

    def _call(self, name: str, arguments, entry: dict) -> dict:
        if name not in self.schemas or self.functions.get(name) is None:
            known = ", ".join(
                sorted(self.schemas if self.allowed is None else self.allowed & set(self.schemas))
            )
            return self._error(f"there is no tool named {name!r}; the tools are: {known}.", "unknown_tool")
        if self.allowed is not None and name not in self.allowed:
            known = ", ".join(sorted(self.allowed & set(self.schemas))) or "none"
            return self._error(
                f"{name} is not available in this turn; the tools now are: {known}.", "unknown_tool"
            )
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments, parse_constant=_no_constant) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                return self._error(
                    f"the arguments of {name} are not valid JSON ({exc.msg} at position {exc.pos}); "
                    'send one JSON object, e.g. {"city": "Paris"}.',
                    "invalid_arguments",
                )
            except (ValueError, RecursionError) as exc:
                why = "they are nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                return self._error(f"the arguments of {name} are not valid: {why}.", "invalid_arguments")
        if not _finite(arguments):  # also what JSON text holds: 1e400 reads as infinity
            return self._error(
                f"the arguments of {name} are not valid: NaN and Infinity are not JSON values, "
                "or they are nested too deeply.",
                "invalid_arguments",
            )
        entry["arguments"] = arguments
        if self.check_arguments.get(name, True):
            problem = validate_arguments(name, self.schemas[name].get("parameters", {}), arguments)
        else:  # the tool's own code takes what the model wrote; only the shape of a call is checked
            problem = validate_arguments(name, {"type": "object"}, arguments)
        if problem:
            return self._error(problem.rstrip(".") + ".", "invalid_arguments")
        fn = self.functions[name]
        meta = getattr(fn, "__toolgym_tool__", {})
        entry["submit"] = meta.get("submit", False)
        plain_read = meta.get("access") == "read" and not entry["submit"]
        if not plain_read:
            self._wrote = True
        key = None
        if plain_read and not self._wrote and self._read_cache is not None:
            # A read that used nothing of its task (no id, seed, clock or random number) answered the same for
            # every task: it is kept under (tool, arguments); any other under (task, tool, arguments). A tool
            # takes the same path on the same state and arguments until it reads something of its task, so
            # one that never did would not now either.
            key = (name, json.dumps(arguments, sort_keys=True, default=str))
            mine = (self.ctx._task_id, *key)
            for k in (key, mine):
                if k in self._read_cache:
                    return dict(self._read_cache[k])
            ids, rng, changes = self.ctx._ids, self.ctx._rng.getstate(), self.ctx.changes()
            personal = self.ctx._personal
        result = self._run_tool(name, fn, arguments)
        # Cache a read only where it changed no row and left the episode's ids and random numbers as they were:
        # a replay of the cached reply is then the same episode.
        unchanged = key is not None and self.ctx.changes() == changes
        if unchanged and self.ctx._ids == ids and self.ctx._rng.getstate() == rng:
            if len(self._read_cache) > READ_CACHE_MAX:
                self._read_cache.clear()
            self._read_cache[key if self.ctx._personal == personal else mine] = dict(result)
        return result

    def _run_tool(self, name: str, fn, arguments: dict) -> dict:
        try:
            value = _run_with_timeout(lambda: fn(self.ctx, **arguments), self.call_timeout_s)
        except _CallTimeout:
            return self._error(
                f"{name} did not finish within {self.call_timeout_s:g} s; try a narrower request."
            )
        except ToolError as exc:
            return self._error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a tool's bug is the model's tool error, never a crash
            where = traceback.extract_tb(exc.__traceback__)[-1]
            # The file of the frame that raised: tools.py, or a module of lib/ (a toolset's class)
            file = os.path.basename(where.filename) if where.filename.endswith(".py") else "tools.py"
            return self._error(
                f"{name} failed with {type(exc).__name__}: {exc} (line {where.lineno} of {file})."
            )
        content = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        if len(content) > self.max_result_chars:
            return self._error(
                f"the result of {name} is {len(content)} characters, over the limit of {self.max_result_chars}; "
                "ask for less (narrow the query or use a more specific tool)."
            )
        return {"ok": True, "content": content}

    def _load_verify(self, source: str | None):
        if source is not None:
            # The host sends the source with every verification; compile it once per distinct source.
            if self._verify_digest != _digest(source):
                self.verify_module = module_from_source("verify", source, "verify.py")
                self._verify_digest = _digest(source)
        elif self.verify_module is None and self.env_dir is not None:
            path = os.path.join(self.env_dir, "verify.py")
            if os.path.exists(path):
                self.verify_module = load_module("verify", path)
        return self.verify_module

    def verify(self, name: str, params: dict | None = None, answer=None, source: str | None = None) -> dict:
        """Run verify.py's `name` (or a built-in, `toolgym:...`) on (final state, answer, call log): {"reward" in
        [0, 1], "reason"}, and "turns" ({"reward", "reason"} per user turn) where the verifier judges turns.

        The verifier sees `ctx.turns` (every turn's calls, final text and end state) and each call's full
        `result`, so it can judge a multi-turn episode turn by turn."""
        if name.startswith(BUILTIN_PREFIX):
            fn = BUILTIN_VERIFIERS.get(name[len(BUILTIN_PREFIX) :])
            if fn is None:
                known = ", ".join(BUILTIN_PREFIX + k for k in BUILTIN_VERIFIERS)
                return {
                    "reward": 0.0,
                    "reason": f"there is no built-in verifier {name!r} (there are: {known})",
                }
            fn = fn.__get__(self)
        else:
            module = self._load_verify(source)
            fn = getattr(module, name, None) if module else None
            if fn is None:
                return {"reward": 0.0, "reason": f"verify.py has no verifier named {name!r}"}
        if self.ctx is None:
            self.reset({"id": ""})
        if self.sandboxed and self.category in FILE_CATEGORIES:
            survivors = stop_agent_processes()
            if survivors:
                return {"reward": 0.0, "reason": f"{survivors} of the agent's processes could not be stopped"}
            self._agent_ran = False
        try:
            self._close_turn(
                answer, final=True
            )  # its state is the final state: taken when a verifier reads it
            out = fn(self.ctx, answer, [dict(c) for c in self.calls], **(params or {}))
        except Exception as exc:  # noqa: BLE001 - a verifier crash scores 0 with the reason
            return {"reward": 0.0, "reason": f"the verifier raised {type(exc).__name__}: {exc}"}
        turns = None
        if isinstance(out, dict):
            out, turns = (out.get("reward", 0.0), out.get("reason", "")), out.get("turns")
        reward, reason = out if isinstance(out, tuple) else (out, "")
        reward = max(0.0, min(1.0, float(reward)))
        verdict = {"reward": reward, "reason": str(reason or ("passed" if reward == 1.0 else "failed"))}
        if turns is not None:
            verdict["turns"] = [
                {
                    "reward": max(0.0, min(1.0, float(t.get("reward", 0.0)))),
                    "reason": str(t.get("reason", "")),
                }
                for t in turns
            ]
        return verdict

    # -- the built-in verifier: the episode against its ground truth, turn by turn ---------------------
    def _ground_truth(
        self,
        ctx,
        answer,
        calls,
        turns: list,
        check_state: bool = True,
        check_results: bool = True,
        irrelevance: bool = True,
    ):
        """`toolgym:ground_truth`: replays the reference calls of each turn on a fresh state and compares, after
        every turn, what a multi-turn benchmark's checker compares. A turn passes when
        - it needed calls (its reference has some) and the agent made at least one,
        - the state at its end equals the reference's (every toolset's snapshot, or the database digest),
        - every result the reference's calls of the turn got is among the results of the agent's calls so far
          (as a multiset: order free, since independent calls may come in any order);
        a turn whose reference makes no call (a request the tools cannot serve) passes only with no call.
        The task passes when every turn passes."""
        truth = self._replay_truth(turns)
        done = {t["index"]: t for t in ctx.turns}
        verdicts, results_so_far = [], []
        for i, (expected, reference) in enumerate(zip(turns, truth, strict=True)):
            mine = done.get(i)
            if mine is None:
                verdicts.append({"reward": 0.0, "reason": f"turn {i + 1}: the episode ended before it"})
                continue
            results_so_far += [c.get("result", "") for c in mine["calls"]]
            verdicts.append(
                _judge_turn(
                    i, expected, reference, mine, results_so_far, check_state, check_results, irrelevance
                )
            )
        failed = [v for v in verdicts if v["reward"] < 1.0]
        reason = failed[0]["reason"] if failed else f"all {len(verdicts)} turns match the ground truth"
        return {"reward": 0.0 if failed else 1.0, "reason": reason, "turns": verdicts}

    def _replay_truth(self, turns: list) -> list:
        """Each turn's reference calls run in order on a fresh copy of state/ with a fresh Context (the same task
        id and configuration): every turn's results and end state. The episode's own state is untouched."""
        import tempfile

        saved = {name: getattr(self, name) for name in _EPISODE_FIELDS}
        scratch = tempfile.mkdtemp(prefix="toolgym-truth-")
        files, dirs, _ = self._state_files()
        for rel in dirs:
            os.makedirs(os.path.join(scratch, rel), exist_ok=True)
        for rel, data in files.items():
            with open(os.path.join(scratch, rel), "wb") as f:
                f.write(data)
        episode = saved["ctx"]
        self.scratch = scratch
        self.ctx = Context(scratch, episode._task_id, call_timeout_s=self.call_timeout_s)
        self.ctx.config = episode.config
        self.calls, self._wrote, self._read_cache, self.allowed = [], False, None, None
        out = []
        try:
            for toolset in self.toolsets:
                toolset.start(self.ctx)
            for i, reference in enumerate(turns):
                self.ctx.turn = i
                results = [self.call(c["name"], c.get("arguments", {}))["content"] for c in reference]
                out.append({"results": results, "state": self._snapshot()})
        finally:
            self.ctx.close()
            if self.sandboxed and self.category in FILE_CATEGORIES:
                stop_agent_processes()
            shutil.rmtree(scratch, ignore_errors=True)
            for name, value in saved.items():
                setattr(self, name, value)
        return out

    def replay(
        self,
        task: dict,
        calls: list,
        answer=None,
        source: str | None = None,
        digest: bool = False,
        observe: bool = False,
        also: list | None = None,
        turns: list | None = None,
    ) -> dict:
        """One whole episode from a fixed script: reset to the task, run `calls` ({"name", "arguments"} each) in
        order until one submits (its answer then replaces `answer`), and verify with the task's verifier.
        `turns` (a multi-turn script: {"calls", "answer"[, "tools"]} per user turn) replaces `calls` and `answer`:
        each turn's calls run, then the next turn begins, as when the agent answers and the user speaks again.
        `digest=True` adds verify.py's `db_digest` of the final database (how a producer learns the state a
        state-checking task expects); `observe=True` adds what every call returned (`observed`, each content
        cut to OBSERVE_MAX_CHARS), for the shortcut solvers' probes. `also`: other final answers, each verified
        as the answer of the same calls (`also`: their verdicts, in order), on the same end state while the
        verifier leaves it as it was (no row or file changed), else each in an episode of its own; where a call
        submits, its answer is the answer, as in a script of its own."""
        if self._untouched():
            db = self.ctx._release_db()  # a connection that changed nothing serves the next episode too
            self.ctx.close()
            self._new_episode(task)
            if db is not None:
                self.ctx._db = db
        else:
            self.reset(task)
        observed = []
        submitted = False
        segments = turns if turns is not None else [{"calls": calls, "answer": answer}]
        for index, segment in enumerate(segments):
            if index:
                self.next_turn(segments[index - 1].get("answer"), segment.get("tools"))
            answer = segment.get("answer")
            for c in segment.get("calls", []):
                reply = self.call(c["name"], c.get("arguments", {}))
                if observe:
                    content = reply["content"] if isinstance(reply.get("content"), str) else ""
                    observed.append(
                        {"name": c["name"], "ok": bool(reply["ok"]), "content": content[:OBSERVE_MAX_CHARS]}
                    )
                if reply.get("submitted"):
                    answer, submitted = reply.get("answer"), True
                    break
            if submitted:
                break
        end = self._end_state() if also else None
        verdict = self.verify(task.get("verifier", ""), task.get("params"), answer, source)
        verdict["calls_ok"] = all(c["ok"] for c in self.calls)
        if digest:
            module = self._load_verify(source)
            fn = getattr(module, "db_digest", None) if module else None
            verdict["db_digest"] = fn(self.ctx.db) if fn is not None else None
        if observe:
            verdict["observed"] = observed
        if also:
            calls_ok, others = verdict["calls_ok"], []
            for other in also:
                if not submitted and self._end_state() == end:
                    others.append(
                        {
                            **self.verify(task.get("verifier", ""), task.get("params"), other, source),
                            "calls_ok": calls_ok,
                        }
                    )
                else:  # the verifier changed the state (or a submit fixed the answer): an episode of its own
                    if turns is not None:
                        turns = [*turns[:-1], {**turns[-1], "answer": other}]
                    others.append(self.replay(task, calls, other, source, turns=turns))
            verdict["also"] = others
        return verdict

    def _end_state(self) -> tuple:
        """What a verifier could change of an episode's end: its rows and the scratch folder's files."""
        return (self.ctx.changes(), self._scan())

    def close(self) -> None:
        """End the episode (close its database); the server can start another with `reset`."""
        if self.ctx is not None:
            self.ctx.close()
            self.ctx = None

    def state_hash(self) -> str:
        if self.ctx is not None:
            self.ctx.close_db()  # flush and release the database before dumping it
        return state_hash(self.scratch)

    # -- the host's entry point ------------------------------------------------------------------------
    def handle(self, request: str) -> str:
        """One JSON request from the host -> one JSON reply: {"op": "reset"|"call"|"verify"|"hash"|"log"}."""
        req = json.loads(request)
        op = req.get("op")
        if op == "call":
            reply = self.call(req["name"], req.get("arguments", {}))
        elif op == "reset":
            reply = self.reset(req.get("task", {}))
        elif op == "verify":
            reply = self.verify(req["name"], req.get("params"), req.get("answer"), req.get("source"))
        elif op == "hash":
            reply = {"hash": self.state_hash()}
        elif op == "replay":
            source = req.get("source")
            self._read_cache = self._replay_reads
            try:
                reply = {
                    "verdicts": [
                        self.replay(
                            e["task"],
                            e.get("calls", []),
                            e.get("answer"),
                            source,
                            e.get("digest", False),
                            e.get("observe", False),
                            e.get("also"),
                            e.get("turns"),
                        )
                        for e in req["episodes"]
                    ]
                }
            finally:
                self._read_cache = None  # live episodes always run their tools
        elif op == "turn":
            reply = self.next_turn(req.get("answer"), req.get("tools"))
        elif op == "log":
            calls = [{k: v for k, v in c.items() if k != "result"} for c in self.calls]
            reply = {"calls": calls, "answer": self.ctx.answer if self.ctx else None}
        else:
            reply = {"error": f"unknown op {op!r}"}
        return json.dumps(reply, default=str)


_EPISODE_FIELDS = ("ctx", "calls", "_wrote", "_read_cache", "allowed", "scratch", "_agent_ran")
"""What the ground truth's replay swaps out and gives back: everything of the agent's episode it would touch."""


class _Turn(dict):
    """A turn that ended ({"index", "answer", "calls", "state"}); the last one's "state" is taken when first read
    (it is the final state, which nothing changes before the verifier runs)."""

    def __init__(self, snapshot, **fields) -> None:
        super().__init__(fields)
        self._snapshot = snapshot

    def __missing__(self, key):
        if key != "state":
            raise KeyError(key)
        self["state"] = self._snapshot()
        return self["state"]

    def get(self, key, default=None):
        return self[key] if key in self or key == "state" else default


def _judge_turn(
    i, expected, reference, mine, results_so_far, check_state, check_results, irrelevance
) -> dict:
    """One turn of `toolgym:ground_truth` (see EnvServer._ground_truth)."""
    where = f"turn {i + 1}"
    if not expected:
        if irrelevance and mine["calls"]:
            return {
                "reward": 0.0,
                "reason": f"{where}: the tools cannot do what was asked, but it called "
                f"{', '.join(sorted({c['name'] for c in mine['calls']}))}",
            }
        return {"reward": 1.0, "reason": f"{where}: passed (no call needed)"}
    if not mine["calls"]:
        return {
            "reward": 0.0,
            "reason": f"{where}: no tool call, where the task needs "
            f"{', '.join(sorted({c['name'] for c in expected}))}",
        }
    unjudgeable = [s for s in (mine["state"], reference["state"]) if isinstance(s, toolgym_env.Unjudgeable)]
    if check_state and unjudgeable:
        return {"reward": 0.0, "reason": f"{where}: {unjudgeable[0]!r}"}
    if check_state and mine["state"] != reference["state"]:
        return {
            "reward": 0.0,
            "reason": f"{where}: the state differs from the ground truth's "
            f"({_state_difference(mine['state'], reference['state'])})",
        }
    if check_results:
        left = list(results_so_far)
        missing = []
        for result in reference["results"]:
            if result in left:
                left.remove(result)
            else:
                missing.append(result)
        if missing:
            return {
                "reward": 0.0,
                "reason": f"{where}: {len(missing)} result(s) of the ground truth's calls are "
                f"missing from the agent's, e.g. {missing[0][:120]!r}",
            }
    return {"reward": 1.0, "reason": f"{where}: passed"}


def _state_difference(mine, truth, prefix: str = "") -> str:
    """Where two snapshots differ, named down to the attribute (for a verdict's reason)."""
    paths = _differing(mine, truth, prefix)
    return ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "") or "unequal"


def _differing(mine, truth, prefix: str, depth: int = 0) -> list:
    if not (isinstance(mine, dict) and isinstance(truth, dict)) or depth > 1:
        return [prefix or "the state"]
    out = []
    for key in sorted(set(mine) | set(truth), key=str):
        if mine.get(key) != truth.get(key):
            out += _differing(
                mine.get(key), truth.get(key), f"{prefix}.{key}" if prefix else str(key), depth + 1
            )
    return out


BUILTIN_VERIFIERS = {"ground_truth": EnvServer._ground_truth}
"""Verifiers every environment has, named `toolgym:<name>` by tasks."""


def toolsets_of(module) -> list:
    """The module's toolsets (module-level `toolgym_env.Toolset` instances), with their tools' names checked."""
    found, keys, names = [], set(), {}
    for attr, value in vars(module).items():
        if attr.startswith("_") or not isinstance(value, Toolset):
            continue
        if value.key in keys:
            raise ValueError(f"two toolsets of tools.py have the key {value.key!r}; give one another key=")
        keys.add(value.key)
        for name in value.tools():
            if name in names:
                raise ValueError(
                    f"tool {name!r} comes from two toolsets ({names[name]}, {value.key}); exclude= one"
                )
            names[name] = value.key
        found.append(value)
    return found


def _toolset_functions(toolset) -> dict:
    """Each tool of a toolset as a function of (ctx, **arguments), marked like an @tool function."""

    def bind(name: str, meta: dict):
        def fn(ctx, **arguments):
            return toolset.call(ctx, name, arguments)

        fn.__name__ = name
        fn.__toolgym_tool__ = {"access": meta.get("access", "write"), "submit": bool(meta.get("submit"))}
        return fn

    return {name: bind(name, meta) for name, meta in toolset.tools().items()}


def _write_lib(files: dict) -> str:
    """Pushed lib/ files in a new folder, owned by the trusted uid where this process has one (a protected
    session): the agent's uid reads them but cannot change what a later import or data read gets. A forked child
    writes them as the trusted uid through and through, so this process never leaves the agent's effective uid
    (which it could not take back). Returns the folder to import from: in a protected session, the path of an
    open descriptor of it (/proc/self/fd/N), so renaming folders cannot put another lib/ in its place."""
    import tempfile

    agent, trusted = os.geteuid(), os.getuid()
    if trusted == agent:
        return _write_tree(files, tempfile.mkdtemp(prefix="toolgym-lib-"))
    # The trusted uid may have nowhere to write (a sandbox's /tmp can be the agent's alone): it writes into a
    # sticky folder of this process's, where the agent can neither remove nor rename what it made.
    parent = tempfile.mkdtemp(prefix="toolgym-lib-")
    os.chmod(parent, 0o1777)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: trusted for real, writes, says where, exits
        code = 1
        try:
            os.close(read)
            os.setresuid(trusted, trusted, trusted)
            os.write(write, b"ok:" + _write_tree(files, os.path.join(parent, "lib")).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - the parent reports it
            os.write(write, f"{type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        said = f.read().decode()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not said.startswith("ok:"):
        raise RuntimeError(f"the env server could not write the environment's lib/ folder ({said})")
    # The folder above lib/ is in /tmp, which the agent's uid owns (in every backend): agent code could rename
    # lib/ away and put its own in its place. An open descriptor of the trusted folder keeps naming the folder
    # the child wrote, whatever is renamed later: imports and data reads go through /proc/self/fd/N.
    fd = os.open(said[3:], os.O_RDONLY | os.O_DIRECTORY)
    if os.fstat(fd).st_uid != trusted:
        os.close(fd)
        raise RuntimeError("the environment's lib/ folder was replaced before the env server opened it")
    return f"/proc/self/fd/{fd}"


def _write_tree(files: dict, root: str) -> str:
    os.makedirs(root, mode=0o755, exist_ok=True)
    os.chmod(root, 0o755)
    for rel, data in sorted(files.items()):
        path = os.path.join(root, rel)
        if os.path.normpath(path) != path or not path.startswith(root + os.sep):
            raise ValueError(f"lib/{rel} is not a plain path inside lib/")
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, 0o644)
    return root


def serve_pushed(files_b64: dict, scratch: str | None = None, paths: list | None = None) -> EnvServer:
    """An EnvServer in a sandbox from files the host pushed as base64 (the push transport: no mount needed)."""
    import base64

    return serve(
        EnvServer(
            scratch=scratch,
            files={k: base64.b64decode(v) for k, v in files_b64.items()},
            sandboxed=True,
            paths=paths,
        )
    )


def serve(server: EnvServer) -> EnvServer:
    """`server`, running in a sandbox session: programs its tools start run as the agent."""
    agent_children()
    return server


# -- the agent's processes ------------------------------------------------------------------------------------
# In a protected session (toolgym's env server) the real uid is the trusted one and the effective uid the agent's:
# agent code cannot signal or trace it. Every program the env server's tools start (a shell, the tests, a Python
# tool) is agent code, so it must run as the agent through and through, or it could signal the env server.


def agent_children() -> None:
    """Make every subprocess this process starts take the agent's uid (real, effective and saved), and join the
    agent cgroup where the sandbox server gave this session one (sandbox/inside/server.py, AgentCgroup): between
    fork and exec, after the uid change, so it is the agent's before any of its code runs. (A uid change already
    makes Python fork rather than vfork, so the join adds a write and no fork.)"""
    import subprocess

    agent = os.geteuid()
    cgroup = toolgym_env.agent_cgroup_fds()
    if (os.getuid() == agent and not cgroup) or getattr(subprocess.Popen, "_toolgym_agent", False):
        return
    start = subprocess.Popen.__init__

    def join(then) -> None:
        for fd in cgroup:
            try:
                os.write(fd, b"0")
            except OSError:
                pass  # it stays in the sandbox's cgroup, bounded by the sandbox's limits
        if then is not None:
            then()

    def __init__(self, *args, user=None, preexec_fn=None, **kwargs):
        if cgroup:
            preexec_fn = functools.partial(join, preexec_fn)
        if user is None and os.getuid() != agent:
            user = agent
        start(self, *args, user=user, preexec_fn=preexec_fn, **kwargs)

    subprocess.Popen.__init__ = __init__
    subprocess.Popen._toolgym_agent = True


def _agent_pids(agent: int) -> list[int]:
    """Live processes of the agent's uid, but PID 1 (the sandbox server) and this one."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (1, os.getpid()):
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1").split()[0]) == agent and fields.get("State", "").split()[:1] != ["Z"]:
            out.append(int(name))
    return out


def stop_agent_processes(timeout_s: float = 3.0) -> int:
    """Kill every process of the agent (stop them all, then kill, until none is left: a fork bomb cannot outrun
    it) and reap this process's children; how many are still alive after `timeout_s` (0: checked, none)."""
    import time

    agent = os.geteuid()
    deadline = time.monotonic() + timeout_s
    while True:
        pids = _agent_pids(agent)
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        while True:  # the dead among this process's own children
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not pids:
            return 0
        if time.monotonic() > deadline:
            return len(_agent_pids(agent))
        time.sleep(0.002)
