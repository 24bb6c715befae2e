"""DeepSeek-V3.2 chat encoding (DSML tool calls): render a conversation to a prompt, parse model text back.

DeepSeek ships no Jinja template for V3.2, only a Python encoder; `render` reproduces its
`encode_messages` byte for byte (tests/agent check it against the copy in vLLM), so a raw
`/v1/completions` prompt is exactly what the model saw in training and what vLLM's chat path builds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..messages import Message, arguments_dict, call_id, normalize_messages, tool_schema_function
from ._reasoning import THINK_END, THINK_START, split_reasoning
from ._safe import MAX_ARGUMENT_DEPTH, dumps, loads, too_deep, total

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
DSML = "｜DSML｜"
CALLS_START = f"<{DSML}function_calls>"
CALLS_END = f"</{DSML}function_calls>"
STOP_STRINGS = (EOS,)

# The tools section of the system prompt, verbatim: the model was trained on this exact text.
TOOLS_PROMPT = f"""## Tools
You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<{DSML}function_calls>" block like the following as part of your reply to the user:
<{DSML}function_calls>
<{DSML}invoke name="$FUNCTION_NAME">
<{DSML}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{DSML}parameter>
...
</{DSML}invoke>
<{DSML}invoke name="$FUNCTION_NAME2">
...
</{DSML}invoke>
</{DSML}function_calls>
String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for other types (numbers, booleans, arrays, objects).
If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:
<{DSML}function_calls>
...
</{DSML}function_calls>
<function_results>
...
</function_results>
{THINK_START}...thinking about results{THINK_END}
Here are the functions available in JSONSchema format:
<functions>
"""
RESPONSE_FORMAT_PROMPT = "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n"

ToolsPlacement = Literal["system", "vllm"]


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, UnicodeEncodeError):
        return json.dumps(value, ensure_ascii=True)


def _tools_section(tools: Sequence[Mapping[str, Any]]) -> str:
    schemas = "\n".join(_json(tool_schema_function(t)) for t in tools)
    return f"{TOOLS_PROMPT}{schemas}\n</functions>\n"


def _instructions(msg: Mapping[str, Any]) -> str:
    """The tools and response-format sections a system or developer message carries."""
    text = ""
    if msg.get("tools"):
        text += "\n\n" + _tools_section(msg["tools"])
    if msg.get("response_format"):
        text += "\n\n" + RESPONSE_FORMAT_PROMPT + _json(msg["response_format"])
    return text


def _invoke(call: Mapping[str, Any]) -> str:
    params = []
    for key, value in arguments_dict(call).items():
        is_str = isinstance(value, str)
        text = value if is_str else _json(value)
        params.append(
            f'<{DSML}parameter name="{key}" string="{"true" if is_str else "false"}">{text}</{DSML}parameter>'
        )
    name = call["function"]["name"]
    return f'<{DSML}invoke name="{name}">\n' + "\n".join(params) + f"\n</{DSML}invoke>"


def _render_one(i: int, msgs: list[dict[str, Any]], thinking: bool, last_user: int) -> str:
    msg = msgs[i]
    role = msg["role"]
    content = msg.get("content") or ""
    # After the last user turn the model is thinking again, so that is where `<think>` opens.
    open_thinking = THINK_START if thinking and i >= last_user else THINK_END
    if role == "system":
        return content + _instructions(msg)
    if role == "user":
        return f"{USER}{content}{ASSISTANT}{open_thinking if i == last_user else THINK_END}"
    if role == "developer":
        body = _instructions(msg) + f"\n\n# The user's message is: {content}"
        return f"{USER}{body}{ASSISTANT}{open_thinking if i == last_user else THINK_END}"
    if role == "assistant":
        calls = msg.get("tool_calls") or []
        calls_text = ""
        if calls:
            calls_text = f"\n\n{CALLS_START}\n" + "\n".join(_invoke(c) for c in calls) + f"\n{CALLS_END}"
        if not calls and msg.get("prefix"):
            return content  # a partial assistant turn the model is to continue
        # Reasoning is part of the text only after the last user turn (the V3.2 thinking rule).
        reasoning = (msg.get("reasoning_content") or "") + THINK_END if thinking and i > last_user else ""
        return f"{reasoning}{content}{calls_text}{EOS}"
    if role == "tool":
        start = i
        while start > 0 and msgs[start - 1]["role"] == "tool":
            start -= 1
        owner = msgs[start - 1] if start > 0 else None
        order = i - start + 1  # 1-based place of this result among the assistant's calls
        n_calls = len(owner.get("tool_calls") or []) if owner and owner["role"] == "assistant" else 0
        if order > n_calls:
            raise ValueError(
                f"message {i} is a tool result with no matching tool call in the assistant turn before it; "
                "every tool message must follow the assistant message that made the call."
            )
        text = "\n\n<function_results>" if order == 1 else ""
        text += f"\n<result>{content}</result>"
        if order == n_calls:
            text += "\n</function_results>\n\n" + open_thinking
        return text
    raise ValueError(f"message {i} has role {role!r}, which the DeepSeek-V3.2 encoding cannot render.")


def render(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    thinking: bool = False,
    *,
    context: Sequence[Mapping[str, Any]] | None = None,
    add_bos_token: bool = True,
    tools_placement: ToolsPlacement = "system",
) -> str:
    """The prompt text for `messages`, ready for `/v1/completions` when it ends on a user or tool turn.

    `thinking` is DeepSeek's thinking_mode ("thinking" vs "chat"). `context` holds earlier messages whose
    text is already in the prompt: only `messages` are rendered, with the context's roles in view.
    Tools go into the leading system message (`tools_placement="system"`, DeepSeek's layout) or, as
    vLLM's chat endpoint does, into a new empty system message put first (`"vllm"`); with no system
    prompt the two are the same. Equals reference `encode_messages(..., thinking_mode, context,
    add_default_bos_token)` with `reasoning_content` read as its `reasoning`.
    """
    full: list[dict[str, Any]] = [dict(m) for m in normalize_messages([*(context or []), *messages])]
    n_context = len(context or [])
    if tools:
        if tools_placement == "system" and full and full[0]["role"] == "system" and not full[0].get("tools"):
            full[0]["tools"] = list(tools)
        else:
            full.insert(0, {"role": "system", "content": "", "tools": list(tools)})
            n_context += 1 if context else 0
    last_user = max((i for i, m in enumerate(full) if m["role"] in ("user", "developer")), default=-1)
    text = BOS if add_bos_token and not context else ""
    return text + "".join(_render_one(i, full, thinking, last_user) for i in range(n_context, len(full)))


# --- parsing ---------------------------------------------------------------------------------------

_TAG = re.compile(rf"<(/?){DSML}(\w*)")
_ATTR = re.compile(r'\s*([\w-]+)="([^"]*)"')
_KNOWN_ATTRS = {"invoke": {"name"}, "parameter": {"name", "string"}, "function_calls": set()}


def _attributes(src: str, tag: str, errors: list[str]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    pos = 0
    for m in _ATTR.finditer(src):
        if m.start() != pos:
            break
        attrs[m.group(1)] = m.group(2)
        pos = m.end()
    if src[pos:].strip():
        errors.append(f"unreadable text in a <{tag}> tag ignored: {src[pos:].strip()[:80]!r}")
    for key in attrs.keys() - _KNOWN_ATTRS.get(tag, set()):
        errors.append(f"unknown attribute {key!r} on a <{tag}> tag ignored")
    return attrs


class _Call:
    def __init__(self, name: str) -> None:
        self.name = name
        self.arguments: dict[str, Any] = {}


def _parameter_value(raw: str, attrs: dict[str, str], call: _Call, errors: list[str]) -> Any:
    key = attrs.get("name", "")
    flag = attrs.get("string")
    if flag == "true":
        return raw
    if flag not in ("false", None):
        errors.append(f"parameter {key!r} of {call.name!r} has string={flag!r}; read as JSON if it parses")
    if too_deep(raw):
        errors.append(
            f"parameter {key!r} of {call.name!r} nests deeper than {MAX_ARGUMENT_DEPTH} levels; "
            f"kept as a string: {raw[:80]!r}"
        )
        return raw
    value, why = loads(raw)
    if why is None:
        return value
    if flag == "false":
        errors.append(f"parameter {key!r} of {call.name!r} is not valid JSON; kept as a string: {raw[:80]!r}")
    return raw


def _parse_calls(text: str, errors: list[str]) -> list[_Call]:
    """Read DSML blocks from `text` (which starts at the first DSML tag); never raises."""
    calls: list[_Call] = []
    current: _Call | None = None
    in_block = False
    pos = 0

    def close_current(why: str) -> None:
        nonlocal current
        if current is not None:
            errors.append(f"call to {current.name!r} {why}")
            calls.append(current)
            current = None

    while True:
        m = _TAG.search(text, pos)
        gap = text[pos : m.start() if m else len(text)].strip()
        if gap:
            where = "after the tool calls" if not in_block and current is None else "between DSML tags"
            errors.append(f"text {where} ignored: {gap[:80]!r}")
        if m is None:
            break
        closing, tag = m.group(1) == "/", m.group(2)
        end = text.find(">", m.end())
        if end == -1:
            errors.append(f"output cut off inside a <{tag}> tag")
            break
        attrs_src = text[m.end() : end]
        pos = end + 1
        if tag == "function_calls":
            close_current("had no </invoke> before the block ended; kept")
            in_block = not closing
            if not closing:
                _attributes(attrs_src, tag, errors)
        elif tag == "invoke" and closing:
            if current is None:
                errors.append("a stray </invoke> ignored")
            else:
                calls.append(current)
                current = None
        elif tag == "invoke":
            close_current("was still open when another invoke started (nested call); closed before it")
            if not in_block:
                errors.append("an invoke outside a function_calls block was read anyway")
            attrs = _attributes(attrs_src, tag, errors)
            if not attrs.get("name"):
                errors.append("an invoke without a name attribute; its call is dropped")
            current = _Call(attrs.get("name", ""))
        elif tag == "parameter" and not closing:
            attrs = _attributes(attrs_src, tag, errors)
            nxt = _TAG.search(text, pos)
            if nxt is None:
                errors.append(f"output cut off inside parameter {attrs.get('name')!r}")
                break
            raw = text[pos : nxt.start()]
            if nxt.group(1) == "/" and nxt.group(2) == "parameter":
                close = text.find(">", nxt.end())
                if close == -1:
                    errors.append(f"output cut off inside parameter {attrs.get('name')!r}")
                    break
                pos = close + 1
            else:
                errors.append(
                    f"parameter {attrs.get('name')!r} has no </parameter>; its value ends at the next tag"
                )
                pos = nxt.start()
            if current is None:
                errors.append(f"parameter {attrs.get('name')!r} outside an invoke ignored")
            elif "name" not in attrs:
                errors.append(f"a parameter of {current.name!r} without a name ignored")
            else:
                if attrs["name"] in current.arguments:
                    errors.append(
                        f"parameter {attrs['name']!r} of {current.name!r} given twice; the last one kept"
                    )
                current.arguments[attrs["name"]] = _parameter_value(raw, attrs, current, errors)
        else:
            errors.append(f"unknown DSML tag {m.group(0)!r} ignored")
    if current is not None:
        errors.append(f"output cut off inside the call to {current.name!r}; that call is dropped")
    elif in_block:
        errors.append("the function_calls block has no closing tag")
    return [c for c in calls if c.name]


@total
def parse(text: str, *, thinking: bool | None = None) -> Message:
    """An assistant message from model text: reasoning before `</think>`, content, DSML tool calls.

    Never raises: whatever cannot be read is listed in `parse_errors` and the rest is returned. A call
    cut off before `</invoke>` is dropped; calls that ended properly before it are kept.
    `thinking=True` says the prompt opened `<think>`, so text with no `</think>` is unfinished reasoning.
    Any text, bytes or size gives a message with clean strings within the caps of `_safe`.
    """
    errors: list[str] = []
    if text.endswith(EOS):
        text = text[: -len(EOS)]
    reasoning, rest = split_reasoning(text, thinking, errors)
    first_tag = _TAG.search(rest)
    msg: Message = {"role": "assistant"}
    if first_tag is None:
        msg["content"] = rest
    else:
        # The renderer puts "\n\n" between the content and the block; take it back off.
        msg["content"] = rest[: first_tag.start()].removesuffix("\n\n")
    if reasoning:
        msg["reasoning_content"] = reasoning
    if first_tag is not None:
        tool_calls = []
        for j, c in enumerate(_parse_calls(rest[first_tag.start() :], errors)):
            arguments = dumps(c.arguments)
            if arguments is None:
                errors.append(f"the arguments of {c.name!r} cannot be written as JSON; that call is dropped")
                continue
            tool_calls.append(
                {
                    "id": call_id(text, j),
                    "type": "function",
                    "function": {"name": c.name, "arguments": arguments},
                }
            )
        if tool_calls:
            msg["tool_calls"] = tool_calls
    msg["parse_errors"] = errors
    return msg
