"""Hermes / Qwen chat encoding: ChatML turns, `<tool_call>{json}</tool_call>` calls, `<think>` reasoning.

Follows the Qwen2.5/Qwen3 chat template (the common Hermes convention): tools listed as JSON lines in
`<tools></tools>` in the system turn, tool results as `<tool_response>` blocks inside one user turn per
batch of results. Reasoning is rendered for every assistant turn that carries it; which turns keep it is
the thinking context's decision (toolgym.agent.thinking), not the template's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..messages import Message, call_id, normalize_messages, openai_tool
from ._reasoning import THINK_END, THINK_START, split_reasoning
from ._safe import dumps, loads, total

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
STOP_STRINGS = (IM_END, "<|endoftext|>")
CALL_START = "<tool_call>"
CALL_END = "</tool_call>"

TOOLS_PROMPT = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_PROMPT_END = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
    "<args-json-object>}\n</tool_call>"
)


def _turn(role: str, body: str) -> str:
    return f"{IM_START}{role}\n{body}{IM_END}\n"


def _assistant_body(msg: Mapping[str, Any]) -> str:
    body = ""
    if msg.get("reasoning_content"):
        reasoning = msg["reasoning_content"].strip("\n")  # as Qwen3's template does
        body += f"{THINK_START}\n{reasoning}\n{THINK_END}\n\n"
    content = msg.get("content") or ""
    body += content
    for j, call in enumerate(msg.get("tool_calls") or []):
        if j > 0 or content:
            body += "\n"
        fn = call["function"]
        # The arguments string goes in verbatim so the model's own call re-renders byte for byte.
        body += f'{CALL_START}\n{{"name": {json.dumps(fn["name"], ensure_ascii=False)}, "arguments": {fn["arguments"]}}}\n{CALL_END}'
    return body


def render(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    thinking: bool = False,
    *,
    add_generation_prompt: bool | None = None,
) -> str:
    """The ChatML prompt for `messages`; a generation prompt is added when the last turn is not the assistant's.

    `thinking` changes nothing in the prompt: thinking models open `<think>` themselves.
    An assistant turn with `"prefix": True` (last only) is left open for the model to continue.
    """
    msgs = normalize_messages(messages)
    out = ""
    start = 0
    system = ""
    if msgs and msgs[0]["role"] in ("system", "developer"):
        system, start = msgs[0]["content"], 1
    if tools:
        schemas = "".join("\n" + json.dumps(openai_tool(t), ensure_ascii=False) for t in tools)
        out += _turn(
            "system", (system + "\n\n" if system else "") + TOOLS_PROMPT + schemas + TOOLS_PROMPT_END
        )
    elif start:
        out += _turn("system", system)
    for i in range(start, len(msgs)):
        msg = msgs[i]
        role = msg["role"]
        if role == "tool":
            first = i == 0 or msgs[i - 1]["role"] != "tool"
            last = i == len(msgs) - 1 or msgs[i + 1]["role"] != "tool"
            out += (
                f"{IM_START}user" if first else ""
            ) + f"\n<tool_response>\n{msg['content']}\n</tool_response>"
            out += f"{IM_END}\n" if last else ""
        elif role == "assistant":
            if msg.get("prefix") and i == len(msgs) - 1:
                out += f"{IM_START}assistant\n" + _assistant_body(msg)
            else:
                out += _turn("assistant", _assistant_body(msg))
        else:
            out += _turn("system" if role == "developer" else role, msg["content"])
    if add_generation_prompt is None:
        add_generation_prompt = not msgs or msgs[-1]["role"] != "assistant"
    if add_generation_prompt:
        out += f"{IM_START}assistant\n"
    return out


_CALL_TAG = re.compile(r"</?tool_call>")


def _read_call(body: str, errors: list[str]) -> tuple[str, str] | None:
    """(name, arguments JSON) from a `<tool_call>` body, or None (with the reason in `errors`)."""
    obj, why = loads(body)
    if why is not None:
        errors.append(f"a <tool_call> is not valid JSON ({why}): {body.strip()[:80]!r}")
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        errors.append(f'a <tool_call> needs a JSON object with a "name": {body.strip()[:80]!r}')
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    for key in obj.keys() - {"name", "arguments", "parameters", "id"}:
        errors.append(f"unknown key {key!r} in the call to {obj['name']!r} ignored")
    if isinstance(args, str):  # some models double-encode the arguments
        decoded, why = loads(args)
        args = args if why is not None else decoded
    if not isinstance(args, dict):
        shown = (dumps(args) or f"<{type(args).__name__}>")[:80]
        errors.append(f"the arguments of {obj['name']!r} are not a JSON object: {shown}")
        return None
    # Keep the model's own spelling of the arguments where it wrote an object, so it re-renders exactly.
    m = re.search(r'"arguments"\s*:\s*', body)
    raw = (
        body[m.end() :].rstrip().removesuffix("}").rstrip()
        if m and isinstance(obj.get("arguments"), dict)
        else ""
    )
    try:
        if raw and loads(raw)[0] == args:
            return obj["name"], raw
    except RecursionError:  # comparing very deep values
        pass
    text = dumps(args)
    if text is None:
        errors.append(f"the arguments of {obj['name']!r} cannot be written back as JSON; the call is dropped")
        return None
    return obj["name"], text


@total
def parse(text: str, *, thinking: bool | None = None) -> Message:
    """An assistant message from Hermes/Qwen model text; never raises.

    A `<tool_call>` whose JSON cannot be read stays in the content verbatim (so the history shows what the
    model wrote) and is reported in `parse_errors`; one cut off at the end of the output is dropped.
    Any text, bytes or size gives a message with clean strings within the caps of `_safe`.
    """
    errors: list[str] = []
    for stop in STOP_STRINGS:
        text = text.split(stop, 1)[0]
    reasoning, rest = split_reasoning(text, thinking, errors)
    rest = rest.lstrip("\n") if reasoning or THINK_END in text else rest
    content_parts: list[str] = []
    calls: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = rest.find(CALL_START, pos)
        if start == -1:
            content_parts.append(rest[pos:])
            break
        content_parts.append(rest[pos:start])
        body_start = start + len(CALL_START)
        tag = _CALL_TAG.search(rest, body_start)
        if tag is None:
            body, pos = rest[body_start:], len(rest)
            if loads(body)[1] is not None:
                errors.append("output cut off inside a <tool_call>; that call is dropped")
                break
            errors.append("a <tool_call> has no </tool_call>")
        elif tag.group(0) == CALL_START:
            body, pos = rest[body_start : tag.start()], tag.start()
            errors.append("a <tool_call> has no </tool_call> before the next one")
        else:
            body, pos = rest[body_start : tag.start()], tag.end()
        call = _read_call(body, errors)
        if call is None:
            content_parts.append(rest[start:pos])
        else:
            calls.append(call)
    pieces = [p.strip("\n") for p in content_parts]
    msg: Message = {"role": "assistant", "content": "\n".join(p for p in pieces if p.strip())}
    if reasoning.strip("\n"):
        msg["reasoning_content"] = reasoning.strip("\n")
    if calls:
        msg["tool_calls"] = [
            {"id": call_id(text, j), "type": "function", "function": {"name": name, "arguments": args}}
            for j, (name, args) in enumerate(calls)
        ]
    msg["parse_errors"] = errors
    return msg
