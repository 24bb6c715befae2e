"""What makes every encoding's `parse` total: bounded, clean text in; a bounded, clean message out.

Model output is untrusted: it may be 100 MB long, nest JSON ten thousand levels deep, or hold lone surrogates
(`"\\ud800"` in a server's JSON, bytes decoded with `surrogateescape`) that cannot be encoded as UTF-8, so a
trajectory holding them could not be written as JSON or parquet. `total(parse)` wraps a parser so that it
never raises and what it returns holds only strings that encode as UTF-8, within these caps (characters):
"""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

MAX_TEXT_CHARS = 1_000_000
"""Model text read by `parse` (more is cut off and reported), and the cap of `content` and `reasoning_content`."""
MAX_ARGUMENTS_CHARS = 1_000_000
"""A tool call's arguments (JSON text); a call over it is dropped and reported."""
MAX_ARGUMENT_DEPTH = 64
"""JSON nesting of a call's arguments; a deeper call is dropped and reported (no tool needs more, and deep
JSON is what makes a reader raise RecursionError)."""
MAX_NAME_CHARS = 256
"""Tool names and call ids (longer ones are cut and reported)."""
MAX_TOOL_CALLS = 128
"""Tool calls kept from one turn."""
MAX_PARSE_ERRORS = 64
"""Entries of `parse_errors` (the rest are summed up in one more)."""
MAX_ERROR_CHARS = 500
"""Characters of one `parse_errors` entry."""

REPLACEMENT = "\ufffd"


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (a split surrogate pair is joined), so it encodes
    as UTF-8. Cheap when there is nothing to replace."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Clean text on one line (line breaks become spaces), cut to `limit` characters."""
    text = " ".join(clean_text(text[: limit * 4]).splitlines())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_text(value: Any, what: str, errors: list[str]) -> str:
    """Model output as a str: bytes are decoded as UTF-8 (bad bytes become U+FFFD), None is empty."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    errors.append(f"the {what} is a {type(value).__name__}, not text; read as empty")
    return ""


def cap(text: str, limit: int, what: str, errors: list[str]) -> str:
    """`text` cut to `limit` characters (reported), then cleaned."""
    if len(text) > limit:
        errors.append(f"the {what} is {len(text):,} characters; cut to the first {limit:,}")
        text = text[:limit]
    return clean_text(text)


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """The bracket nesting of JSON text (strings skipped), without parsing it: bounded time, no recursion.

    Works on invalid JSON too (an unterminated string counts its brackets: an overestimate)."""
    if text.count("[") + text.count("{") == 0:
        return 0
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def too_deep(text: str, limit: int = MAX_ARGUMENT_DEPTH) -> bool:
    return text.count("[") + text.count("{") > limit and json_depth(text) > limit


def loads(text: str) -> tuple[Any, str | None]:
    """(value, None) for readable JSON, else (None, the reason); never raises (deep nesting included)."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"{exc.msg} at char {exc.pos}"
    except (ValueError, RecursionError, MemoryError) as exc:
        return None, f"nested too deeply or too large to read ({type(exc).__name__})"


def dumps(value: Any) -> str | None:
    """JSON text of `value` (UTF-8, not ASCII-escaped), or None when it cannot be written; never raises."""
    try:
        return clean_text(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError, MemoryError):
        return None


def short(value: Any, limit: int = 80) -> str:
    """A short readable view of any value for an error message; never raises."""
    if isinstance(value, str):
        return repr(clean_text(value[:limit]))
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)[:limit]
    return f"<{type(value).__name__}>"


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_clean_value(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(k): _clean_value(v) for k, v in value.items()}
    return value


def _without_surrogate_escapes(args: str) -> str:
    """Arguments whose JSON escapes decode to lone surrogates (`"\\ud800"`), written again with U+FFFD in
    their place, so the tool never receives a string that cannot be encoded; left as they are otherwise
    (a proper escaped pair, or text that is not JSON)."""
    value, why = loads(args)
    if why is not None:
        return args
    clean = _clean_value(value)
    return args if clean == value else (dumps(clean) or args)


def _name(value: str, what: str, errors: list[str]) -> str:
    if len(value) > MAX_NAME_CHARS:
        errors.append(f"a {what} of {len(value):,} characters was cut to {MAX_NAME_CHARS}")
        value = value[:MAX_NAME_CHARS]
    return clean_text(value)


def _call(j: int, raw: Any, errors: list[str]) -> dict | None:
    """One tool call in canonical shape, or None (reported) when it cannot be kept."""
    fn = raw.get("function") if isinstance(raw, Mapping) else None
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
        errors.append(f"tool call {j} dropped: it has no function name")
        return None
    name = _name(fn["name"], "tool name", errors)
    args = fn.get("arguments")
    if not isinstance(args, str):
        args = "{}" if args is None else dumps(args)
        if args is None:
            errors.append(f"tool call {j} ({name!r}) dropped: its arguments cannot be written as JSON")
            return None
    if len(args) > MAX_ARGUMENTS_CHARS:
        errors.append(
            f"tool call {j} ({name!r}) dropped: its arguments are {len(args):,} characters, "
            f"over the {MAX_ARGUMENTS_CHARS:,} cap"
        )
        return None
    if too_deep(args):
        errors.append(
            f"tool call {j} ({name!r}) dropped: its arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels"
        )
        return None
    if _SURROGATE_ESCAPE.search(args):
        args = _without_surrogate_escapes(args)
    call_id = raw.get("id")
    return {
        "id": _name(call_id, "call id", errors) if isinstance(call_id, str) and call_id else f"call_{j}",
        "type": "function",
        "function": {"name": name, "arguments": clean_text(args)},
    }


def safe_message(msg: Any, errors: list[str]) -> dict:
    """The canonical assistant message a parser's result stands for: only `role`, `content`,
    `reasoning_content` (when not empty), `tool_calls` (when any) and `parse_errors`, every string clean and
    within its cap. `errors` (the wrapper's own findings) come first in `parse_errors`."""
    if not isinstance(msg, Mapping):
        msg = {"content": "", "parse_errors": [f"the parser returned a {type(msg).__name__}"]}
    errors = list(errors)
    own = msg.get("parse_errors")
    errors += [e if isinstance(e, str) else short(e) for e in own] if isinstance(own, list) else []
    out: dict[str, Any] = {"role": "assistant"}
    content = msg.get("content")
    out["content"] = cap(content, MAX_TEXT_CHARS, "content", errors) if isinstance(content, str) else ""
    reasoning = msg.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        out["reasoning_content"] = cap(reasoning, MAX_TEXT_CHARS, "reasoning", errors)
    raw_calls = msg.get("tool_calls")
    if isinstance(raw_calls, list) and raw_calls:
        if len(raw_calls) > MAX_TOOL_CALLS:
            errors.append(f"{len(raw_calls):,} tool calls in one turn; only the first {MAX_TOOL_CALLS} kept")
        calls = [c for j, raw in enumerate(raw_calls[:MAX_TOOL_CALLS]) if (c := _call(j, raw, errors))]
        seen: set[str] = set()
        for j, c in enumerate(calls):  # ids must tell the calls apart: results are matched by id
            if c["id"] in seen:
                c["id"] = f"{c['id'][: MAX_NAME_CHARS - 8]}_{j}"
            seen.add(c["id"])
        if calls:
            out["tool_calls"] = calls
    if len(errors) > MAX_PARSE_ERRORS:
        errors = errors[: MAX_PARSE_ERRORS - 1] + [f"... and {len(errors) - MAX_PARSE_ERRORS + 1:,} more"]
    out["parse_errors"] = [one_line(e) for e in errors]
    return out


def total(parse: Callable[..., Any]) -> Callable[..., dict]:
    """Wrap an encoding's `parse(text, **options)` so it never raises on what a model wrote and returns a
    safe message.

    Text (bytes are decoded, None is empty) is cut to MAX_TEXT_CHARS and cleaned before the parser sees it;
    a mapping (the openai encoding's message object) goes in as it is. An exception from the parser leaves
    the text as plain content, reported in `parse_errors`. Unknown options still raise TypeError: that is
    the caller's bug, not the model's output.
    """
    signature = inspect.signature(parse)

    @functools.wraps(parse)
    def wrapper(text: Any, **options: Any) -> dict:
        signature.bind(text, **options)
        errors: list[str] = []
        if not isinstance(text, Mapping):
            text = cap(as_text(text, "model output", errors), MAX_TEXT_CHARS, "model output", errors)
        try:
            msg = parse(text, **options)
        except Exception as exc:  # noqa: BLE001 - whatever the model wrote, the parse ends with a message
            msg = {
                "content": text if isinstance(text, str) else "",
                "parse_errors": [
                    f"the output could not be parsed ({type(exc).__name__}); kept as plain content"
                ],
            }
        return safe_message(msg, errors)

    return wrapper
