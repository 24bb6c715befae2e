"""Tool schemas come from signatures and docstrings; the checker reports where env.json disagrees."""

from __future__ import annotations

from typing import Literal

import pytest
from toolgym.envs import tool_schema
from toolgym.envs.inside.toolgym_env import tool
from toolgym.envs.schema import SchemaError, check_tools, parse_docstring, type_schema
from toolgym.envs.spec import EnvSpec, Provenance


@tool(access="write")
def book(
    ctx,
    hotel: str,
    nights: int,
    guests: list[str],
    budget: float | None = None,
    breakfast: bool = False,
    extras: dict[str, int] | None = None,
    room: Literal["single", "double"] = "double",
) -> dict:
    """Book a hotel room.

    More text that is not part of the description.

    Args:
        hotel: The hotel's exact name,
            as list_hotels shows it.
        nights: How many nights.
        guests: Names of the guests.
        budget: Most to pay in all.
        breakfast: Whether breakfast is included.
        extras: Extra items and their counts.
        room: The room type.

    Returns:
        The booking.
    """


def test_signature_and_docstring_make_the_schema():
    s = tool_schema(book)
    assert s.access == "write" and not s.submit
    assert s.function.name == "book" and s.function.description == "Book a hotel room."
    p = s.function.parameters
    assert p["required"] == ["hotel", "nights", "guests"] and p["additionalProperties"] is False
    props = p["properties"]
    assert props["hotel"] == {
        "type": "string",
        "description": "The hotel's exact name, as list_hotels shows it.",
    }
    assert props["nights"]["type"] == "integer"
    assert props["guests"]["type"] == "array" and props["guests"]["items"] == {"type": "string"}
    assert props["budget"]["type"] == ["number", "null"]
    assert props["breakfast"] == {
        "type": "boolean",
        "description": "Whether breakfast is included.",
        "default": False,
    }
    assert props["extras"]["additionalProperties"] == {"type": "integer"}
    assert props["room"]["enum"] == ["single", "double"] and props["room"]["default"] == "double"


def test_type_schema_cases():
    assert type_schema(list, "x") == {"type": "array"}
    assert type_schema(dict, "x") == {"type": "object"}
    assert type_schema(int | str, "x") == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert type_schema(list[dict], "x") == {"type": "array", "items": {"type": "object"}}
    with pytest.raises(SchemaError, match="has no JSON schema"):
        type_schema(set, "parameter s of tool t")


def test_docstring_without_args_and_submit_tag():
    @tool(submit=True)
    def done(ctx, answer: str) -> str:
        """Hand in the answer."""

    s = tool_schema(done)
    assert s.submit and s.function.parameters["properties"]["answer"] == {"type": "string"}
    assert parse_docstring("One line.\n\nArgs:\n    a (int): first\n    b: second\n") == (
        "One line.",
        {"a": "first", "b": "second"},
    )


def test_bad_tool_functions_are_refused_with_the_fix():
    def no_doc(ctx, a: int):
        pass

    def no_ctx(a: int):
        """Doc."""

    def untyped(ctx, a):
        """Doc."""

    def star(ctx, *args: int):
        """Doc."""

    for fn, text in (
        (no_doc, "needs a docstring"),
        (no_ctx, "first parameter, named ctx"),
        (untyped, "needs a type hint"),
        (star, "no \\*args"),
    ):
        with pytest.raises(SchemaError, match=text):
            tool_schema(fn)


def test_checker_reports_each_mismatch():
    import types

    module = types.ModuleType("tools")
    module.book = book

    @tool
    def extra(ctx) -> str:
        """Not declared."""

    module.extra = extra
    good = tool_schema(book).model_dump()
    good["function"]["parameters"]["properties"]["nights"]["type"] = "string"
    good["access"] = "read"
    ghost = {"type": "function", "function": {"name": "ghost", "description": "x", "parameters": {}}}
    spec = EnvSpec(
        id="e",
        category="general",
        domain="d",
        description="d",
        tools=[good, ghost],
        provenance=Provenance(producer="test", family="t"),
    )
    problems = check_tools(spec, module)
    assert any("access='read' but tools.py says 'write'" in p for p in problems)
    assert any("does not match the signature of book()" in p and "'nights'" in p for p in problems)
    assert any("declares tool 'ghost' but tools.py has no @tool function" in p for p in problems)
    assert any("defines @tool 'extra' but env.json does not list it" in p for p in problems)


def test_committed_json_schemas_are_current():
    """docs/schema/*.json are what `toolgym envs schema` prints (regenerate them when the format changes)."""
    import json
    from pathlib import Path

    from toolgym.envs.spec import env_schema, task_schema

    docs = Path(__file__).resolve().parents[2] / "docs" / "schema"
    assert json.loads((docs / "env.schema.json").read_text()) == env_schema()
    assert json.loads((docs / "task.schema.json").read_text()) == task_schema()


def test_foreign_schemas_and_python_calls():
    import pytest
    from toolgym.envs import ToolCall, tool
    from toolgym.envs.schema import normalize_schema

    doc = {
        "type": "dict",
        "properties": {
            "n": {"type": "float"},
            "x": {"type": "any", "description": "d"},
            "pair": {"type": "tuple", "items": {"type": "dict", "properties": {"k": {"type": "str"}}}},
        },
        "required": ["n"],
    }
    assert normalize_schema(doc) == {
        "type": "object",
        "properties": {
            "n": {"type": "number"},
            "x": {"description": "d"},
            "pair": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
        },
        "required": ["n"],
    }
    call = ToolCall.from_python("mv(source='a b.txt', destination=\"d/\", flags=[1, 2.5, None])")
    assert (call.name, call.arguments) == (
        "mv",
        {"source": "a b.txt", "destination": "d/", "flags": [1, 2.5, None]},
    )
    for bad in ("mv('a')", "mv(**x)", "mv(a=open('f'))", "not a call("):
        with pytest.raises(ValueError):
            ToolCall.from_python(bad)

    class Files:
        def ls(self) -> list[str]:
            """List files."""
            return []

    with pytest.raises(TypeError, match="tools_from_class"):
        tool(Files().ls)
