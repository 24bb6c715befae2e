"""The OpenAI chat format itself as an encoding: native `tool_calls` objects, no text template.

`render` gives the canonical JSON of the messages (what a chat-completions request carries; tools and the
thinking switch travel in other request fields); `parse` reads a server's `message` object.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..messages import Message, ToolCall, call_id, normalize_messages
from ._safe import MAX_TOOL_CALLS, clean_text, dumps, loads, short, too_deep, total


def render(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    thinking: bool = False,
) -> str:
    """Canonical JSON (sorted keys, no spaces, UTF-8) of the normalized messages: equal histories, equal text."""
    clean = [{k: v for k, v in m.items() if k != "parse_errors"} for m in normalize_messages(messages)]
    return json.dumps(clean, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@total
def parse(message: Mapping[str, Any] | str) -> Message:
    """An assistant message from a chat-completion `message` (a whole response or its JSON also works).

    `reasoning` (vLLM >= 0.10) falls back to `reasoning_content` (DeepSeek API, older vLLM). Never raises,
    whatever the server sent: calls without a name are dropped, arguments that are not a JSON object are
    reported (and kept: the environment answers them as invalid arguments), fields of the wrong type are
    reported and read as empty, and every string comes out clean and within the caps of `_safe`.
    """
    errors: list[str] = []
    obj: Any = message
    if isinstance(message, str):
        obj, why = loads(message)
        if why is not None:
            obj = {"content": message}
            errors.append("the message is not JSON; read it as plain content")
    if isinstance(obj, Mapping) and isinstance(obj.get("choices"), list) and obj["choices"]:
        obj = obj["choices"][0]
    if isinstance(obj, Mapping) and isinstance(obj.get("message"), Mapping):
        obj = obj["message"]
    if not isinstance(obj, Mapping):
        return {"role": "assistant", "content": "", "parse_errors": [f"not a chat message: {short(obj)}"]}
    if not any(key in obj for key in ("role", "content", "tool_calls", "reasoning", "reasoning_content")):
        errors.append("not a chat message: no role, content, reasoning or tool_calls")
    msg: Message = {"role": "assistant", "content": _content(obj.get("content"), errors)}
    reasoning = obj.get("reasoning") or obj.get("reasoning_content")
    if isinstance(reasoning, str):
        msg["reasoning_content"] = reasoning
    elif reasoning:
        errors.append(f"the reasoning is a {type(reasoning).__name__}, not text; ignored")
    raw_calls = obj.get("tool_calls")
    if raw_calls is not None and not isinstance(raw_calls, list):
        errors.append(f"tool_calls is a {type(raw_calls).__name__}, not a list; ignored")
        raw_calls = None
    if raw_calls and len(raw_calls) > MAX_TOOL_CALLS:
        errors.append(f"{len(raw_calls):,} tool calls in one turn; only the first {MAX_TOOL_CALLS} read")
    calls = []
    for j, raw in enumerate((raw_calls or [])[:MAX_TOOL_CALLS]):
        call = _call(j, raw, errors)
        if call is not None:
            calls.append(call)
    if calls:
        msg["tool_calls"] = calls
    msg["parse_errors"] = errors
    return msg


def _content(content: Any, errors: list[str]) -> str:
    """Message content as text: a string, None (empty), or OpenAI content parts (their text joined)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(p, Mapping) for p in content):
        texts = [p.get("text") for p in content if p.get("type", "text") == "text"]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    errors.append(f"the content is a {type(content).__name__}, not text; read as empty")
    return ""


def _call(j: int, raw: Any, errors: list[str]) -> ToolCall | None:
    """Tool call `j` in the OpenAI shape (a flat {"name", "arguments"} one is accepted), or None (reported)."""
    if not isinstance(raw, Mapping):
        errors.append(f"tool call {j} dropped: it is a {type(raw).__name__}, not an object")
        return None
    fn = raw.get("function") if isinstance(raw.get("function"), Mapping) else raw
    name = fn.get("name")
    if not isinstance(name, str) or not name.strip():
        errors.append(f"tool call {j} dropped: a tool call needs a function name, got {short(name)}")
        return None
    args = fn.get("arguments")
    if args is None:
        text = "{}"
    elif isinstance(args, str):
        text = args
    else:
        text = dumps(args)
        if text is None:
            errors.append(f"tool call {j} ({name!r}) dropped: its arguments cannot be written as JSON")
            return None
    if not isinstance(args, dict) and not too_deep(text):
        value, _ = loads(text)
        if not isinstance(value, dict):
            errors.append(f"the arguments of {name!r} are not a JSON object: {text[:80]!r}")
    raw_id = raw.get("id")
    ident = raw_id if isinstance(raw_id, str) and raw_id else str(raw_id) if isinstance(raw_id, int) else ""
    return {
        "id": ident or call_id(clean_text(name), clean_text(text), j),
        "type": "function",
        "function": {"name": name, "arguments": text},
    }
