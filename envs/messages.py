"""Chat messages and tool calls: the one message model of envs and agent.

Messages are plain dicts in the OpenAI chat format plus `reasoning_content` on assistant turns; a tool call is
a `ToolCall` (name + arguments: what a task's solution holds) whose wire form in a message is a
`ToolCallDict`. `normalize_messages` (and `assistant_action` for the lenient path an environment takes from a
policy) is the one place that turns messages from any source into them. `toolgym.agent` re-exports all of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool")


class FunctionCall(TypedDict):
    name: str
    arguments: str
    """The arguments as a JSON string (the OpenAI wire form), normally a JSON object."""


class ToolCallDict(TypedDict):
    """A tool call as it travels in an assistant message (the OpenAI wire form)."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class ToolCall(BaseModel):
    """A call of a tool by name with its arguments: a task's reference solution is a list of these."""

    model_config = ConfigDict(extra="forbid")

    name: str
    arguments: dict[str, Any] = {}

    def to_dict(self, id: str | None = None) -> ToolCallDict:
        """Its wire form, with `id` (default: a stable hash of name and arguments)."""
        return tool_call(self.name, self.arguments, id)

    @classmethod
    def from_python(cls, text: str) -> ToolCall:
        """From a call written as Python (`cd(folder='docs')`, as some benchmarks write their ground truth):
        keyword arguments of literal values only; raises ValueError for anything else."""
        import ast

        try:
            node = ast.parse(text.strip(), mode="eval").body
        except SyntaxError as exc:
            raise ValueError(f"{text!r} is not a Python call ({exc.msg})") from None
        if not isinstance(node, ast.Call) or node.args:
            raise ValueError(f"{text!r} is not a call with keyword arguments only, like f(a=1)")
        name = ast.unparse(node.func)
        try:
            arguments = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None}
        except ValueError:
            raise ValueError(f"the arguments of {text!r} are not literal values") from None
        if len(arguments) != len(node.keywords):
            raise ValueError(f"{text!r} passes **kwargs; write each argument by name")
        return cls(name=name, arguments=arguments)

    @classmethod
    def from_dict(cls, call: Mapping[str, Any]) -> ToolCall:
        """From the wire form (or a flat {"name", "arguments"}); raises ValueError on unreadable arguments."""
        fn = call.get("function", call)
        return cls(name=str(fn.get("name") or ""), arguments=arguments_dict(call))


class Message(TypedDict, total=False):
    role: Role
    content: str
    reasoning_content: str
    """Assistant only: the thinking that preceded the content and tool calls."""
    tool_calls: list[ToolCallDict]
    tool_call_id: str
    """Tool only: the id of the assistant tool call this message answers."""
    name: str
    parse_errors: list[str]
    """Set by an encoding's `parse`: what could not be read from the model's text (empty when clean)."""


def system(content: str) -> Message:
    return {"role": "system", "content": content}


def user(content: str) -> Message:
    return {"role": "user", "content": content}


def assistant(
    content: str = "", reasoning_content: str | None = None, tool_calls: Iterable[Any] | None = None
) -> Message:
    msg: Message = {"role": "assistant", "content": content}
    if reasoning_content:
        msg["reasoning_content"] = reasoning_content
    calls = [normalize_tool_call(tc, call_id(tc, i)) for i, tc in enumerate(tool_calls or [])]
    if calls:
        msg["tool_calls"] = calls
    return msg


def tool_result(tool_call_id: str, content: Any) -> Message:
    return {"role": "tool", "tool_call_id": tool_call_id, "content": _text(content)}


def tool_call(name: str, arguments: Mapping[str, Any] | str, id: str | None = None) -> ToolCallDict:
    """One OpenAI tool call; a missing id becomes a stable hash of name and arguments."""
    args = arguments_json(arguments)
    return {
        "id": id or call_id(name, args),
        "type": "function",
        "function": {"name": name, "arguments": args},
    }


def call_id(*parts: Any) -> str:
    """A deterministic tool-call id from whatever identifies the call (same inputs, same id)."""
    digest = hashlib.sha1(json.dumps(parts, ensure_ascii=False, default=str).encode()).hexdigest()
    return f"call_{digest[:16]}"


def arguments_json(arguments: Any) -> str:
    """Arguments in wire form: a mapping is dumped as JSON (key order kept); a string is kept verbatim.

    Verbatim matters: re-rendering a model's own call must reproduce the text it produced.
    """
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


def arguments_dict(call: ToolCallDict | Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a tool call as a dict; raises ValueError when they are not a JSON object."""
    fn = call.get("function", call)
    raw = fn.get("arguments")
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"tool call {fn.get('name')!r} has arguments that are not valid JSON: {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise ValueError(f"tool call {fn.get('name')!r} has arguments that are not a JSON object: {raw!r}")
    return value


def normalize_tool_call(call: Mapping[str, Any], default_id: str) -> ToolCallDict:
    """Accept the OpenAI shape or a flat {"name", "arguments"} one; fill a missing id with `default_id`."""
    fn = call.get("function") if isinstance(call.get("function"), Mapping) else call
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"a tool call needs a function name, got {dict(call)!r}")
    return {
        "id": str(call.get("id") or default_id),
        "type": "function",
        "function": {"name": name, "arguments": arguments_json(fn.get("arguments"))},
    }


def _text(content: Any) -> str:
    """Message content as text: None is empty, OpenAI content parts are joined, anything else is JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, Mapping) for p in content):
        return "".join(str(p.get("text", "")) for p in content if p.get("type", "text") == "text")
    return json.dumps(content, ensure_ascii=False)


def normalize_message(msg: Mapping[str, Any], index: int = 0) -> Message:
    """One message in canonical form; `index` (its place in the conversation) seeds missing tool-call ids."""
    role = msg.get("role")
    if role not in ROLES:
        raise ValueError(f"message {index} has role {role!r}; use one of {', '.join(ROLES)}.")
    out: dict[str, Any] = {k: v for k, v in msg.items() if k not in ("reasoning", "parse_errors")}
    out["content"] = _text(msg.get("content"))
    if role == "assistant":
        # Servers name it `reasoning` (vLLM >= 0.10) or `reasoning_content` (DeepSeek API, older vLLM).
        reasoning = msg.get("reasoning_content") or msg.get("reasoning")
        out.pop("reasoning_content", None)
        if reasoning:
            out["reasoning_content"] = str(reasoning)
        calls = [
            normalize_tool_call(tc, f"call_{index}_{j}") for j, tc in enumerate(msg.get("tool_calls") or [])
        ]
        out.pop("tool_calls", None)
        if calls:
            out["tool_calls"] = calls
    else:
        out.pop("reasoning_content", None)
        out.pop("tool_calls", None)
    return out  # type: ignore[return-value]


def normalize_messages(messages: Iterable[Mapping[str, Any]]) -> list[Message]:
    """A conversation in canonical form.

    Missing tool-call ids become `call_<message index>_<call index>`; a tool message without a
    `tool_call_id` answers the preceding assistant's calls in order (the DSML and Hermes wire formats
    carry no ids, so this is how their results line up).
    """
    out: list[Message] = []
    pending: list[str] = []  # ids of the last assistant turn's calls not yet answered
    for i, raw in enumerate(messages):
        msg = normalize_message(raw, i)
        if msg["role"] == "assistant":
            pending = [tc["id"] for tc in msg.get("tool_calls", [])]
        elif msg["role"] == "tool":
            if msg.get("tool_call_id"):
                if msg["tool_call_id"] in pending:
                    pending.remove(msg["tool_call_id"])
            elif pending:
                msg["tool_call_id"] = pending.pop(0)
            else:
                msg["tool_call_id"] = f"call_{i}_orphan"
        else:
            pending = []
        out.append(msg)
    return out


def history_message(msg: Mapping[str, Any]) -> Message:
    """A parsed assistant turn as it goes back into the history (the parse report is not a wire field)."""
    return normalize_message({k: v for k, v in msg.items() if k != "parse_errors"})


def tool_schema_function(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The function part of a tool schema, whether given in OpenAI form ({"type", "function"}) or bare."""
    fn = tool.get("function")
    return dict(fn) if isinstance(fn, Mapping) else dict(tool)


def openai_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    """A tool schema in OpenAI form."""
    return {"type": "function", "function": tool_schema_function(tool)}


def assistant_action(action: Mapping[str, Any], index: int) -> Message:
    """An assistant turn as an environment takes it from a policy: never raises on what a model may write.
    A malformed call still becomes a call (empty name, or its arguments as text) so the env server answers it
    with a tool error the model can read; missing ids become `call_<index>_<j>`."""
    content = action.get("content")
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": content if isinstance(content, str) else _text(content),
    }
    reasoning = action.get("reasoning_content") or action.get("reasoning")
    if reasoning:
        msg["reasoning_content"] = str(reasoning)
    raw = action.get("tool_calls") or []
    calls: list[ToolCallDict] = []
    for j, call in enumerate(raw if isinstance(raw, list) else [raw]):
        call = call if isinstance(call, Mapping) else {}
        fn = call.get("function") if isinstance(call.get("function"), Mapping) else call
        args = fn.get("arguments", "{}")
        try:
            args = arguments_json(args)
        except (TypeError, ValueError):
            args = str(args)
        calls.append(
            {
                "id": str(call.get("id") or f"call_{index}_{j}"),
                "type": "function",
                "function": {"name": str(fn.get("name") or ""), "arguments": args},
            }
        )
    msg["tool_calls"] = calls
    return msg  # type: ignore[return-value]
