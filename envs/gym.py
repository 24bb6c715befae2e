"""`ToolEnv`: one environment as a gymnasium.Env whose actions are assistant messages and whose tools run in a
sandbox through the env server.

Observation: the conversation so far as text (raw messages in `info["messages"]`). Action: an assistant message
dict (OpenAI format) or raw model text turned into one by an injected `parser`. Reward: the task's verifier at
termination (submit tool called, or an answer without tool calls after the last user turn).
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import gymnasium
from gymnasium import spaces
from toolgym.sandbox import BlockingSandboxPool, Limits, Sandbox, SandboxError, SandboxPool
from toolgym.sandbox.backend import Backend

from .lease import EnvLease, InProcess, runs_agent_code
from .messages import Message, assistant_action
from .runtime import EnvRuntimeError, EnvServerOps, episode_start
from .spec import EnvSpec, TaskSpec, TurnSpec, load_env_spec, load_tasks

MAX_OBSERVATION_CHARS = 10_000_000
MAX_ARGUMENT_CHARS = 1_000_000
"""The most characters of arguments one tool call carries to the env server; past it the agent gets an
`Error:` message and nothing is sent."""


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


class ToolResult(TypedDict):
    """How one tool call of a step went."""

    name: str
    ok: bool
    error_kind: str | None
    """unknown_tool, invalid_arguments or tool_error when not ok (see the env server)."""


class StepInfo(TypedDict, total=False):
    """What `ToolEnv.reset` and `ToolEnv.step` return as `info` (a dict, as gymnasium wants)."""

    messages: list[Message]
    """The conversation so far (a copy), in the env's view: system, user turns, assistant turns, tool results."""
    tools: list[dict]
    """The environment's tool schemas in OpenAI form."""
    env_id: str
    task_id: str | None
    steps: int
    """Assistant turns taken so far."""
    tool_results: list[ToolResult]
    """This step's calls, in order (step only)."""
    verdict: dict
    """The verifier's {"reward", "reason"} (step only, when the episode terminated)."""
    answer: Any
    """The answer that was verified: the submit tool's, or the final assistant text (with `verdict`)."""
    parse_error: str
    """Raw text the env's `parser` could not read (step only)."""
    env_error: str
    """The env server itself failed; the episode ends truncated with reward 0 (step only)."""


class ToolEnv(gymnasium.Env):
    """One environment (a folder of the env store) and its tasks; each episode's tools run where its `EnvLease`
    says (a sandbox from a pool, a given sandbox, one opened on `backend`, or `IN_PROCESS` for trusted actions).

    Pass `lease=` to share one lease between environments (a rollout worker does), or the lease's own
    arguments (`backend`, `pool`, `sandbox`, `limits`, `transport`; see `EnvLease`) to get one of its own."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        env_dir: str | Path,
        tasks: list[TaskSpec] | None = None,
        *,
        backend: str | Backend | InProcess = "auto",
        pool: SandboxPool | BlockingSandboxPool | None = None,
        sandbox: Sandbox | None = None,
        limits: Limits | None = None,
        parser: Callable[[str], dict] | None = None,
        max_steps: int | None = None,
        render_mode: str | None = None,
        transport: str = "auto",
        user: Any = None,
        lease: EnvLease | None = None,
    ) -> None:
        self.user = user
        """A simulated user (`reply(messages, task) -> str | None`) who talks on after the scripted turns."""
        self.env_dir = Path(env_dir).resolve()
        self.env_spec: EnvSpec = load_env_spec(self.env_dir)
        self.tasks = sorted(tasks if tasks is not None else load_tasks(self.env_dir), key=lambda t: t.id)
        if not self.tasks:
            raise ValueError(f"environment {self.env_spec.id} has no tasks; pass tasks= or add a tasks.jsonl")
        self._own_lease = lease is None
        self.lease = lease or EnvLease(
            backend=backend, pool=pool, sandbox=sandbox, limits=limits, transport=transport
        )
        self.parser = parser
        self.max_steps = max_steps or self.env_spec.limits.max_steps
        self.render_mode = render_mode
        self._tools = self.env_spec.openai_tools()
        self.observation_space = ConversationText()
        self.action_space = AssistantMessageSpace()
        self._server: EnvServerOps | None = None
        self.task: TaskSpec | None = None
        self.messages: list[dict] = []
        self._turn = 0
        """User turns begun so far (the current one is `_turns[_turn - 1]`)."""
        self._turns: list[TurnSpec] = []
        self._turn_steps = 0
        self._steps = 0
        self._done = False
        self.last_verdict: dict | None = None

    @property
    def env_id(self) -> str:
        return self.env_spec.id

    @property
    def runs_agent_code(self) -> bool:
        """Agent code runs in the sandbox (code, code_interpreter): the env store must not be visible to it."""
        return runs_agent_code(self.env_spec)

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

    def _start(self, server: EnvServerOps, task: TaskSpec) -> tuple[str, StepInfo]:
        self._server = server
        server.reset(episode_start(task))
        self.task = task
        self._turns = task.turn_list()
        self.messages = [{"role": "system", "content": self.env_spec.description}]
        self._turn, self._steps, self._done = 0, 0, False
        self._begin_turn(self._turns[0])
        self.last_verdict = None
        return self._obs(), self._info()

    def _begin_turn(self, turn: TurnSpec) -> None:
        """The user's next turn: its messages join the conversation and its tools become the agent's."""
        self.messages += turn.messages()
        self._turn += 1
        self._turn_steps = 0
        tools = self.env_spec.openai_tools()
        if turn.tools is not None:
            tools = [t for t in tools if t["function"]["name"] in set(turn.tools)]
        self._tools = tools

    def _next_turn(self, answer: Any) -> None:
        turn = self._turns[self._turn]
        self._server.next_turn(answer, turn.tools)
        self._begin_turn(turn)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, StepInfo]:
        super().reset(seed=seed)
        task = self._pick_task(seed, options)
        return self._start(self.lease.open(self.env_dir, self.env_spec), task)

    def _obs(self) -> str:
        return render_text(self.messages)

    def _info(self, **extra) -> StepInfo:
        return {
            "messages": [dict(m) for m in self.messages],
            "tools": self._tools,
            "env_id": self.env_id,
            "task_id": self.task.id if self.task else None,
            "steps": self._steps,
            **extra,
        }

    def _message(self, action: Any) -> tuple[Message, str | None]:
        """The action as an assistant message, and a parse error when raw text could not be parsed."""
        if isinstance(action, str):
            if self.parser is None:
                return {"role": "assistant", "content": action, "tool_calls": []}, None
            try:
                action = self.parser(action)
            except Exception as exc:  # noqa: BLE001 - malformed model output is the model's problem
                return {
                    "role": "assistant",
                    "content": action,
                    "tool_calls": [],
                }, f"{type(exc).__name__}: {exc}"
        if not isinstance(action, dict):
            raise TypeError(
                f"an action is an assistant message dict or a string, not {type(action).__name__}"
            )
        return assistant_action(action, self._steps), None

    def step(self, action: Any) -> tuple[str, float, bool, bool, StepInfo]:
        if self.task is None or self._server is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            raise RuntimeError("the episode has ended; call reset() to start another")
        self._steps += 1
        msg, parse_error = self._message(action)
        self.messages.append(msg)
        results: list[ToolResult] = []
        extra: dict[str, Any] = {"tool_results": results}
        if parse_error:
            extra["parse_error"] = parse_error
        try:
            self._turn_steps += 1
            terminated, answer = self._act(msg, results)
            budget = self._turns[self._turn - 1].max_steps
            if not terminated and msg["tool_calls"] and budget is not None and self._turn_steps >= budget:
                # The turn's step budget is spent: the user moves on (or, after the last turn, it is judged).
                if self._turn < len(self._turns):
                    self._next_turn(None)
                else:
                    terminated, answer = True, None
            reward = 0.0
            if terminated:
                self.last_verdict = self._server.verify(self.task.verifier, self.task.verify_params(), answer)
                reward = float(self.last_verdict["reward"])
                extra["verdict"] = self.last_verdict
                extra["answer"] = answer
        except (EnvRuntimeError, SandboxError) as exc:
            # The env server or its sandbox died (e.g. agent code killed it): the episode cannot go on; it ends
            # truncated with reward 0 and the reason, and the lease replaces the sandbox before the next one.
            # Whose failure it is depends on whether agent code ran there (the rollout runner decides).
            self.lease.server_failed()
            self._server = None
            self._done = True
            return self._obs(), 0.0, False, True, self._info(env_error=str(exc), **extra)
        truncated = not terminated and self._steps >= self.max_steps
        self._done = terminated or truncated
        return self._obs(), reward, terminated, truncated, self._info(**extra)

    def _act(self, msg: Message, results: list[ToolResult]) -> tuple[bool, Any]:
        """Run the message's tool calls in order, or move to the next user turn; (terminated, answer)."""
        if not msg["tool_calls"]:
            if self._turn < len(self._turns):
                self._next_turn(msg["content"])
                return False, None
            if self.user is not None:
                text = self.user.reply([dict(m) for m in self.messages], self.task)
                if text:
                    # A turn of its own for the env server too, as rescoring splits the recorded conversation.
                    self._server.next_turn(msg["content"], self._turns[-1].tools)
                    self.messages.append({"role": "user", "content": text})
                    self._turn_steps = 0
                    return False, None
            return True, msg["content"]
        self.lease.agent_code_runs()
        terminated, answer = False, None
        for call in msg["tool_calls"]:
            name = call["function"]["name"]
            if terminated:  # calls after the submit are not run: the episode is over
                content = "Error: not run: the episode ended with the submit call before it."
                results.append({"name": name, "ok": False, "error_kind": "tool_error"})
            elif len(call["function"]["arguments"]) > MAX_ARGUMENT_CHARS:
                content = (
                    f"Error: the arguments of {name} are {len(call['function']['arguments']):,} characters, over "
                    f"the limit of {MAX_ARGUMENT_CHARS:,}; send less (write large content in several calls)."
                )
                results.append({"name": name, "ok": False, "error_kind": "invalid_arguments"})
            else:
                reply = self._server.call(name, call["function"]["arguments"])
                content = reply["content"]
                results.append({"name": name, "ok": reply["ok"], "error_kind": reply.get("error_kind")})
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
        """End the episode; a lease of this env's own is closed, a shared one is left to its owner."""
        self._server = None
        if self._own_lease:
            self.lease.close()
        super().close()

    # -- asyncio twins for the rollout runner ----------------------------------------------------------
    async def areset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, StepInfo]:
        gymnasium.Env.reset(self, seed=seed)
        task = self._pick_task(seed, options)
        server = await self.lease.aopen(self.env_dir, self.env_spec)
        return await asyncio.to_thread(self._start, server, task)

    async def astep(self, action: Any) -> tuple[str, float, bool, bool, StepInfo]:
        return await asyncio.to_thread(self.step, action)

    async def aclose(self) -> None:
        self._server = None
        if self._own_lease:
            await self.lease.aclose()
        super().close()
