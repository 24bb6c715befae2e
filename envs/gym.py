"""`ToolEnv`: one environment as a gymnasium.Env whose actions are assistant messages and whose tools run in a
sandbox through the env server.

Observation: the conversation so far as text (raw messages in `info["messages"]`). Action: an assistant message
dict (OpenAI format) or raw model text turned into one by an injected `parser`. Reward: the task's verifier at
termination (submit tool called, or an answer without tool calls after the last user turn).
"""

from __future__ import annotations

import asyncio
import json
import string
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
from gymnasium import spaces
from toolgym.sandbox import BlockingSandboxPool, Limits, Sandbox, SandboxPool, open_sandbox
from toolgym.sandbox.backend import Backend

from .inside.envserver import FILE_CATEGORIES
from .runtime import (
    EnvRuntimeError,
    EnvServerHandle,
    EnvServerOps,
    LocalEnvServer,
    mounted_path,
    sandbox_mounts,
)
from .spec import EnvSpec, TaskSpec, load_env_spec, load_tasks

MAX_OBSERVATION_CHARS = 10_000_000


class ConversationText(spaces.Text):
    """A Text space that holds any string up to `max_length`: conversations contain any Unicode character,
    which a finite `charset` cannot list (samples still draw from printable ASCII)."""

    def __init__(self, max_length: int = MAX_OBSERVATION_CHARS) -> None:
        super().__init__(max_length, min_length=0, charset=string.printable)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length


class AssistantMessageSpace(spaces.Space):
    """Actions: `{"content": str, "tool_calls": [{"id", "type": "function", "function": {"name", "arguments"}}]}`
    or a string (raw model text, parsed by the env's parser)."""

    def __init__(self, seed: int | None = None) -> None:
        super().__init__(None, None, seed)

    def contains(self, x: Any) -> bool:
        if isinstance(x, str):
            return True
        if not isinstance(x, dict) or not isinstance(x.get("content") or "", str):
            return False
        calls = x.get("tool_calls") or []
        return isinstance(calls, list) and all(isinstance(c, dict) for c in calls)

    def sample(self, mask: Any = None, probability: Any = None) -> dict:
        """A plain answer without tool calls (random printable text)."""
        n = int(self.np_random.integers(1, 40))
        chars = self.np_random.choice(list(string.ascii_letters + " "), n)
        return {"role": "assistant", "content": "".join(chars), "tool_calls": []}

    @property
    def is_np_flattenable(self) -> bool:
        return False


def render_text(messages: list[dict]) -> str:
    """The conversation as one text: a header per message, tool calls as JSON lines."""
    parts = []
    for m in messages:
        role = m["role"]
        header = f"[{role}]" if role != "tool" else f"[tool {m.get('name', '')}]"
        body = m.get("content") or ""
        for call in m.get("tool_calls") or []:
            fn = call.get("function", {})
            body += f"\n<tool_call> {fn.get('name')} {fn.get('arguments')}"
        parts.append(f"{header}\n{body}".rstrip())
    return "\n\n".join(parts)


def _normalize(action: Any, step: int, parser: Callable[[str], dict] | None) -> tuple[dict, str | None]:
    """An assistant message in OpenAI format, and a parse error when raw text could not be parsed."""
    if isinstance(action, str):
        if parser is None:
            return {"role": "assistant", "content": action, "tool_calls": []}, None
        try:
            action = parser(action)
        except Exception as exc:  # noqa: BLE001 - malformed model output is the model's problem, not a crash
            return {"role": "assistant", "content": action, "tool_calls": []}, f"{type(exc).__name__}: {exc}"
    if not isinstance(action, dict):
        raise TypeError(f"an action is an assistant message dict or a string, not {type(action).__name__}")
    msg = {"role": "assistant", "content": action.get("content") or ""}
    if action.get("reasoning_content"):
        msg["reasoning_content"] = action["reasoning_content"]
    calls = []
    raw_calls = action.get("tool_calls") or []
    for i, call in enumerate(raw_calls if isinstance(raw_calls, list) else [raw_calls]):
        # A malformed call still becomes a call (with an empty name or odd arguments), so the env server
        # answers it with a tool error the model can read, instead of the episode crashing.
        call = call if isinstance(call, dict) else {}
        fn = call.get("function")
        if not isinstance(fn, dict):
            fn = {"name": call.get("name"), "arguments": call.get("arguments", {})}
        args = fn.get("arguments", "{}")
        if not isinstance(args, str):
            try:
                args = json.dumps(args)
            except (TypeError, ValueError):
                args = str(args)
        calls.append(
            {
                "id": call.get("id") or f"call_{step}_{i}",
                "type": "function",
                "function": {
                    "name": str(fn.get("name") or ""),
                    "arguments": args,
                },
            }
        )
    msg["tool_calls"] = calls
    return msg, None


def _others_can_read(env_dir: Path) -> bool:
    """Whether users other than the owner can read the env folder's files (what a read-only mount needs)."""
    paths = [env_dir, *env_dir.rglob("*")]
    return all(p.stat().st_mode & (0o005 if p.is_dir() else 0o004) for p in paths)


class ToolEnv(gymnasium.Env):
    """One environment (a folder of the env store) and its tasks, run in a sandbox.

    Sandboxes: pass `pool=` (a BlockingSandboxPool, or a SandboxPool with areset/astep), or `sandbox=`, or let
    it open its own on `backend` (default). `backend="inprocess"` runs the env server in this process with no
    sandbox at all: for trusted actions only (reference solutions, baselines), never for a model. `transport`: "push" sends the environment's files into the sandbox,
    "mount" reads them from a mounted store (`mounts=toolgym.envs.sandbox_mounts()`), "auto" mounts where the
    store is mounted and the agent runs no code (general, search), and pushes otherwise."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        env_dir: str | Path,
        tasks: list[TaskSpec] | None = None,
        *,
        backend: str | Backend = "auto",
        pool: SandboxPool | BlockingSandboxPool | None = None,
        sandbox: Sandbox | None = None,
        limits: Limits | None = None,
        parser: Callable[[str], dict] | None = None,
        max_steps: int | None = None,
        render_mode: str | None = None,
        transport: str = "auto",
        user: Any = None,
    ) -> None:
        if transport not in ("auto", "mount", "push"):
            raise ValueError(f"transport must be 'auto', 'mount' or 'push', not {transport!r}")
        self.transport = transport
        self.user = user
        """A simulated user (`reply(messages, task) -> str | None`) who talks on after the scripted turns."""
        self.env_dir = Path(env_dir).resolve()
        self.env_spec: EnvSpec = load_env_spec(self.env_dir)
        self.tasks = sorted(tasks if tasks is not None else load_tasks(self.env_dir), key=lambda t: t.id)
        if not self.tasks:
            raise ValueError(f"environment {self.env_spec.id} has no tasks; pass tasks= or add a tasks.jsonl")
        self.backend = backend
        self.pool = pool
        self.limits = limits or Limits(memory_mb=512, timeout_s=30)
        self.parser = parser
        self.max_steps = max_steps or self.env_spec.limits.max_steps
        self.render_mode = render_mode
        self._tools = self.env_spec.openai_tools()
        self.observation_space = ConversationText()
        self.action_space = AssistantMessageSpace()
        self._given_sandbox = sandbox
        self._own_sandbox: Sandbox | None = None
        self._leased: Sandbox | None = None
        self._server: EnvServerOps | None = None
        self._server_sandbox: Sandbox | None = None
        self.task: TaskSpec | None = None
        self.messages: list[dict] = []
        self._turn = 0
        self._steps = 0
        self._done = False
        self.last_verdict: dict | None = None
        self._results: list[dict] = []
        """This step's calls: {"name", "ok", "error_kind"} each, in order (`info["tool_results"]`)."""

    # -- sandboxes -------------------------------------------------------------------------------------
    @property
    def env_id(self) -> str:
        return self.env_spec.id

    @property
    def runs_agent_code(self) -> bool:
        """Agent code runs in the sandbox (code, code_interpreter): the env store must not be visible to it."""
        return self.env_spec.category in FILE_CATEGORIES

    def _mounts(self) -> dict[str, str]:
        if self.transport == "push" or (self.transport == "auto" and self.runs_agent_code):
            return {}
        return sandbox_mounts([self.env_dir.parent])

    def _sandbox_sync(self) -> Sandbox:
        if self._given_sandbox is not None:
            return self._given_sandbox
        if isinstance(self.pool, BlockingSandboxPool):
            if self._reusable(self._leased):
                return self._leased
            self._release_sync()
            self._leased = self.pool.acquire()
            return self._leased
        if isinstance(self.pool, SandboxPool):
            raise TypeError(
                "ToolEnv with an asyncio SandboxPool must use `await env.areset(...)`; "
                "use a BlockingSandboxPool for reset()"
            )
        if self._own_sandbox is None or self._own_sandbox.closed:
            self._own_sandbox = open_sandbox(self.backend, self.limits, mounts=self._mounts())
        elif self._own_sandbox.tainted:  # agent code ran: a verified reset before the next episode
            self._drop_server(close=False)
            self._own_sandbox.reset()
        return self._own_sandbox

    @staticmethod
    def _reusable(sb: Sandbox | None) -> bool:
        """A leased sandbox may serve the next episode as is when no agent code ran in it: the env server's own
        reset restores the state, and keeping it saves starting a new server (tens of ms)."""
        return sb is not None and not sb.closed and not sb.tainted

    def take_over(self, other: ToolEnv) -> bool:
        """Continue in `other`'s leased sandbox and env-server session instead of leasing a new one: the session
        loads this environment in place of `other`'s (see `EnvServerHandle.load`). Only where no agent code ran
        there and none will here (general, search), so nothing in the sandbox is untrusted; False, and nothing
        taken, otherwise. `other` is left holding nothing."""
        if (
            self.pool is None
            or other.pool is not self.pool
            or self._leased is not None
            or self.runs_agent_code
            or other.runs_agent_code
            or not self._reusable(other._leased)
            or not isinstance(other._server, EnvServerHandle)
            or other._server_sandbox is not other._leased
        ):
            return False
        self._leased, other._leased = other._leased, None
        self._server, other._server = other._server, None
        self._server_sandbox, other._server_sandbox = other._server_sandbox, None
        return True

    def _release_sync(self) -> None:
        if self._leased is not None and isinstance(self.pool, BlockingSandboxPool):
            sb, self._leased = self._leased, None
            self._drop_server(close=False)
            self.pool.release(sb)

    def _drop_server(self, close: bool = True) -> None:
        """Forget the env server; `close=False` when the sandbox is about to be reset (that ends it anyway)."""
        if self._server is not None and close:
            self._server.close()
        self._server = None
        self._server_sandbox = None

    def _sandbox_mounts(self) -> dict[str, str]:
        """The mounts of the sandboxes we run in (a given sandbox is assumed to have none)."""
        if self.pool is not None:
            inner = self.pool.pool if isinstance(self.pool, BlockingSandboxPool) else self.pool
            return inner.mounts or {}
        return self._mounts() if self._given_sandbox is None else {}

    def _env_path(self) -> str | None:
        """Where the env folder is mounted in the sandbox, or None to push its files."""
        mounts = self._sandbox_mounts()
        path = mounted_path(self.env_dir, mounts)
        if self.transport == "mount" and path is None:
            raise EnvRuntimeError(
                f"the environment {self.env_dir} is in no store mounted in the sandbox; create the pool with "
                f"mounts=toolgym.envs.sandbox_mounts([{str(self.env_dir.parent)!r}]) or use transport='push'"
            )
        if self.runs_agent_code and mounts:
            warnings.warn(
                f"{self.env_id} runs agent code in sandboxes that mount an env store: the agent can read its "
                "verify.py and tasks; use a pool without mounts for code and code_interpreter environments",
                stacklevel=3,
            )
        if self.transport == "push" or (self.transport == "auto" and self.runs_agent_code):
            return None
        if path is not None and not _others_can_read(self.env_dir):
            # The sandbox user (uid 1000) reads the mount; a private store can only be pushed.
            if self.transport == "mount":
                raise EnvRuntimeError(
                    f"the sandbox user cannot read {self.env_dir}; run `chmod -R a+rX {self.env_dir.parent}` "
                    "or use transport='push'"
                )
            return None
        return path

    def _server_on(self, sb: Sandbox | None) -> EnvServerOps:
        if self.backend == "inprocess":
            if self._server is None:
                self._server = LocalEnvServer(self.env_dir, self.env_spec.limits.call_timeout_s)
            return self._server
        if self._server is None or self._server_sandbox is not sb:
            self._drop_server()
            timeout = self.env_spec.limits.call_timeout_s
            self._server = EnvServerHandle(sb, self.env_dir, self._env_path(), timeout)
            self._server_sandbox = sb
        elif self._server.env_dir != self.env_dir:  # taken over from another environment's ToolEnv
            self._server.load(self.env_dir, self._env_path(), self.env_spec.limits.call_timeout_s)
        return self._server

    # -- episode ---------------------------------------------------------------------------------------
    def _pick_task(self, seed: int | None, options: dict | None) -> TaskSpec:
        task_id = (options or {}).get("task_id")
        if task_id is not None:
            for t in self.tasks:
                if t.id == task_id:
                    return t
            raise ValueError(
                f"environment {self.env_id} has no task {task_id!r}; see `toolgym envs show {self.env_id}`"
            )
        index = seed if seed is not None else int(self.np_random.integers(len(self.tasks)))
        return self.tasks[index % len(self.tasks)]

    def _start(self, sb: Sandbox, task: TaskSpec) -> tuple[str, dict]:
        server = self._server_on(sb)
        server.reset({"id": task.id})
        self.task = task
        self.messages = [
            {"role": "system", "content": self.env_spec.description},
            {"role": "user", "content": task.prompt[0]},
        ]
        self._turn, self._steps, self._done = 1, 0, False
        self.last_verdict = None
        return self._obs(), self._info()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        task = self._pick_task(seed, options)
        return self._start(None if self.backend == "inprocess" else self._sandbox_sync(), task)

    def _obs(self) -> str:
        return render_text(self.messages)

    def _info(self, **extra) -> dict:
        return {
            "messages": [dict(m) for m in self.messages],
            "tools": self._tools,
            "env_id": self.env_id,
            "task_id": self.task.id if self.task else None,
            "steps": self._steps,
            **extra,
        }

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        if self.task is None or self._server is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode has ended; call reset() to start another")
        self._steps += 1
        msg, parse_error = _normalize(action, self._steps, self.parser)
        self.messages.append(msg)
        self._results = []
        extra: dict[str, Any] = {}
        if parse_error:
            extra["parse_error"] = parse_error
        try:
            terminated, answer = self._act(msg)
            reward = 0.0
            if terminated:
                self.last_verdict = self._server.verify(self.task.verifier, self.task.params, answer)
                reward = float(self.last_verdict["reward"])
                extra["verdict"] = self.last_verdict
                extra["answer"] = answer
        except EnvRuntimeError as exc:
            # The env server itself died (e.g. agent code killed it): the episode cannot go on; it ends
            # truncated with reward 0 and the reason, and the next reset starts a new server.
            self._drop_server()
            self._done = True
            return (
                self._obs(),
                0.0,
                False,
                True,
                self._info(env_error=str(exc), tool_results=self._results, **extra),
            )
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        return self._obs(), reward, terminated, truncated, self._info(tool_results=self._results, **extra)

    def _act(self, msg: dict) -> tuple[bool, Any]:
        """Run the message's tool calls in order, or move to the next user turn; (terminated, answer)."""
        if not msg["tool_calls"]:
            if self._turn < len(self.task.prompt):
                self.messages.append({"role": "user", "content": self.task.prompt[self._turn]})
                self._turn += 1
                return False, None
            if self.user is not None:
                text = self.user.reply([dict(m) for m in self.messages], self.task)
                if text:
                    self.messages.append({"role": "user", "content": text})
                    return False, None
            return True, msg["content"]
        if self.runs_agent_code and self._server_sandbox is not None:
            self._server_sandbox.tainted = True  # agent code runs through the tools: the pool must know
        terminated, answer = False, None
        for call in msg["tool_calls"]:
            name = call["function"]["name"]
            if terminated:  # calls after the submit are not run: the episode is over
                content = "Error: not run: the episode ended with the submit call before it."
                self._results.append({"name": name, "ok": False, "error_kind": "tool_error"})
            else:
                reply = self._server.call(name, call["function"]["arguments"])
                content = reply["content"]
                self._results.append({"name": name, "ok": reply["ok"], "error_kind": reply.get("error_kind")})
                if reply.get("submitted"):
                    terminated, answer = True, reply.get("answer")
            self.messages.append(
                {"role": "tool", "tool_call_id": call["id"], "name": name, "content": content}
            )
        return terminated, answer

    def state_hash(self) -> str:
        """sha256 of the episode's current state (SQLite dump and files): equal states, equal hashes."""
        if self._server is None:
            raise RuntimeError("call reset() first")
        return self._server.state_hash()

    def call_log(self) -> list[dict]:
        """The env server's log of this episode's tool calls (name, arguments, ok, digest)."""
        return self._server.log()["calls"] if self._server else []

    def render(self) -> str | None:
        return self._obs() if self.render_mode == "ansi" else None

    def close(self) -> None:
        self._drop_server()
        self._release_sync()
        if self._own_sandbox is not None:
            self._own_sandbox.close()
            self._own_sandbox = None
        super().close()

    # -- asyncio twins for the rollout runner ----------------------------------------------------------
    async def areset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        if not isinstance(self.pool, SandboxPool):
            return await asyncio.to_thread(self.reset, seed=seed, options=options)
        gymnasium.Env.reset(self, seed=seed)
        task = self._pick_task(seed, options)
        if not self._reusable(self._leased):
            await self._arelease()
            self._leased = await self.pool.acquire()
        return await asyncio.to_thread(self._start, self._leased, task)

    async def astep(self, action: Any) -> tuple[str, float, bool, bool, dict]:
        return await asyncio.to_thread(self.step, action)

    async def _arelease(self) -> None:
        if self._leased is not None and isinstance(self.pool, SandboxPool):
            sb, self._leased = self._leased, None
            self._drop_server(close=False)
            await self.pool.release(sb)

    async def aclose(self) -> None:
        await self._arelease()
        await asyncio.to_thread(self.close)
