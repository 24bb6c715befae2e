"""`encodings.parse` is total: no model output makes it raise, and what it returns can always be written.

A seeded fuzzer (no extra dependency) throws 12,000 outputs at the three encodings: tag soup built from each
format's own tokens, mutated well-formed turns, bytes decoded with surrogateescape, random code points with
lone surrogates, deep nesting, and (openai) server messages of any shape. Each result must be a canonical
assistant message whose strings encode as UTF-8, that goes back into the history and renders again, and
the lot must write to parquet. Explicit tests cover the named cases: lone surrogates, 100 MB strings,
10,000-deep nesting in content, reasoning and arguments, the field caps.
"""

from __future__ import annotations

import io
import json
import random
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from toolgym.agent import encodings
from toolgym.agent.encodings import _safe
from toolgym.agent.messages import history_message, user

SEED = 20260509
CASES_PER_ENCODING = 4_000
DSML = "｜DSML｜"
EOS = "<｜end▁of▁sentence｜>"
NAMES = ("deepseek_v32", "hermes", "openai")

COMMON = [
    "<think>", "</think>", "\n", "\n\n", " ", '"', "\\", "{", "}", "[", "]", ":", ",", "null", "true", "1e999",
    "-0", "NaN", "\ud800", "\udcff", "\udfff\ud800", "\ud83d\ude00", "😀", "\x00", "\u2028", "é", "<", ">",
    "<|im_end|>", "<|endoftext|>", EOS, "Paris", "'", "\\u0000", "\\ud800", '"\\ud800"',
]  # fmt: skip
TOKENS = {
    "deepseek_v32": [
        f"<{DSML}function_calls>", f"</{DSML}function_calls>", f'<{DSML}invoke name="f">', f"</{DSML}invoke>",
        f'<{DSML}invoke name="">', f"<{DSML}invoke>", f'<{DSML}parameter name="a" string="true">',
        f'<{DSML}parameter name="a" string="false">', f'<{DSML}parameter name="b" string="maybe">',
        f"<{DSML}parameter>", f"</{DSML}parameter>", f"<{DSML}", f"</{DSML}", f"<{DSML}weird x=1>",
        ' name="', '" x="y"', '{"k": [1, 2]}', "[[[[", "]]]]",
    ],
    "hermes": [
        "<tool_call>", "</tool_call>", "<tool_call>\n", "\n</tool_call>", '{"name": "f", "arguments": ',
        '{"name": "g", "parameters": ', '{"a": 1}', '"{\\"a\\": 1}"', '{"name": 5}', '{"name": ""}', "[1]",
        '"arguments"', '"name"', "[[[[", "]]]]", '{"x": {"y": {"z": ', "}}}",
    ],
}  # fmt: skip
WELL_FORMED = {
    "deepseek_v32": (
        "I need the weather.</think>\n\nLet me look.\n\n"
        f'<{DSML}function_calls>\n<{DSML}invoke name="get_weather">\n'
        f'<{DSML}parameter name="city" string="true">Paris</{DSML}parameter>\n'
        f'<{DSML}parameter name="days" string="false">[1, 2, {{"a": null}}]</{DSML}parameter>\n'
        f'</{DSML}invoke>\n<{DSML}invoke name="f">\n</{DSML}invoke>\n</{DSML}function_calls>{EOS}'
    ),
    "hermes": (
        "<think>\nI need the weather.\n</think>\n\nLet me look.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2]}}\n</tool_call>\n'
        '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call><|im_end|>'
    ),
    "openai": json.dumps(
        {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": "Let me look.",
                        "reasoning": "I need the weather.",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": '{"a": 1}'},
                            }
                        ],
                    }
                }
            ]
        }
    ),
}
KEYS = [
    "choices", "message", "content", "reasoning", "reasoning_content", "tool_calls", "function", "name",
    "arguments", "id", "type", "text", "role", "parameters",
]  # fmt: skip
ALLOWED_KEYS = {"role", "content", "reasoning_content", "tool_calls", "parse_errors"}


def random_bytes(rng: random.Random, n: int) -> str:
    """`n` random bytes as a server's text decoded with surrogateescape (bad bytes become lone surrogates)."""
    return rng.randbytes(n).decode("utf-8", "surrogateescape")


def random_chars(rng: random.Random, n: int) -> str:
    """`n` random code points, surrogates included, ASCII-heavy."""
    return "".join(chr(c % 0x110000 if c & 1 else c % 0x80) for c in (rng.getrandbits(22) for _ in range(n)))


def random_string(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        return random_bytes(rng, rng.randrange(40))
    if kind < 0.6:
        return random_chars(rng, 20)
    return rng.choice(COMMON + KEYS)


def random_value(rng: random.Random, depth: int = 0):
    """Any JSON-like value, shaped like a chat completion often enough to reach the deep code paths."""
    kind = rng.random()
    if depth > 4 or kind < 0.35:
        return rng.choice(
            [None, True, 0, -1, 2**70, 1.5, float("nan"), float("inf"), "", "{}", '{"a": 1}', "[1]", "{oops"]
            + [random_string(rng)]
        )
    if kind < 0.5:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if kind < 0.6:  # nesting on the deep side
        value = random_value(rng, 5)
        for _ in range(rng.choice([10, 70, 300])):
            value = [value] if rng.random() < 0.5 else {"a": value}
        return value
    return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def random_message(rng: random.Random):
    """A server message: a plausible one with fields broken at random, or anything at all."""
    if rng.random() < 0.3:
        return random_value(rng)
    call = {"id": random_value(rng, 3), "type": "function", "function": {}}
    call["function"] = {
        "name": rng.choice(["f", "", None, 5, random_string(rng)]),
        "arguments": rng.choice([None, "{}", '{"a": "\\ud800"}', "{oops", random_value(rng, 2)]),
    }
    message = {
        "role": "assistant",
        "content": rng.choice([None, "", "hi", random_string(rng), random_value(rng, 3)]),
        "reasoning": rng.choice([None, "r", random_string(rng), random_value(rng, 3)]),
        "tool_calls": rng.choice([None, [], [call], [call, call], random_value(rng, 2), "x"]),
    }
    for key in rng.sample(list(message), rng.randrange(3)):
        del message[key]
    if rng.random() < 0.3:
        message = {"choices": [{"message": message, "finish_reason": "stop"}]}
    if rng.random() < 0.3:
        try:
            return json.dumps(message)
        except (ValueError, TypeError, RecursionError):
            return message
    return message


def mutate(text: str, rng: random.Random, tokens: list[str]) -> str:
    for _ in range(rng.randrange(1, 5)):
        i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
        op = rng.random()
        if op < 0.25:
            text = text[:i] + text[j:]  # delete a slice
        elif op < 0.5:
            text = text[:j] + text[i:j] + text[j:]  # duplicate one
        elif op < 0.8:
            text = text[:i] + rng.choice(tokens) + text[i:]  # insert a token
        else:
            text = text[:i]  # cut off, as max_tokens does
    return text


def random_text(name: str, rng: random.Random) -> str:
    tokens = COMMON + TOKENS.get(name, [])
    kind = rng.random()
    if kind < 0.35:
        return "".join(rng.choice(tokens) for _ in range(rng.randrange(1, 40)))
    if kind < 0.7:
        return mutate(WELL_FORMED[name], rng, tokens)
    if kind < 0.85:
        return random_bytes(rng, rng.randrange(200))
    if kind < 0.97:
        return random_chars(rng, rng.randrange(100))
    depth = rng.choice([100, 1_000, 10_000])
    return mutate(WELL_FORMED[name], rng, ["[" * depth, "]" * depth, '{"a":' * depth])


def check(name: str, msg) -> str:
    """The invariants of a parsed turn; returns its JSON (UTF-8-safe) for the parquet check."""
    assert isinstance(msg, dict) and set(msg) <= ALLOWED_KEYS and msg["role"] == "assistant"
    assert isinstance(msg["content"], str) and len(msg["content"]) <= _safe.MAX_TEXT_CHARS
    assert isinstance(msg["parse_errors"], list) and all(isinstance(e, str) for e in msg["parse_errors"])
    assert len(msg["parse_errors"]) <= _safe.MAX_PARSE_ERRORS
    assert all("\n" not in e and len(e) <= _safe.MAX_ERROR_CHARS for e in msg["parse_errors"])
    if "reasoning_content" in msg:
        assert isinstance(msg["reasoning_content"], str) and msg["reasoning_content"]
    calls = msg.get("tool_calls", [])
    assert isinstance(calls, list) and len(calls) <= _safe.MAX_TOOL_CALLS
    for call in calls:
        assert call["type"] == "function" and isinstance(call["id"], str) and call["id"]
        fn = call["function"]
        assert set(fn) == {"name", "arguments"} and isinstance(fn["name"], str) and fn["name"].strip()
        assert isinstance(fn["arguments"], str) and not _safe.too_deep(fn["arguments"])
        value, why = _safe.loads(fn["arguments"])
        if why is None:  # what the tool will receive holds no lone surrogate either (escaped ones included)
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    assert len({c["id"] for c in calls}) == len(calls)
    text = json.dumps(msg, ensure_ascii=False)
    text.encode("utf-8")  # no lone surrogate anywhere
    # It goes back into the history and the next prompt renders: a parsed turn never breaks the next turn.
    encodings.render(name, [user("q"), history_message(msg)], thinking=True)
    return text


def test_fuzz_parse_never_raises_and_gives_writable_messages():
    rng = random.Random(SEED)
    rows, started = [], time.perf_counter()
    for name in NAMES:
        for i in range(CASES_PER_ENCODING):
            if name == "openai" and i % 2:
                raw = random_message(rng)
            else:
                raw = random_text(name, rng)
            options = {"thinking": rng.choice([None, True, False])} if name != "openai" else {}
            try:
                msg = encodings.parse(name, raw, **options)
                rows.append(check(name, msg))
            except Exception as exc:  # noqa: BLE001 - report the seed and case, not the huge value
                raise AssertionError(f"{name} case {i} (seed {SEED}): {type(exc).__name__}: {exc}") from None
    elapsed = time.perf_counter() - started
    assert len(rows) == 3 * CASES_PER_ENCODING >= 10_000
    sink = io.BytesIO()
    pq.write_table(pa.table({"message": rows}), sink)
    assert pq.read_table(io.BytesIO(sink.getvalue())).num_rows == len(rows)
    assert elapsed < 60, f"the fuzzer took {elapsed:.1f}s"


@pytest.mark.parametrize("name", NAMES)
def test_lone_surrogates_and_escaped_bytes_become_replacement_characters(name):
    raw_bytes = bytes(range(256)).decode("utf-8", "surrogateescape")
    texts = {
        "deepseek_v32": (
            f'think \ud800</think>say \udcff{raw_bytes}\n\n<{DSML}function_calls>\n<{DSML}invoke name="f\ud800">\n'
            f'<{DSML}parameter name="a\udfff" string="true">x\ud800y</{DSML}parameter>\n'
            f"</{DSML}invoke>\n</{DSML}function_calls>"
        ),
        "hermes": (
            f"<think>think \ud800</think>say \udcff{raw_bytes}\n<tool_call>\n"
            '{"name": "f\ud800", "arguments": {"a\udfff": "x\ud800y"}}\n</tool_call>'
        ),
        "openai": {
            "content": f"say \udcff{raw_bytes}",
            "reasoning": "think \ud800",
            "tool_calls": [{"function": {"name": "f\ud800", "arguments": '{"a\udfff": "x\ud800y"}'}}],
        },
    }
    msg = encodings.parse(name, texts[name])
    check(name, msg)
    assert msg["parse_errors"] == []  # a replaced character is not a malformed turn
    assert "\ufffd" in msg["content"] and "\ufffd" in msg["reasoning_content"]
    call = msg["tool_calls"][0]["function"]
    assert call["name"] == "f\ufffd" and json.loads(call["arguments"]) == {"a\ufffd": "x\ufffdy"}
    # A proper pair split into two code points is joined, not replaced.
    assert (
        encodings.parse(name, {"content": "\ud83d\ude00"} if name == "openai" else "\ud83d\ude00")["content"]
        == "😀"
    )


def test_openai_json_with_escaped_surrogates_and_odd_types():
    got = encodings.parse("openai", '{"content": "a\\ud800b", "reasoning": 5, "tool_calls": {"x": 1}}')
    check("openai", got)
    assert got["content"] == "a\ufffdb" and "reasoning_content" not in got
    assert any("reasoning is a int" in e for e in got["parse_errors"])
    assert any("tool_calls is a dict" in e for e in got["parse_errors"])
    odd = {
        "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
        "tool_calls": [
            None,
            "call",
            {"function": {"name": 5}},
            {"function": {"name": "f", "arguments": {"a": [1, 2]}}},
            {"function": {"name": "g", "arguments": 7}},
            {"id": {"x": 1}, "function": {"name": "h"}},
            {"id": 12, "name": "flat", "arguments": "{}"},
        ],
    }
    got = encodings.parse("openai", odd)
    check("openai", got)
    assert got["content"] == "ab"
    calls = {c["function"]["name"]: c for c in got["tool_calls"]}
    assert list(calls) == ["f", "g", "h", "flat"]
    assert json.loads(calls["f"]["function"]["arguments"]) == {"a": [1, 2]}
    assert calls["g"]["function"]["arguments"] == "7" and calls["h"]["function"]["arguments"] == "{}"
    assert calls["flat"]["id"] == "12" and calls["h"]["id"].startswith("call_")
    assert sum("dropped" in e for e in got["parse_errors"]) == 3
    assert any("'g' are not a JSON object" in e for e in got["parse_errors"])


@pytest.mark.parametrize("name", NAMES)
def test_a_100_mb_output_is_cut_and_reported_quickly(name):
    huge = "<think>" + "x" * 100_000_000
    started = time.perf_counter()
    msg = encodings.parse(name, huge)
    assert time.perf_counter() - started < 5
    check(name, msg)
    assert "100,000,007 characters; cut to the first 1,000,000" in msg["parse_errors"][0]
    field = msg["content"] + msg.get("reasoning_content", "")
    assert len(field) <= _safe.MAX_TEXT_CHARS


def test_openai_fields_over_the_cap_are_cut_and_calls_over_it_dropped():
    big = "y" * (_safe.MAX_TEXT_CHARS + 10)
    args = json.dumps({"a": "z" * _safe.MAX_ARGUMENTS_CHARS})
    many = [{"function": {"name": f"f{i}", "arguments": "{}"}} for i in range(_safe.MAX_TOOL_CALLS + 5)]
    msg = encodings.parse(
        "openai",
        {"content": big, "reasoning": big, "tool_calls": [{"function": {"name": "f", "arguments": args}}]},
    )
    check("openai", msg)
    assert len(msg["content"]) == len(msg["reasoning_content"]) == _safe.MAX_TEXT_CHARS
    assert "tool_calls" not in msg
    errors = " | ".join(msg["parse_errors"])
    assert "the content is 1,000,010 characters; cut" in errors and "the reasoning is 1,000,010" in errors
    assert "over the 1,000,000 cap" in errors
    msg = encodings.parse("openai", {"tool_calls": many})
    check("openai", msg)
    assert (
        len(msg["tool_calls"]) == _safe.MAX_TOOL_CALLS
        and "133 tool calls in one turn" in msg["parse_errors"][0]
    )
    msg = encodings.parse("openai", {"tool_calls": [{"function": {"name": "n" * 1000}}]})
    assert msg["tool_calls"][0]["function"]["name"] == "n" * _safe.MAX_NAME_CHARS
    assert "cut to 256" in msg["parse_errors"][0]


def deep(n: int, open_: str = "[", close: str = "]") -> str:
    return open_ * n + close * n


@pytest.mark.parametrize("name", ["deepseek_v32", "hermes"])
def test_10000_deep_nesting_in_content_reasoning_and_arguments(name):
    nested = deep(10_000)
    # content and reasoning: plain text, kept as it is
    msg = encodings.parse(name, f"<think>{nested}</think>{nested}")
    check(name, msg)
    assert msg["content"] == nested and msg["reasoning_content"] == nested and msg["parse_errors"] == []
    # arguments: never parsed past the cap, reported; the call does not reach the environment as deep JSON
    if name == "deepseek_v32":
        text = (
            f'<{DSML}function_calls>\n<{DSML}invoke name="f">\n<{DSML}parameter name="a" string="false">'
            f"{nested}</{DSML}parameter>\n</{DSML}invoke>\n</{DSML}function_calls>"
        )
        msg = encodings.parse(name, text)
        check(name, msg)
        assert json.loads(msg["tool_calls"][0]["function"]["arguments"]) == {"a": nested}
        assert "nests deeper than 64 levels; kept as a string" in msg["parse_errors"][0]
    else:
        for args in (nested, '{"a": ' + deep(500) + "}", '{"a": ' + deep(10_000, '{"b":', "}") + "}"):
            msg = encodings.parse(name, f'<tool_call>\n{{"name": "f", "arguments": {args}}}\n</tool_call>')
            check(name, msg)
            assert "tool_calls" not in msg and msg["parse_errors"], args[:20]


def test_10000_deep_nesting_in_openai_messages():
    value: dict = {}
    for _ in range(10_000):
        value = {"a": value}
    cases = [
        {"content": value},
        {"reasoning": [value]},
        {"tool_calls": [{"function": {"name": "f", "arguments": value}}]},
        {"tool_calls": [{"function": {"name": "f", "arguments": deep(10_000)}}]},
        {"tool_calls": [{"id": value, "function": {"name": "f", "arguments": "{}"}}]},
        {"choices": [value]},
        deep(10_000),
        '{"content": ' + deep(10_000) + "}",
    ]
    for case in cases:
        msg = encodings.parse("openai", case)
        check("openai", msg)
        assert msg["parse_errors"] or msg.get("tool_calls"), str(case)[:40]
    assert "tool_calls" not in encodings.parse("openai", cases[3])


def test_bytes_none_and_non_text_inputs():
    assert encodings.parse("hermes", b"caf\xc3\xa9 \xff")["content"] == "café \ufffd"
    assert encodings.parse("deepseek_v32", None)["content"] == ""
    got = encodings.parse("deepseek_v32", 42)
    assert got["content"] == "" and "not text" in got["parse_errors"][0]
    with pytest.raises(TypeError):  # a wrong option is the caller's bug
        encodings.parse("hermes", "x", thinkin=True)


def test_json_depth_measures_without_parsing():
    assert _safe.json_depth('{"a": [1, {"b": "[[[[["}]}') == 3
    assert _safe.json_depth("[" * 100_000) == 100_000
    assert not _safe.too_deep('{"a": ' + "[1], " * 1000 + "[2]}")


def test_escaped_lone_surrogates_in_arguments_are_replaced_and_proper_pairs_kept_verbatim():
    hermes = '<tool_call>\n{"name": "f", "arguments": {"q": "\\ud800", "e": "\\ud83d\\ude00"}}\n</tool_call>'
    args = encodings.parse("hermes", hermes)["tool_calls"][0]["function"]["arguments"]
    assert json.loads(args) == {"q": "\ufffd", "e": "😀"}
    openai = {"tool_calls": [{"function": {"name": "f", "arguments": '{"q": "x\\udcff"}'}}]}
    assert json.loads(encodings.parse("openai", openai)["tool_calls"][0]["function"]["arguments"]) == {
        "q": "x\ufffd"
    }
    kept = '{"e": "\\ud83d\\ude00"}'  # nothing to replace: the model's own text stays byte for byte
    openai = {"tool_calls": [{"function": {"name": "f", "arguments": kept}}]}
    assert encodings.parse("openai", openai)["tool_calls"][0]["function"]["arguments"] == kept
