"""What an environment's tools.py and verify.py import: the `@tool` decorator, `ToolError` and the `Context`.

Stdlib only: it runs inside the sandbox (as the top-level module `toolgym_env`) and on the host (as
`toolgym.envs.inside.toolgym_env`, aliased to `toolgym_env` when the host loads a tools.py).
"""

from __future__ import annotations

import copy as _copy
import datetime as _dt
import hashlib
import inspect as _inspect
import os
import random
import re as _re
import sqlite3

ACCESS = ("read", "write")


def tool(fn=None, *, access: str = "read", submit: bool = False):
    """Mark a function of tools.py as a tool. `@tool` is a read tool, `@tool(access="write")` changes state,
    `@tool(submit=True)` ends the episode with its answer (call `ctx.submit(answer)` inside).

    The first parameter is always `ctx` (a Context); the other parameters, their type hints and the Google-style
    docstring (first paragraph, `Args:` section) are the tool's JSON schema."""
    if access not in ACCESS:
        raise ValueError(f"access must be 'read' or 'write', not {access!r}")
    if fn is not None and _inspect.ismethod(fn):
        raise TypeError(
            f"tool() takes a function of (ctx, ...), not the bound method {fn.__qualname__}; turn a class's "
            "methods into tools with tools_from_class(TheClass)"
        )

    def mark(f):
        f.__toolgym_tool__ = {"access": access, "submit": submit}
        return f

    return mark(fn) if fn is not None else mark


class ToolError(Exception):
    """Raise it in a tool with a message written for the model (what was wrong, what to do instead)."""


class Context:
    """What a tool or a verifier sees: the episode's scratch state, a fixed clock and fixed ids."""

    def __init__(
        self, state_dir: str, task_id: str, now: _dt.datetime | None = None, call_timeout_s: float = 10.0
    ) -> None:
        self.state_dir = state_dir
        """The scratch copy of the environment's state/ for this episode (writable)."""
        self.call_timeout_s = call_timeout_s
        """The env server stops a tool call past this; a tool with its own deadline keeps below it."""
        self._task_id = task_id
        self._seed = int.from_bytes(hashlib.sha256(task_id.encode()).digest()[:8], "big")
        self._rng = random.Random(self._seed)
        self._now = now or _dt.datetime(2025, 6, 1, 9, 0, 0) + _dt.timedelta(
            minutes=self._seed % (60 * 24 * 90)
        )
        self._personal = 0
        """How often a tool read what differs from task to task (the id, seed, clock, ids, random numbers): a read
        that never did returns the same for every task of the environment, which admission's replays exploit."""
        self._ids = 0
        self._db: sqlite3.Connection | None = None
        self._changes = 0
        self._cleanups: list = []
        self.submitted = False
        self.answer = None
        self.config = None
        """The task's initial configuration (`TaskSpec.config`: a dict, or None), for toolsets' setup."""
        self.objects: dict = {}
        """Per-episode objects of the environment's toolsets, by toolset key (a class's instance, a server)."""
        self.turn = 0
        """The index of the user turn the episode is in."""
        self.turns: list = []
        """The turns that ended, for verifiers: {"index", "answer", "calls", "state"} each (calls as in the log,
        with each call's full `result`; state: every toolset's snapshot at the turn's end)."""

    @property
    def task_id(self) -> str:
        self._personal += 1
        return self._task_id

    @property
    def seed(self) -> int:
        """Fixed per task: the same task always sees the same clock, ids and random numbers."""
        self._personal += 1
        return self._seed

    @property
    def rng(self) -> random.Random:
        """The task's random numbers (seeded by `seed`)."""
        self._personal += 1
        return self._rng

    def now(self) -> _dt.datetime:
        """The episode's clock: fixed per task, so every replay sees the same time."""
        self._personal += 1
        return self._now

    def today(self) -> str:
        self._personal += 1
        return self._now.date().isoformat()

    def new_id(self, prefix: str = "") -> str:
        """A new id, the same sequence on every replay of the task."""
        self._personal += 1
        self._ids += 1
        return f"{prefix}{self._seed % 0xFFFF:04X}{self._ids:04d}"

    @property
    def db(self) -> sqlite3.Connection:
        """The episode's SQLite database (state/db.sqlite), opened on first use; rows as sqlite3.Row."""
        if self._db is None:
            path = os.path.join(self.state_dir, "db.sqlite")
            if not os.path.exists(path):
                raise ToolError("this environment has no database")
            db = sqlite3.connect(path, isolation_level=None, factory=_Watched)
            # The episode's scratch copy is thrown away after it: no fsync per write (it cost 20-60 ms a write).
            db.execute("PRAGMA synchronous = OFF")
            db.execute("PRAGMA journal_mode = MEMORY")
            db.row_factory = sqlite3.Row
            db.watch(path)
            self._db = db
        return self._db

    def rows(self, sql: str, params: tuple | list = ()) -> list[dict]:
        """Rows of a query as plain dicts (what a tool returns to the model)."""
        return [dict(r) for r in self.db.execute(sql, params).fetchall()]

    def submit(self, answer) -> None:
        """Record the final answer; the episode ends after this tool call."""
        self.submitted = True
        self.answer = answer

    def on_close(self, fn) -> None:
        """Run `fn()` when the episode ends (e.g. stop a process a tool started)."""
        self._cleanups.append(fn)

    def changes(self) -> int:
        """Rows inserted, updated or deleted through `db` this episode (across reopenings)."""
        return self._changes + (self._db.total_changes if self._db is not None else 0)

    def close_db(self) -> None:
        """Close the database (it reopens on next use): flushes it before the state is hashed."""
        if self._db is not None:
            self._changes += self._db.total_changes
            self._db.close()
            self._db = None

    def _release_db(self):
        """The open database connection, handed over (this context forgets it) if it has changed nothing and
        followed everything done to it: the next episode on the same untouched file may go on with it."""
        db, self._db = self._db, None
        if db is None:
            return None
        clean = isinstance(db, _Watched) and db.written == set() and db.total_changes == 0
        # and as it was opened, in what a tool could have changed (rows, text, transactions)
        clean = clean and db.row_factory is sqlite3.Row and db.text_factory is str
        clean = clean and db.isolation_level is None and not db.in_transaction
        if clean and db.untouched_by_others():
            db.memo = None
            return db
        self._changes += db.total_changes
        db.close()
        return None

    def close(self) -> None:
        """End the episode: the database and everything registered with on_close."""
        self.close_db()
        while self._cleanups:
            try:
                self._cleanups.pop()()
            except Exception:  # noqa: BLE001 - one failing cleanup must not keep the others from running
                pass


class Toolset:
    """Tools that are not module-level `@tool` functions: the methods of a class (`tools_from_class`), an MCP
    server's tools. tools.py exposes each toolset as a module-level attribute; the env server finds them.

    The server calls `start(ctx)` when an episode starts (each episode has a new Context; keep per-episode state
    in `ctx.objects[self.key]`, never on the toolset, since a verifier may replay ground truth on a second
    Context), `call` for each call of one of its tools (arguments checked against env.json's schema unless the
    tool says `check_arguments: false`), `snapshot` at each user turn's end and at verification."""

    key = ""
    """Unique among the module's toolsets: names its state in snapshots and in `ctx.objects`."""

    def tools(self) -> dict:
        """{tool name: {"access": "read" | "write", "submit": bool}}, in the order the tools are listed."""
        return {}

    def start(self, ctx) -> None:
        """A new episode begins (`ctx.config`: the task's initial configuration)."""

    def call(self, ctx, name: str, arguments: dict):
        """Run one call; return text or JSON data; raise ToolError with a sentence for the model."""
        raise NotImplementedError

    def snapshot(self, ctx):
        """The episode's state as verifiers compare it (`==`), or None when it has none."""
        return None


def public_methods(cls) -> list:
    """The names of a class's public methods (its own and its bases', not object's), in definition order."""
    names: list = []
    for klass in reversed(cls.__mro__[:-1]):
        for name, value in vars(klass).items():
            if name.startswith("_") or name in names:
                continue
            if isinstance(value, (staticmethod, classmethod)) or _inspect.isfunction(value):
                names.append(name)
    return names


class ClassToolset(Toolset):
    """The public methods of a class as tools, with one instance of the class per episode (`tools_from_class`)."""

    def __init__(
        self,
        cls,
        *,
        key=None,
        setup=None,
        include=None,
        exclude=(),
        read=(),
        submit=None,
        state=None,
        args=(),
        kwargs=None,
    ) -> None:
        self.cls = cls
        self.key = key or cls.__name__
        names = list(include) if include is not None else public_methods(cls)
        missing = [n for n in names if not callable(getattr(cls, n, None))]
        if missing:
            raise ValueError(f"{cls.__name__} has no method {missing[0]!r}; fix include=")
        names = [n for n in names if n not in set(exclude)]
        unknown = [n for n in [*read, *([submit] if submit else [])] if n not in names]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not one of {cls.__name__}'s tools ({', '.join(names)})")
        self._tools = {n: {"access": "read" if n in read else "write", "submit": n == submit} for n in names}
        self.setup = setup
        self.state = state
        self.args, self.kwargs = tuple(args), dict(kwargs or {})

    def tools(self) -> dict:
        return {name: dict(meta) for name, meta in self._tools.items()}

    def start(self, ctx) -> None:
        instance = self.cls(*self.args, **self.kwargs)
        if self.setup is not None:
            config = ctx.config.get(self.key) if isinstance(ctx.config, dict) else None
            config = _copy.deepcopy(config) if config is not None else {}  # the instance may change it
            hook = (
                getattr(instance, self.setup) if isinstance(self.setup, str) else self.setup.__get__(instance)
            )
            hook(config)
        ctx.objects[self.key] = instance

    def instance(self, ctx):
        """This episode's instance of the class."""
        if self.key not in ctx.objects:
            self.start(ctx)
        return ctx.objects[self.key]

    def call(self, ctx, name: str, arguments: dict):
        value = getattr(self.instance(ctx), name)(**arguments)
        if self._tools[name]["submit"]:
            ctx.submit(value if value is not None else arguments)
        return value

    def snapshot(self, ctx):
        instance = self.instance(ctx)
        if self.state is not None:
            return _copy.deepcopy(self.state(instance))
        return {k: _snapshot_value(v) for k, v in vars(instance).items() if not k.startswith("_")}


class Unjudgeable:
    """A state that could not be taken (a value that cannot be copied, a snapshot that raised): equal to nothing,
    itself included, so a verifier that compares it fails the turn with the reason instead of passing it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __eq__(self, other) -> bool:
        return False

    __hash__ = None

    def __repr__(self) -> str:
        return f"<state not taken: {self.reason}>"


def _snapshot_value(value):
    try:
        return _copy.deepcopy(value)
    except Exception as exc:  # noqa: BLE001 - an attribute that cannot be copied (a lock, a socket)
        return Unjudgeable(f"{type(value).__name__} cannot be copied ({type(exc).__name__}: {exc})")


def tools_from_class(cls, **options) -> ClassToolset:
    """Turn a class's public methods into tools: `TOOLS = tools_from_class(FileSystem, setup="_load_scenario")`.
    The options are ClassToolset's: key, setup, include, exclude, read, submit, state, args, kwargs.

    Each episode gets a new instance (`cls(*args, **kwargs)`); `setup` (a method name, or a function taking the
    instance and the config) then gets the task's `config[key]` (`{}` when absent; `key` defaults to the class's
    name). Every tool is a "write" tool unless named in `read` (imported code may change state anywhere);
    `submit` names the method whose call ends the episode with its result. `include`/`exclude` choose the
    methods; `state(instance)` is the snapshot verifiers compare, by default the instance's public attributes
    (deep copies, compared with `==`, as a multi-turn benchmark's state checker does)."""
    return ClassToolset(cls, **options)


NEW_ID = _re.compile(r"\b[A-Za-z]+-?[0-9A-F]{4}\d{4}\b")
"""What `Context.new_id` makes (a letter prefix, the task's 4-hex tag, a 4-digit counter). Seed data ids must
not look like it: keep them short ("R0041")."""
_NEW_ID_TAIL = _re.compile(r"(?<=[A-Za-z])-?[0-9A-F]{4}\d{4}\b")  # the same ids, found faster: masked alike


_DIGESTS: dict = {}
_BASES: dict = {}
"""Content hash of a database file -> (its tables, each table's digest piece): what a watched connection opened."""
_CONTENT: dict = {}
"""A database file's (path, inode, size, mtime, ctime) -> the hash of its bytes."""


def _stat_key(path: str) -> tuple:
    st = os.stat(path)
    # ctime too: no one can set it back (utime can forge mtime), so a changed file never keeps its key.
    return (path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _content_hash(path: str) -> str:
    key = _stat_key(path)
    if key not in _CONTENT:
        if len(_CONTENT) > 256:
            _CONTENT.clear()
        with open(path, "rb") as f:
            _CONTENT[key] = hashlib.sha256(f.read()).hexdigest()
    return _CONTENT[key]


_UNWRITTEN = frozenset(
    getattr(sqlite3, name)
    for name in ("SQLITE_SELECT", "SQLITE_READ", "SQLITE_TRANSACTION", "SQLITE_SAVEPOINT", "SQLITE_FUNCTION")
    + ("SQLITE_RECURSIVE",)
)
_ROW_WRITES = frozenset((sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE))
_READ_PRAGMAS = frozenset(
    ("data_version", "database_list", "table_info", "table_xinfo", "index_list", "index_info")
)


class _Watched(sqlite3.Connection):
    """The episode's connection. Its authorizer sees every statement as SQLite prepares it (trigger bodies
    included), so it knows which tables the episode's statements may have written; `state_digest` re-reads only
    those. Anything it cannot follow (a schema change, a pragma, another connection's commit, a deserialize)
    makes every table count as written."""

    def watch(self, path: str) -> None:
        self.written: set | None = set()
        self.version = self.execute("PRAGMA data_version").fetchone()[0]
        self.content = _content_hash(path)  # after data_version: a commit between the two reads is seen
        self.memo: tuple | None = None
        self.set_authorizer(self._authorize)

    def _authorize(self, action, arg1, arg2, db_name, source) -> int:
        if self.written is not None and action not in _UNWRITTEN:
            if action == sqlite3.SQLITE_PRAGMA and arg1 in _READ_PRAGMAS:
                pass  # read-only pragmas, whatever their argument
            elif action in _ROW_WRITES and arg1 and not arg1.startswith("sqlite_"):
                self.written.add(arg1)
            else:
                self.written = None
        return sqlite3.SQLITE_OK

    def deserialize(self, *args, **kwargs):
        self.written = None
        return super().deserialize(*args, **kwargs)

    def set_authorizer(self, *args, **kwargs):
        if args[:1] != (self._authorize,):
            self.written = None  # someone else watches now: this connection can no longer follow its writes
        return super().set_authorizer(*args, **kwargs)

    def untouched_by_others(self) -> bool:
        return self.execute("PRAGMA data_version").fetchone()[0] == self.version


def state_digest(db) -> str:
    """sha256 of every table's rows (sorted), with the ids episodes create masked: an agent that makes the same
    changes in another order gets other new ids and the same digest."""
    # A connection that changed nothing shows the file as it is on disk: its digest is known while the file is
    # the same one, untouched (admission verifies thousands of read-only episodes on one copy).
    key = None
    if db.total_changes == 0:
        path = next((row[2] for row in db.execute("PRAGMA database_list") if row[1] == "main"), "")
        if path:
            key = _stat_key(path)
            if key in _DIGESTS:
                return _DIGESTS[key]
    digest = _watched_digest(db) if isinstance(db, _Watched) else None
    if digest is None:
        tables = _tables(db)
        digest = _combine(tables, _pieces(db, tables))
    if key is not None:
        if len(_DIGESTS) > 64:
            _DIGESTS.clear()
        _DIGESTS[key] = digest
    return digest


def _watched_digest(db: _Watched) -> str | None:
    """The digest from the pieces of the tables the connection wrote and the pieces every other table had when
    it opened; None where that cannot be trusted (then the whole database is read)."""
    if not db.untouched_by_others():
        return None
    memo_key = (db.total_changes, None if db.written is None else frozenset(db.written))
    if db.memo is not None and db.memo[0] == memo_key:
        return db.memo[1]
    tables = _tables(db)
    base = _BASES.get(db.content)
    if db.written == set() and base is None:
        pieces = _pieces(db, tables)  # nothing written: these are the pieces of the file it opened
        if len(_BASES) > 32:
            _BASES.clear()
        _BASES[db.content] = (tables, pieces)
        digest = _combine(tables, pieces)
    elif db.written is None or base is None or base[0] != tables:
        return None
    else:
        fresh = _pieces(db, [t for t in tables if t in db.written])
        digest = _combine(tables, {t: fresh.get(t, base[1][t]) for t in tables})
    db.memo = (memo_key, digest)
    return digest


def _tables(db) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]


def _pieces(db, tables: list[str]) -> dict[str, bytes]:
    out = {}
    for table in tables:
        # One repr per row (never a newline: repr escapes it) and one masking pass over the whole table.
        cur = db.cursor()
        cur.row_factory = None  # plain tuples: no sqlite3.Row per row
        text = "\n".join(map(repr, cur.execute('SELECT * FROM "' + table.replace('"', '""') + '"')))
        rows = sorted(_NEW_ID_TAIL.sub("<new>", text).split("\n")) if text else []
        out[table] = table.encode() + b"\0" + "\n".join(rows).encode() + b"\0"
    return out


def _combine(tables: list[str], pieces: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for table in tables:
        h.update(pieces[table])
    return h.hexdigest()


_Function = type(_combine)
_TABLE_VALUES: dict = {}
"""Content hash of a database file -> (its tables, {(table, code of fn): fn's value}): what `table_values`
computed on connections that had changed nothing of the file they opened."""


def table_values(db, fn) -> dict:
    """{table: fn(db, table)} for every table of the main database, in name order.

    For a table the episode's watched connection vouches it did not write (no other connection committed, no
    change it could not follow), the value computed for the file the connection opened is reused: a verifier's
    "everything else unchanged" digest then reads only what the episode wrote. So fn must depend on nothing but
    that table's rows (no closure, default or per-environment global: its code object is its key), and callers
    must not change what it returns (values are shared). Values are taken only from connections that changed
    nothing, so nothing an episode does reaches another one's values; in any doubt fn runs afresh."""
    tables = _tables(db)
    known, clean = None, False
    # a plain function of its arguments alone (not a method, closure or partial): then its code is its identity
    pure = type(fn) is _Function and fn.__closure__ is None and not fn.__defaults__ and not fn.__kwdefaults__
    code = fn.__code__ if pure else None
    if pure and isinstance(db, _Watched) and db.written is not None and db.untouched_by_others():
        clean = not db.written and db.total_changes == 0
        entry = _TABLE_VALUES.get(db.content)
        if entry is None and clean:
            if len(_TABLE_VALUES) > 32:
                _TABLE_VALUES.clear()
            entry = _TABLE_VALUES[db.content] = (tables, {})
        if entry is not None and entry[0] == tables:
            known = entry[1]
    out, fresh = {}, {}
    for table in tables:
        key = (table, code)
        if known is not None and key in known and table not in db.written:
            out[table] = known[key]
        else:
            out[table] = fresh[key] = fn(db, table)
    # Still as opened after fn ran (it reads, and is trusted to): then these are the file's values.
    if known is not None and clean and not db.written and db.total_changes == 0 and db.untouched_by_others():
        for key, value in fresh.items():
            try:
                hash(value)  # immutable all the way down, so no caller can change the shared copy
            except TypeError:
                continue
            known[key] = value
    return out


# -- judging agent code across a process boundary ---------------------------------------------------------------
# A verifier never trusts the exit code, output or objects of a process that imported agent code. It sends the
# calls to make to a fresh interpreter (the agent's process: it may print, patch builtins or exit as it likes),
# takes back only plain data (JSON), and compares that, in its own process, with what the correct code returns.
# To forge a pass the agent's process would have to produce the right values for inputs it has never seen.

PLAIN_SOURCE = r"""
def plain(value, depth=0):
    # JSON data that is equal exactly when the values are equal under ==, with the types == tells apart kept
    # (a tuple is not a list; 3 == 3.0 stays true; a set equals a frozenset). json only where it sorts: a child
    # that makes the calls pays for importing it (7 ms) only when a value holds a set or a dict.
    import math
    if depth > 50:
        raise ValueError("nested too deep")
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if type(value) in (list, tuple):
        return {type(value).__name__: [plain(x, depth + 1) for x in value]}
    if type(value) in (set, frozenset, dict):
        import json
    if type(value) in (set, frozenset):
        return {"set": sorted((plain(x, depth + 1) for x in value), key=lambda x: json.dumps(x, sort_keys=True))}
    if type(value) is dict:
        pairs = [[plain(k, depth + 1), plain(x, depth + 1)] for k, x in value.items()]
        return {"dict": sorted(pairs, key=lambda kv: json.dumps(kv[0], sort_keys=True))}
    raise TypeError(type(value).__name__ + " is not plain data")
"""
"""`plain(value)`: a value as JSON data, the one encoding of both sides (the caller below and the verifier)."""
exec(PLAIN_SOURCE)

_CALLER = (
    PLAIN_SOURCE
    + r"""
import sys
from _json import encode_basestring_ascii as _text
out = sys.stdout
sys.path[:0] = [sys.argv[1]]
cases = eval(sys.stdin.read(), {"__builtins__": {}})  # the verifier's repr of its calls


def _dump(v):
    # plain() data as JSON without the json module, whose import is 40% of this process's CPU time
    if v is None or v is True or v is False:
        return "null" if v is None else "true" if v else "false"
    if type(v) is str:
        return _text(v)
    if type(v) in (int, float):
        return type(v).__repr__(v)
    if type(v) is list:
        return "[" + ", ".join(_dump(x) for x in v) + "]"
    if type(v) is dict:
        return "{" + ", ".join(_text(k) + ": " + _dump(x) for k, x in v.items()) + "}"
    raise TypeError(type(v).__name__ + " is not plain data")


results = []
for module, name, args in cases:
    try:
        fn = getattr(__import__(module, fromlist=[name]), name)
        literals = {"__builtins__": {}, "set": set, "frozenset": frozenset, "inf": float("inf"), "nan": float("nan")}
        results.append({"value": plain(fn(*eval(args, literals)))})
    except BaseException as exc:
        results.append({"error": type(exc).__name__})
out.write("\n" + _dump(results) + "\n")
out.flush()
"""
)
"""The agent's side: import its code, make the calls, print one JSON line. Whatever it prints instead is only data."""


# -- agent interpreters forked from a pristine one --------------------------------------------------------------
# Verifiers and tools start thousands of short Python processes for the agent's code (test runs, behaviour checks,
# code-interpreter sessions), and starting an interpreter costs 10-40 ms of CPU where a fork costs one or two. So
# each kind of interpreter (its flags, its environment, what it preloads) is started once per process as a zygote;
# every program of that kind is forked from it. The zygote never runs agent code and receives only folder names,
# program text and file descriptors: a forked program holds what a freshly started one would (the zygote's own
# modules are dropped; preloaded ones are what the program would import first anyway, and a folder whose files
# would shadow one of them gets a fresh interpreter instead). The zygote keeps this process's user ids (in a
# protected sandbox: real and saved uid trusted, effective uid the agent's), so agent code can neither signal nor
# trace it and the reset's stop of the agent's processes leaves it; each program takes the agent's uid through and
# through before it runs. Where a zygote cannot start or answer, programs start as fresh interpreters, as before.

_ZYGOTE = r"""
MAIN = dict(globals())  # the __main__ an interpreter makes for -c (a program gets a copy)
import sys
FRESH = set(sys.modules)  # what the interpreter loaded on its own (with -S, not even os)
for _name in sys.argv[1].split(","):
    if _name:
        __import__(_name)
BASE = set(sys.modules)  # and what the preloaded modules loaded: all a program keeps
import os
for _fd in range(4, 4 + int(sys.argv[2])):  # the agent cgroup (sandbox/inside/server.py): every program forked
    os.write(_fd, b"0")                     # from here is born inside it, and none holds the descriptors
    os.close(_fd)
os.setresuid(-1, -1, os.getuid())  # the exec made the saved uid the effective one (the agent's): take it back
import _signal, ctypes, select, socket
ctl = socket.socket(fileno=3)
ctl.send(b"m " + ",".join(sorted({name.split(".")[0] for name in BASE - FRESH})).encode())
wake_r, wake_w = os.pipe()
os.set_blocking(wake_r, False)
os.set_blocking(wake_w, False)
_signal.set_wakeup_fd(wake_w)
_signal.signal(_signal.SIGCHLD, lambda *_: None)  # wakes the select below; children are reaped there


def exit_code(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def become(cwd, fds, kind, target, argv):
    code, interrupted = 1, False
    try:
        os.setsid()
        _signal.set_wakeup_fd(-1)
        _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
        agent = os.geteuid()
        if os.getuid() != agent:
            os.setresuid(agent, agent, agent)
        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, as a program the agent started would be
        for number, fd in enumerate(fds):
            os.dup2(fd, number)
        os.closerange(len(fds), os.sysconf("SC_OPEN_MAX"))
        os.chdir(cwd)
        for name in set(sys.modules) - BASE:
            del sys.modules[name]
        main = type(sys)("__main__")
        main.__dict__.update(MAIN)
        sys.modules["__main__"] = main
        sys.argv[:] = argv
        if kind == "m" and not sys.flags.isolated:
            sys.path[0] = os.getcwd()
        try:
            if kind == "m":
                import runpy
                runpy._run_module_as_main(target)
            else:
                exec(compile(target, "<string>", "exec"), main.__dict__)
            code = 0
        except SystemExit as exc:
            code = exit_code(exc)
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            exc.__traceback__ = exc.__traceback__.tb_next  # from the program's first frame, as the interpreter's
            sys.excepthook(type(exc), exc, exc.__traceback__)
            code = 1
        # what the interpreter's own shutdown does: wait for non-daemon threads, run atexit, flush
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
        import atexit
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        if interrupted:  # the interpreter ends an uncaught KeyboardInterrupt by the signal itself
            _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
            os.kill(os.getpid(), _signal.SIGINT)
    finally:
        os._exit(code)


while True:
    ready = select.select([ctl, wake_r], [], [])[0]
    if wake_r in ready:
        while True:
            try:
                if not os.read(wake_r, 512):
                    break
            except BlockingIOError:
                break
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        ctl.send(b"x %d %d" % (pid, status))
    if ctl not in ready:
        continue
    try:
        msg, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 4)
    except OSError:
        break
    if not msg:
        break
    cwd, kind, target, *argv = msg.decode().split("\0")
    pid = os.fork()
    if pid == 0:
        ctl.close()
        become(cwd, fds, kind, target, argv)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)  # it is ours until reaped above: it cannot be gone yet
    socket.send_fds(ctl, [b"p %d" % pid], [pidfd])
    os.close(pidfd)
"""


def agent_cgroup_fds() -> list[int]:
    """The agent cgroup's descriptors where the sandbox server gave this (trusted) session some
    (sandbox/inside/server.py, AgentCgroup): the programs it starts for the agent join that cgroup."""
    return [int(fd) for fd in os.environ.get("TOOLGYM_AGENT_CGROUP", "").split(",") if fd]


class Zygote:
    """One pristine interpreter of a kind (flags, environment, preloaded modules) that forks the agent's programs."""

    def __init__(self, flags: tuple = (), env: dict | None = None, preload: tuple = ()) -> None:
        import fcntl
        import socket
        import sys
        import weakref

        self.flags, self.preload = tuple(flags), tuple(preload)
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ctl.settimeout(10.0)
        self.exits: dict[int, int] = {}
        self.waiting: set[int] = set()
        self.served = False
        null = os.open(os.devnull, os.O_RDWR)
        env = dict(os.environ if env is None else env)
        env.pop("TOOLGYM_AGENT_CGROUP", None)
        # The zygote joins the agent cgroup first. Copies above the descriptors the spawn sets up, so that no
        # dup2 below overwrites one before it is used.
        cgroup = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in agent_cgroup_fds()]
        try:
            # posix_spawn, not subprocess: in a protected env server subprocess gives children the agent's uids.
            self.pid = os.posix_spawn(
                sys.executable,
                [sys.executable, *self.flags, "-c", _ZYGOTE, ",".join(self.preload), str(len(cgroup))],
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, theirs.fileno(), 3),
                    (os.POSIX_SPAWN_DUP2, null, 0),
                    (os.POSIX_SPAWN_DUP2, null, 1),
                    (os.POSIX_SPAWN_DUP2, null, 2),
                    *((os.POSIX_SPAWN_DUP2, fd, 4 + i) for i, fd in enumerate(cgroup)),
                ],
                setsid=True,
            )
        finally:
            theirs.close()
            os.close(null)
            for fd in cgroup:
                os.close(fd)
        self.stop = weakref.finalize(self, Zygote._stop, self.ctl, self.pid)  # once; at the latest at exit
        try:
            first = self.ctl.recv(1 << 16)
        except OSError:
            first = b""
        if not first.startswith(b"m "):
            self.stop()
            raise OSError("the zygote did not start")
        self.preloaded = set(filter(None, first[2:].decode().split(",")))
        """Top-level names of the modules it loaded beyond a fresh interpreter's: what a program's folder would
        shadow where it comes first on sys.path."""

    @staticmethod
    def _stop(ctl, pid: int) -> None:
        import signal

        ctl.close()
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass

    def _message(self, timeout: float | None) -> tuple[bytes, list[int]] | None:
        """The next message: a spawn's reply (b"p PID" with its pidfd) or an exit (b"x PID STATUS", recorded for
        a program someone waits on); None when none came within `timeout` (0: only what is there)."""
        import socket

        self.ctl.settimeout(timeout)
        try:
            msg, fds, _, _ = socket.recv_fds(self.ctl, 64, 1)
        except (BlockingIOError, TimeoutError):
            return None
        if not msg:
            raise OSError("the zygote is gone")
        if msg.startswith(b"x "):
            _, pid, status = msg.split()
            if int(pid) in self.waiting:
                self.exits[int(pid)] = os.waitstatus_to_exitcode(int(status))
        return msg, fds

    def spawn(self, cwd: str, fds: list[int], kind: str, target: str, argv: list[str]) -> tuple[int, int]:
        """Fork a program: `fds` become its descriptors 0, 1, ...; `kind` "c" runs `target` as `-c` source, "m"
        as `-m` module, with `argv` as sys.argv. (pid, pidfd); OSError where the zygote does not answer."""
        import socket

        while self._message(0) is not None:  # exits nobody waits for: drop them before they fill the socket
            pass
        fields = [cwd, kind, target, *argv]
        if any("\0" in f for f in fields) or len(fds) > 4:
            raise ValueError("a program the zygote cannot start")
        socket.send_fds(self.ctl, ["\0".join(fields).encode()], fds)
        while True:
            got = self._message(10.0)
            if got is None:
                raise OSError("the zygote did not answer")
            msg, pidfds = got
            if msg.startswith(b"p ") and len(pidfds) == 1:
                self.served = True
                return int(msg.split()[1]), pidfds[0]
            for fd in pidfds:
                os.close(fd)

    def returncode(self, pid: int, timeout: float) -> int | None:
        """The exit code of a program this zygote forked (negative: killed by that signal), once it has exited;
        None if no word came within `timeout`."""
        import time

        self.waiting.add(pid)
        deadline = time.monotonic() + timeout
        try:
            while pid not in self.exits:
                left = deadline - time.monotonic()
                if left <= 0 or self._message(left) is None:
                    return None
            return self.exits.pop(pid)
        finally:
            self.waiting.discard(pid)


_LOCAL = __import__("threading").local()


def zygotes() -> dict:
    """This thread's zygotes by kind (in-process env servers run one per thread; a zygote serves one at a time
    and goes with its thread): absent until needed; None where one failed at once (programs of that kind then
    start their own interpreter). One that served and then failed (killed where it shares the agent's uid) is
    started again."""
    found = getattr(_LOCAL, "zygotes", None)
    if found is None:
        found = _LOCAL.zygotes = {}
    return found


def fork_program(
    flags: tuple, cwd: str, fds: list[int], kind: str, target: str, argv: list[str], *, env=None, preload=()
) -> tuple | None:
    """(zygote, pid, pidfd) of `python FLAGS -c TARGET` (kind "c") or `python FLAGS -m TARGET` (kind "m") forked
    from the zygote of its kind, in `cwd`, `fds` as its descriptors 0, 1, ..., `argv` as sys.argv, `env` as its
    environment (None: this process's). None where no zygote serves, or where `cwd` comes first on its sys.path
    and holds a module a preloaded one would hide: the caller starts a fresh interpreter."""
    key = (tuple(flags), None if env is None else tuple(sorted(env.items())), tuple(preload))
    kinds = zygotes()
    zygote = kinds.get(key, False)
    if zygote is None:
        return None
    if zygote is False:
        try:
            zygote = kinds[key] = Zygote(flags, env, preload)
        except OSError:
            kinds[key] = None
            return None
    if zygote.preloaded and "-I" not in flags:
        try:
            if any(name.split(".")[0] in zygote.preloaded for name in os.listdir(cwd)):
                return None
        except OSError:
            return None
    try:
        pid, pidfd = zygote.spawn(cwd, fds, kind, target, argv)
    except (OSError, ValueError):
        if zygote.served:
            kinds.pop(key, None)
        else:
            kinds[key] = None
        zygote.stop()
        return None
    return zygote, pid, pidfd


def run_python(
    args: list,
    *,
    cwd: str,
    env: dict | None = None,
    input: str | None = None,
    timeout: float,
    new_session: bool = False,
    preload: tuple = (),
):
    """`subprocess.run(args, cwd=, env=, input=, timeout=, capture_output=True, text=True)` for
    `args` = [sys.executable, flags..., "-c" SOURCE | "-m" MODULE, arguments...], the program forked from the
    zygote of its kind (`preload`: modules it imports first anyway, loaded once in the zygote): the same
    CompletedProcess, or subprocess.TimeoutExpired once it is killed; a fresh interpreter where no zygote serves.
    Its stdin is empty unless `input` is given."""
    import subprocess
    import sys

    flags = []
    rest = list(args[1:])
    while rest and rest[0] in ("-I", "-S", "-B", "-E", "-s", "-u"):
        flags.append(rest.pop(0))
    if args[0] == sys.executable and len(rest) >= 2 and rest[0] in ("-c", "-m"):
        kind, target = rest[0][1], rest[1]
        argv = ["-c" if kind == "c" else "", *rest[2:]]  # -m: runpy puts the module's file first
        done = _forked_run(tuple(flags), cwd, kind, target, argv, env, preload, input, timeout, new_session)
        if done is not None:
            return done
    return subprocess.run(
        args,
        cwd=cwd,
        env=env,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=new_session,
    )


def _forked_run(flags, cwd, kind, target, argv, env, preload, input, timeout, new_session):
    import select
    import signal
    import subprocess
    import time

    stdin_r, stdin_w = os.pipe() if input else (os.open(os.devnull, os.O_RDONLY), None)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        got = fork_program(flags, cwd, [stdin_r, out_w, err_w], kind, target, argv, env=env, preload=preload)
    finally:
        for fd in (stdin_r, out_w, err_w):
            os.close(fd)
    if got is None:
        for fd in (stdin_w, out_r, err_r):
            if fd is not None:
                os.close(fd)
        return None
    zygote, pid, pidfd = got
    deadline = time.monotonic() + timeout
    data = input.encode() if input else b""
    open_fds = [fd for fd in (stdin_w, out_r, err_r) if fd is not None]
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(argv, timeout)
            writing = [stdin_w] if stdin_w in open_fds else []
            r, w, _ = select.select([fd for fd in open_fds if fd in chunks], writing, [], left)
            if w:
                try:
                    data = data[os.write(stdin_w, data[:65536]) :]
                except BrokenPipeError:
                    data = b""
                if not data:
                    os.close(stdin_w)
                    open_fds.remove(stdin_w)
            for fd in r:
                chunk = os.read(fd, 65536)
                if chunk:
                    chunks[fd].append(chunk)
                else:
                    os.close(fd)
                    open_fds.remove(fd)
        code = zygote.returncode(pid, max(deadline - time.monotonic(), 0.0))
        if code is None:
            raise subprocess.TimeoutExpired(argv, timeout)
    except subprocess.TimeoutExpired:
        try:
            (os.killpg if new_session else os.kill)(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        select.select([pidfd], [], [], 5.0)
        raise
    finally:
        for fd in open_fds:
            os.close(fd)
        os.close(pidfd)
    encoding = subprocess._text_encoding()
    stdout, stderr = (
        b"".join(chunks[fd]).decode(encoding).replace("\r\n", "\n").replace("\r", "\n")
        for fd in (out_r, err_r)
    )
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def call_in_child(path: str, calls: list, timeout_s: float = 60.0) -> list | None:
    """Make `calls` ([module, function, arguments as a Python literal tuple], ...) in a fresh interpreter with
    `path` first on sys.path, and return what each returned as `plain` data ({"value": ...} or {"error": name}),
    or None when the process gave no readable report (it crashed, exited early, ran past `timeout_s` or printed
    garbage). Only data crosses back: nothing the agent's code returns is ever called or compared as an object."""
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as cwd:
        try:
            r = run_python(
                [sys.executable or "python3", "-I", "-S", "-B", "-c", _CALLER, path],
                input=repr(calls),  # literals (strings): the child reads them without json
                cwd=cwd,
                timeout=timeout_s,
                new_session=True,
            )
        except subprocess.TimeoutExpired:
            return None
    lines = r.stdout.strip().splitlines()
    try:
        results = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    if not isinstance(results, list) or len(results) != len(calls):
        return None
    return results


def same_behaviour(path: str, timeout_s: float = 60.0, **groups: list) -> tuple[bool, str]:
    """Whether the code under `path` returns what it should for every case of every group (`hidden=[...],
    original=[...]`; a case is [module, function, arguments, expected `plain` value]); (all right, the first
    wrong call and its group, or why none could be judged). One fresh interpreter makes every call; the
    comparison runs here, on plain data, never in the process that imported the code."""
    cases = [(group, c) for group, items in groups.items() for c in items]
    got = call_in_child(path, [c[:3] for _, c in cases], timeout_s)
    if got is None:
        return False, "the code under test gave no readable results (it crashed, exited early or timed out)"
    for (group, (_, name, args, want)), result in zip(cases, got, strict=True):
        if not isinstance(result, dict) or result.get("value", _MISSING) != want:
            return False, f"the {group} tests fail: {name}{args} is wrong"
    return True, "every call returns what it should"


_MISSING = object()


# -- reading a free-text answer -----------------------------------------------------------------------------------
# The one normalizer of every verifier that reads an answer (README, "Answers"). A correct answer must never fail
# on its format: currency signs and codes, units, thousands separators, decimal commas and prose around it are
# all accepted. It must never pass on a hedge either: a number is read at one place only (the first after the
# answer marker, else after the last cue word), and a name passes only when it is the one candidate named.


_ANSWER_TAG = _re.compile(r"<answer>(.*?)</answer>", _re.IGNORECASE | _re.DOTALL)
_ANSWER_MARK = _re.compile(r"\banswer[ \t]*[:=][ \t]*", _re.IGNORECASE)
_NUMBER = _re.compile(
    r"(?<![\w.])[-+\u2212]?(?:\d{1,3}(?:[,'\u2019\u00a0\u202f ]\d{3})+(?:[.,]\d+)?|\d{1,3}(?:\.\d{3})+,\d+|\d{1,3}(?:\.\d{3}){2,}|\d+(?:[.,]\d+)?|[.,]\d+)"
)
_CUE = _re.compile(
    r"\b(?:is|are|was|were|equals?|totals?|comes? to|costs?|makes?|gives?|would be|will be|result)\b|[=:]",
    _re.IGNORECASE,
)
_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
).split()
_WORD_NUMBER = _re.compile(r"\b(" + "|".join(_WORDS) + r")\b", _re.IGNORECASE)
_ARTICLES = _re.compile(r"\b(?:the|a|an)\b")


def answer_text(answer) -> str:
    """The part of a free-text answer that is the answer: inside the last `<answer>...</answer>`, else the
    line after the first `ANSWER:` (or the block below it, where the line is empty), else the whole text."""
    text = "" if answer is None else str(answer)
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    mark = _ANSWER_MARK.search(text)
    if mark:
        rest = text[mark.end() :]
        line = rest.split("\n", 1)[0].strip()
        # "ANSWER:" alone on its line introduces a block (a list): up to the first blank line
        return line or rest.strip().split("\n\n", 1)[0].strip()
    return text.strip()


def _to_float(token: str) -> float | None:
    for mark in ("\u00a0", "\u202f", " ", "'", "\u2019"):
        token = token.replace(mark, "")
    token = token.replace("\u2212", "-")
    sign, digits = ("-" if token.startswith("-") else ""), token.lstrip("+-")
    if "," in digits and "." in digits:  # the later separator is the decimal one: 1,234.50 and 1.234,50
        thousands, decimal = (",", ".") if digits.rfind(",") < digits.rfind(".") else (".", ",")
        digits = digits.replace(thousands, "").replace(decimal, ".")
    else:
        sep = "," if "," in digits else "." if digits.count(".") > 1 else ""
        groups = digits.split(sep) if sep else [digits]
        if len(groups) > 1 and 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:]):
            digits = "".join(groups)  # 1,234 and 1.234.567 group thousands
        elif sep == "," and len(groups) == 2:
            digits = ".".join(groups)  # 47,89: a decimal comma
    try:
        return float(sign + digits)
    except ValueError:
        return None


def numbers_in(text: str) -> list[float]:
    """Every number written in `text`, in order (digits in any common format; the words zero to twenty)."""
    found = [(m.start(), _to_float(m.group())) for m in _NUMBER.finditer(text)]
    found += [(m.start(), float(_WORDS.index(m.group(1).lower()))) for m in _WORD_NUMBER.finditer(text)]
    return [v for _, v in sorted(found, key=lambda p: p[0]) if v is not None]


def answer_number(answer) -> float | None:
    """The number an answer gives: the first one after the answer marker (`ANSWER:` or `<answer>`); without a
    marker, the only value written, else the first number after the last cue word ("is", "total", "=", ...),
    else the first number."""
    text = answer_text(answer)
    marked = text != ("" if answer is None else str(answer)).strip()
    values = numbers_in(text)
    if not values:
        return None
    if marked or len(set(values)) == 1:
        return values[0]
    cues = list(_CUE.finditer(text))
    if cues:
        after = numbers_in(text[cues[-1].end() :])
        if after:
            return after[0]
    return values[0]


def same_number(given: float | None, expected: float, places: int = 2) -> bool:
    """Equal to `places` decimals (money to the cent); None never matches."""
    if given is None:
        return False
    return abs(round(given, places) - round(float(expected), places)) < 0.5 * 10**-places + 1e-9


_NORMALIZED: dict[str, str] = {}
"""normalize_text's results: a verifier normalizes the same names (every choice of a question) on every verify."""


def normalize_text(value) -> str:
    """A name or phrase compared the way a person reads it: case, accents of quotes, articles, punctuation and
    spacing do not count."""
    raw = "" if value is None else str(value)
    done = _NORMALIZED.get(raw)
    if done is not None:
        return done
    import unicodedata

    text = unicodedata.normalize("NFKD", raw)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = _ARTICLES.sub(" ", _re.sub(r"[^\w@.+-]+", " ", text).replace("_", " "))
    done = " ".join(text.split()).strip(" .")
    if len(_NORMALIZED) > 50_000:
        _NORMALIZED.clear()
    _NORMALIZED[raw] = done
    return done


def _mentions(text: str, name: str) -> bool:
    # the substring test first: most names a verifier tries are not in the answer at all
    return (
        bool(name)
        and name in text
        and _re.search(r"(?<!\w)" + _re.escape(name) + r"(?!\w)", text) is not None
    )


def same_answer(answer, expected, choices=None) -> bool:
    """Whether a free-text answer gives `expected`: a number (int/float, or text that is one number) by
    `answer_number`; a name by `normalize_text` equality, or, where the task lists the `choices` it could be,
    by naming `expected` and no other choice (so "It's Swift Orchard, at $12" passes and a list of every
    candidate does not)."""
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return same_number(answer_number(answer), expected)
    numeric = _NUMBER.fullmatch(str(expected).strip().strip("$\u20ac\u00a3\u00a5 "))
    if numeric:
        return same_number(answer_number(answer), _to_float(numeric.group()) or 0.0)
    want = normalize_text(expected)
    got = normalize_text(answer_text(answer))
    if got == want:
        return True
    if choices:
        named = {normalize_text(c) for c in choices if _mentions(got, normalize_text(c))}
        # a longer choice that contains the expected name ("Swift Orchard 45" vs "Swift Orchard 4") is not it
        named = {n for n in named if not any(n != m and _mentions(m, n) for m in named)}
        return named == {want}
    return False


def same_items(answer, expected: list) -> bool:
    """Whether an answer lists exactly the `expected` names (any order, separated by commas, semicolons, "and"
    or new lines)."""
    parts = _re.split(r"\s*(?:[,;\n]|\band\b|&)\s*", answer_text(answer))
    parts = [_re.sub(r"^(?:[-*\u2022]|\d+[.)])\s+", "", p) for p in parts]  # list bullets
    got = sorted(p for p in (normalize_text(x) for x in parts) if p)
    return got == sorted(normalize_text(x) for x in expected)
