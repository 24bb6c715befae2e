"""Tool schemas from Python signatures and Google-style docstrings: the function is the one source of truth.

`tool_schema(fn)` builds the OpenAI function schema (plus access/submit tags) of a `@tool` function (or of a
method of a class turned into tools by `tools_from_class`); `tools_from_module` does it for a whole tools.py;
`check_tools` reports where env.json disagrees with the code: exactly (strict, toolgym's own environments) or
in what a call needs (lenient, environments that ship their own schemas).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from .inside import toolgym_env
from .spec import EnvSpec, ToolSchema

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_SECTION = re.compile(r"^\s*(Returns|Return|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


class SchemaError(ValueError):
    """A tool function whose signature cannot be turned into a JSON schema."""


def type_schema(hint: Any, where: str) -> dict:
    """JSON Schema of one type hint: str, int, float, bool, list[...], dict[...], Literal, X | None."""
    if hint is inspect.Parameter.empty or hint is Any:
        raise SchemaError(f"{where} needs a type hint (str, int, float, bool, list[...], dict or Literal)")
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if typing.is_typeddict(hint):  # a nested object with named fields keeps them
        hints = typing.get_type_hints(hint)
        props = {k: type_schema(v, f"{where}.{k}") for k, v in hints.items()}
        required = [k for k in hints if k in hint.__required_keys__]
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        fields = dataclasses.fields(hint)
        props = {f.name: type_schema(hints[f.name], f"{where}.{f.name}") for f in fields}
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is list or origin is list:
        return {"type": "array", "items": type_schema(args[0], where)} if args else {"type": "array"}
    if hint is dict or origin is dict:
        if len(args) == 2 and args[1] is not Any:
            return {"type": "object", "additionalProperties": type_schema(args[1], where)}
        return {"type": "object"}
    if origin is Literal:
        schema = {"enum": list(args)}
        kinds = {_SCALARS.get(type(a)) for a in args}
        if len(kinds) == 1 and None not in kinds:
            schema = {"type": kinds.pop(), **schema}
        return schema
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        nullable = len(inner) < len(args)
        if len(inner) == 1:
            schema = type_schema(inner[0], where)
            if nullable and isinstance(schema.get("type"), str):
                return {**schema, "type": [schema["type"], "null"]}
            return schema
        schemas = [type_schema(a, where) for a in inner] + ([{"type": "null"}] if nullable else [])
        return {"anyOf": schemas}
    raise SchemaError(
        f"{where} has a type hint {hint!r} that has no JSON schema; use str, int, float, bool, "
        "list[...], dict[str, ...], Literal[...] or X | None"
    )


_FOREIGN_TYPES = {
    "dict": "object",
    "float": "number",
    "double": "number",
    "tuple": "array",
    "list": "array",
    "int": "integer",
    "str": "string",
    "bool": "boolean",
}


def normalize_schema(schema: Any) -> Any:
    """A foreign parameter schema in the JSON Schema words models and validators know: the type names some
    benchmarks write ("dict", "float", "tuple", "any", ...) become "object", "number", "array" (or no type), the
    rest is kept as it is (nested properties, items, enums, descriptions). For env.json of imported tools."""
    if isinstance(schema, list):
        return [normalize_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "type":
            types = [value] if isinstance(value, str) else list(value) if isinstance(value, list) else None
            if types is None:
                out[key] = value
                continue
            mapped = [_FOREIGN_TYPES.get(t, t) for t in types if t != "any"]
            if mapped:
                out[key] = mapped[0] if len(mapped) == 1 else mapped
        elif key in ("properties", "$defs", "definitions", "patternProperties"):
            out[key] = (
                {k: normalize_schema(v) for k, v in value.items()} if isinstance(value, dict) else value
            )
        elif key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "not", "prefixItems"):
            out[key] = normalize_schema(value)
        else:
            out[key] = value
    return out


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {param: description}) from a Google-style docstring: the first paragraph, and `Args:`."""
    doc = inspect.cleandoc(doc or "")
    lines = doc.splitlines()
    description: list[str] = []
    for line in lines:
        if not line.strip() or _ARGS_HEADER.match(line) or _SECTION.match(line):
            break
        description.append(line.strip())
    params: dict[str, str] = {}
    in_args, current, indent = False, None, None
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args, current, indent = True, None, None
            continue
        if not in_args:
            continue
        if _SECTION.match(line) or (line.strip() and not line.startswith((" ", "\t"))):
            break
        if not line.strip():
            continue
        this_indent = len(line) - len(line.lstrip())
        m = _ARG_LINE.match(line)
        if m and (indent is None or this_indent <= indent):
            indent = this_indent
            current = m.group(1).lstrip("*")
            params[current] = m.group(3).strip()
        elif current is not None:  # a continuation line of the current parameter
            params[current] = (params[current] + " " + line.strip()).strip()
    return " ".join(description), params


def tool_schema(fn, *, meta: dict | None = None, first: str | None = "ctx") -> ToolSchema:
    """The schema of one tool function. Its first parameter is the Context (`ctx`) and is not part of it;
    parameters without a default are required; `Args:` gives each parameter's description. For a method of a
    toolset class, `first` is "self" (or None for a static method) and `meta` its access and submit tags."""
    meta = meta or getattr(fn, "__toolgym_tool__", {"access": "read", "submit": False})
    name = fn.__name__
    description, docs = parse_docstring(fn.__doc__)
    if not description:
        raise SchemaError(f"tool {name} needs a docstring whose first paragraph says what it does")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # noqa: BLE001 - an unresolvable annotation is the author's to fix
        raise SchemaError(f"the type hints of tool {name} do not resolve: {exc}") from None
    params = list(inspect.signature(fn).parameters.values())
    if first == "ctx" and (not params or params[0].name != "ctx"):
        raise SchemaError(
            f"tool {name} must take the Context as its first parameter, named ctx (for the methods of a "
            "class, use tools_from_class(TheClass))"
        )
    properties: dict[str, dict] = {}
    required: list[str] = []
    for p in params[1:] if first is not None else params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise SchemaError(
                f"tool {name}: parameter {p.name} must be a plain keyword parameter (no *args/**kw)"
            )
        schema = type_schema(hints.get(p.name, p.annotation), f"parameter {p.name} of tool {name}")
        if p.name in docs:
            schema["description"] = docs[p.name]
        if p.default is p.empty:
            required.append(p.name)
        elif p.default is not None and isinstance(p.default, (str, int, float, bool)):
            schema["default"] = p.default
        properties[p.name] = schema
    parameters = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return ToolSchema.model_validate(
        {
            "type": "function",
            "function": {"name": name, "description": description, "parameters": parameters},
            "access": meta.get("access", "read"),
            "submit": bool(meta.get("submit", False)),
        }
    )


def load_tools_module(path: str | Path, name: str = "tools"):
    """Import an environment's tools.py (or verify.py) on the host, with `toolgym_env` importable and the
    environment's lib/ (and its prepared requirements, where this host has them) on sys.path while it imports.
    The modules it imported from them are forgotten after, so the next environment imports its own."""
    sys.modules.setdefault("toolgym_env", toolgym_env)
    from .inside.envserver import load_module

    env_dir = Path(path).parent
    paths = [str(p) for p in [env_dir / "lib", *host_requirement_paths(env_dir)] if p.is_dir()]
    if not paths:
        return load_module(name, str(path))
    before = list(sys.path)
    sys.path[:0] = paths
    roots = tuple(os.path.join(p, "") for p in paths)
    try:
        return load_module(name, str(path))
    finally:
        sys.path[:] = before
        for key, module in list(sys.modules.items()):
            if (getattr(module, "__file__", None) or "").startswith(roots):
                del sys.modules[key]


def host_requirement_paths(env_dir: Path) -> list[Path]:
    """The host's prepared site folders of an environment's requirements (none where they are not prepared)."""
    try:
        import json

        lines = json.loads((env_dir / "env.json").read_text()).get("requirements") or []
    except (OSError, ValueError):
        return []
    if not lines:
        return []
    from toolgym.sandbox import requirements

    h = requirements.requirements_hash(lines)
    # Prepared for the sandbox's Python: usable here only where this is the same Python.
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if not requirements.prepared(h) or here != requirements.PYTHON_TARGET["python_version"]:
        return []
    return [requirements.site_dir(h)]


def tool_functions(module) -> dict[str, Any]:
    """The `@tool` functions of a module, by name, in definition order."""
    found = {}
    for attr, value in vars(module).items():
        if callable(value) and hasattr(value, "__toolgym_tool__") and not attr.startswith("_"):
            found[value.__name__] = value
    return found


@dataclasses.dataclass
class CodeTool:
    """A tool as its code gives it: the function (or method) to read its signature from, if there is one."""

    name: str
    meta: dict
    fn: Any = None
    first: str | None = "ctx"
    """The leading parameter that is not an argument: "ctx" (an @tool function), "self" (a method), None."""

    def schema(self) -> ToolSchema:
        return tool_schema(self.fn, meta=self.meta, first=self.first)


def code_tools(module) -> dict[str, CodeTool]:
    """Every tool tools.py defines, by name, in definition order: its @tool functions, then each toolset's."""
    from .inside.envserver import toolsets_of

    found = {name: CodeTool(name, fn.__toolgym_tool__, fn) for name, fn in tool_functions(module).items()}
    for toolset in toolsets_of(module):
        cls = getattr(toolset, "cls", None)
        for name, meta in toolset.tools().items():
            if cls is None:
                found[name] = CodeTool(
                    name, meta
                )  # no code to read (an MCP server's tools): env.json's schema
                continue
            raw = inspect.getattr_static(cls, name)
            fn = getattr(cls, name)
            first = None if isinstance(raw, staticmethod) else "self"
            if isinstance(raw, classmethod):
                fn, first = raw.__func__, "self"
            found[name] = CodeTool(name, meta, fn, first)
    return found


def tools_from_module(module) -> list[ToolSchema]:
    """Every tool's schema, in definition order: what env.json's `tools` should hold."""
    tools = code_tools(module).values()
    unreadable = [t.name for t in tools if t.fn is None]
    if unreadable:
        raise SchemaError(
            f"tool {unreadable[0]!r} comes from a toolset with no code to read its schema from; write its "
            "schema into env.json (schema_check: lenient)"
        )
    return [t.schema() for t in tools]


def check_tools(spec: EnvSpec, module) -> list[str]:
    """One sentence per disagreement between env.json's tools and the tools of tools.py (its `@tool` functions
    and toolsets): the schemas must be equal (schema_check "strict") or compatible ("lenient")."""
    problems = []
    functions = code_tools(module)
    declared = {t.function.name: t for t in spec.tools}
    for name, tool in declared.items():
        code = functions.get(name)
        if code is None:
            problems.append(
                f"env.json declares tool {name!r} but tools.py has no @tool function or toolset tool of that name."
            )
            continue
        for field in ("access", "submit"):
            actual_value = code.meta.get(field, "read" if field == "access" else False)
            if actual_value != getattr(tool, field):
                problems.append(
                    f"tool {name!r}: env.json says {field}={getattr(tool, field)!r} but tools.py says "
                    f"{actual_value!r}; make them agree."
                )
        if spec.schema_check == "lenient":
            problems += _compatible(name, tool.function.parameters, code)
            continue
        try:
            actual = code.schema() if code.fn is not None else None
        except SchemaError as exc:
            problems.append(f"{exc}.")
            continue
        if actual is None:
            problems.append(
                f"tool {name!r} has no code to read its schema from; set schema_check to lenient in env.json."
            )
            continue
        if actual.function.parameters != tool.function.parameters:
            problems.append(
                f"tool {name!r}: the parameter schema in env.json does not match the signature of "
                f"{name}() in tools.py ({_param_diff(tool.function.parameters, actual.function.parameters)}); "
                "regenerate env.json from tools.py."
            )
        elif actual.function.description != tool.function.description:
            problems.append(
                f"tool {name!r}: the description in env.json differs from the docstring in tools.py; "
                "regenerate env.json from tools.py."
            )
    for name in functions:
        if name not in declared:
            problems.append(
                f"tools.py defines @tool {name!r} but env.json does not list it; add it to env.json."
            )
    return problems


def _compatible(name: str, parameters: dict, code: CodeTool) -> list[str]:
    """Lenient check: a call that fits env.json's schema must be a call the code accepts, and every argument
    the code requires must be one env.json names and requires. Descriptions, types and spacing may differ."""
    if code.fn is None:
        return []  # the tool runs elsewhere (an MCP server): its schema is the one it announced
    params = list(inspect.signature(code.fn).parameters.values())
    if code.first is not None:
        params = params[1:]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    needed = {p.name for p in params if p.name in names and p.default is p.empty}
    declared = set(parameters.get("properties") or {})
    required = set(parameters.get("required") or [])
    problems = []
    extra = sorted(declared - names) if not takes_any else []
    if extra:
        problems.append(
            f"tool {name!r}: env.json has parameter(s) {extra} that the code does not take; remove them or "
            "add them to the code."
        )
    missing = sorted(needed - required)
    if missing:
        problems.append(
            f"tool {name!r}: the code requires {missing}, which env.json does not "
            f"{'require' if set(missing) <= declared else 'declare'}; add them to its required list."
        )
    return problems


def _param_diff(declared: dict, actual: dict) -> str:
    d, a = declared.get("properties", {}), actual.get("properties", {})
    if set(d) != set(a):
        return f"env.json has {sorted(d)}, the function has {sorted(a)}"
    for k in a:
        if d[k] != a[k]:
            return f"parameter {k!r}: env.json {d[k]} vs function {a[k]}"
    return f"required: env.json {declared.get('required')} vs function {actual.get('required')}"
