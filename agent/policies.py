"""Policies behind one interface: an LLM behind any OpenAI-compatible server, an oracle that replays a task's
reference solution (with short generated reasoning, so cold-start data needs no model), and a random one.

A policy sees the conversation and the tool schemas and returns one assistant turn (`Turn`); the loop owns
everything else (budgets, errors, the environment).
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .messages import history_message
from .thinking import ThinkingContext


@dataclass
class Turn:
    """One assistant turn from a policy."""

    message: dict
    """The assistant message (content, reasoning_content, tool_calls)."""
    parse_errors: list[str] = field(default_factory=list)
    raw_text: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    context_strategy: str | None = None
    stop: str | None = None
    """Set when the policy cannot go on (e.g. "context_budget"): the loop ends the episode truncated."""
    model_s: float | None = None
    """Seconds spent waiting for the model server; the rest of the policy's time counts as loop overhead."""


class Policy(Protocol):
    name: str
    # A policy may set `trusted = True` when it is toolgym's own code, never a model's output; only trusted
    # policies may run with in-process env servers (tools on the host). Absent means untrusted.

    def start(self, task: Any) -> None:
        """A new episode of `task` (a TaskSpec) begins."""
        ...

    async def act(self, messages: list[dict], tools: list[dict]) -> Turn:
        """The next assistant turn for this conversation."""
        ...


class LLMPolicy:
    """A model behind an OpenAI-compatible server (`ChatClient` or `CompletionsClient`).

    The thinking context decides which earlier reasoning the model sees (DeepSeek-V3.2's rule by default) and
    applies the overflow strategy near the window.
    """

    def __init__(
        self,
        client,
        *,
        thinking: bool = True,
        context: ThinkingContext | None = None,
        name: str | None = None,
        **sampling: Any,
    ) -> None:
        self.client = client
        self.thinking = thinking
        self.context = context or ThinkingContext()
        self.sampling = sampling
        self.name = name or f"llm:{getattr(client, 'model', '?')}"

    def start(self, task: Any) -> None:
        self.context.reset()

    async def act(self, messages: list[dict], tools: list[dict]) -> Turn:
        view = self.context.build(messages, tools)
        if view.over_budget:
            return Turn(
                message={"role": "assistant", "content": ""},
                stop="context_budget",
                context_strategy=view.strategy_applied,
            )
        started = time.perf_counter()
        completion = await self.client.complete(view.messages, tools, thinking=self.thinking, **self.sampling)
        model_s = time.perf_counter() - started
        # A client's failures (ModelServerError: timeouts, 5xx, garbage answers, context overflow) propagate:
        # the loop records their kind and ends the episode. What comes back is clean (the encodings' parse).
        errors = list(completion.message.get("parse_errors") or [])
        usage = completion.usage if isinstance(completion.usage, dict) else {}
        return Turn(
            message=history_message(completion.message),
            parse_errors=errors,
            raw_text=completion.text,
            prompt_tokens=_tokens(usage.get("prompt_tokens")),
            completion_tokens=_tokens(usage.get("completion_tokens")),
            context_strategy=view.strategy_applied,
            model_s=model_s,
        )


def _tokens(value: Any) -> int:
    """A server's token count, or 0 when it sent something that is not one."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _describe(name: str, args: dict, tools: list[dict]) -> str:
    """One sentence of plan before a call: the tool's own description says what it is for. Short arguments are
    named with their values; a long one (code, a document) only by its name and size, since the call itself
    carries it and a model trained on this writes every token of it twice otherwise."""
    description = ""
    for tool in tools:
        fn = tool.get("function", tool)
        if fn.get("name") == name:
            description = (fn.get("description") or "").strip().split("\n")[0].rstrip(".")
    description = re.split(r"\. |; | \(", description, maxsplit=1)[0][:100].rstrip(".")
    shown = []
    for k, v in args.items():
        text = json.dumps(v, ensure_ascii=False)
        if len(text) <= 60:
            shown.append(f"{k}={text}")
        elif isinstance(v, str):
            lines = v.count("\n") + 1
            shown.append(
                f"{k} ({lines} line{'s' if lines > 1 else ''})" if lines > 1 else f"{k} ({len(v)} characters)"
            )
        else:
            shown.append(f"{k} ({len(v) if hasattr(v, '__len__') else 1} items)")
    why = f" ({description[:1].lower() + description[1:]})" if description else ""
    return f"Next I call {name}{why} with {', '.join(shown) or 'no arguments'}."


class OraclePolicy:
    """Replays the task's reference solution one call per step, each after a short generated reasoning; in a
    multi-turn task, each user turn's reference calls in that turn, then its reference answer."""

    name = "oracle"
    trusted = True
    """toolgym's own code, not a model's: it may run with in-process env servers."""

    def __init__(self, reasoning: bool = True) -> None:
        self.reasoning = reasoning
        self._turns: list[tuple[list[dict], str | None]] = []
        self._turn = 0
        self._step = 0

    def start(self, task: Any) -> None:
        if hasattr(task, "turn_list"):
            single = getattr(task, "turns", None) is None
            # A single-turn task's later user turns get its answer again, as before turns existed.
            self._turns = [
                (
                    [c.model_dump() for c in t.solution],
                    t.answer if t.answer is not None or not single else task.answer,
                )
                for t in task.turn_list()
            ]
        else:  # a plain object with a solution and an answer
            calls = [c.model_dump() if hasattr(c, "model_dump") else dict(c) for c in task.solution]
            self._turns = [(calls, getattr(task, "answer", None))]
        self._turn = 0
        self._step = 0

    async def act(self, messages: list[dict], tools: list[dict]) -> Turn:
        calls, answer = self._turns[min(self._turn, len(self._turns) - 1)]
        if self._step < len(calls):
            call = calls[self._step]
            args = call.get("arguments") or {}
            if isinstance(args, str):
                args = json.loads(args)
            self._step += 1
            msg = {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": f"call_{self._step}",
                        "type": "function",
                        "function": {"name": call["name"], "arguments": json.dumps(args, ensure_ascii=False)},
                    }
                ],
            }
            if self.reasoning:
                msg["reasoning_content"] = _describe(call["name"], args, tools)
            return Turn(message=msg)
        self._turn += 1  # the answer ends this user turn
        self._step = 0
        msg = {"role": "assistant", "content": answer or ""}
        if self.reasoning:
            msg["reasoning_content"] = "I have what I need; here is the answer."
        return Turn(message=msg)


class GiveUpPolicy:
    """Answers at once without a tool call: the do-nothing floor, which must score 0 on every task."""

    name = "give_up"
    trusted = True
    """toolgym's own code, not a model's: it may run with in-process env servers."""

    def __init__(self, answer: str = "I could not do that.") -> None:
        self.answer = answer

    def start(self, task: Any) -> None:
        pass

    async def act(self, messages: list[dict], tools: list[dict]) -> Turn:
        return Turn(message={"role": "assistant", "content": self.answer})


class RandomPolicy:
    """Random tools with arguments drawn from their schemas: the floor every task must stay above."""

    name = "random"
    trusted = True
    """toolgym's own code, not a model's: it may run with in-process env servers."""

    def __init__(self, seed: int = 0, max_calls: int = 5) -> None:
        self.seed = seed
        self.max_calls = max_calls
        self.rng = random.Random(seed)
        self._made = 0

    def start(self, task: Any) -> None:
        # Seeded per task, so the same task gets the same random episode in any order or process.
        self.rng = random.Random(f"{self.seed}:{getattr(task, 'id', '')}")
        self._made = 0

    def _value(self, schema: dict) -> Any:
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = self.rng.choice(kind)
        if kind == "integer":
            return self.rng.randint(0, 20)
        if kind == "number":
            return round(self.rng.uniform(0, 100), 2)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "array":
            return [
                self._value(schema.get("items", {"type": "string"})) for _ in range(self.rng.randint(0, 2))
            ]
        if kind == "object":
            return {k: self._value(v) for k, v in (schema.get("properties") or {}).items()}
        return self.rng.choice(["a", "test", "1", "Paris", "x" * 3])

    def script(self, task: Any, tools: list[dict]) -> tuple[list[dict], str]:
        """A whole episode at once: its calls ({"name", "arguments"} each) and its final answer. The same as
        acting turn by turn, since this policy never reads what the tools return."""
        self.start(task)
        calls = []
        while True:
            msg = self._next(tools)
            if not msg.get("tool_calls"):
                return calls, msg["content"]
            calls.append(dict(msg["tool_calls"][0]["function"]))

    async def act(self, messages: list[dict], tools: list[dict]) -> Turn:
        return Turn(message=self._next(tools))

    def _next(self, tools: list[dict]) -> dict:
        if self._made >= self.max_calls or not tools:
            return {"role": "assistant", "content": self.rng.choice(["done", "42", ""])}
        self._made += 1
        fn = self.rng.choice(tools).get("function", {})
        params = fn.get("parameters") or {}
        args = {
            k: self._value(v)
            for k, v in (params.get("properties") or {}).items()
            if k in (params.get("required") or []) or self.rng.random() < 0.5
        }
        return {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": f"call_{self._made}",
                    "type": "function",
                    "function": {"name": fn.get("name", ""), "arguments": json.dumps(args)},
                }
            ],
        }
