"""Does a model's chat template show the model its tools? Checked before `--encoding chat` runs.

The chat path hands tools to the server, whose chat template must render them; a template that ignores
`tools` (SmolLM2's, for one) gives a model that never sees a tool and a run that fails silently. The check
renders the template with and without one probe tool -- locally with jinja2 when the model folder is here,
else through the server's `/tokenize` endpoint -- and calls equal renders a template that drops tools.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

PROBE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "toolgym_template_probe",
        "description": "Probe tool: toolgym checks that the chat template lists it.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "any text"}},
            "required": ["query"],
        },
    },
}
PROBE_MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "What can you do?"}]

# tokenizer_config.json keys whose values templates read (HF passes every special token to the template)
_SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token")


class ChatTemplateDropsTools(ValueError):
    """The model's chat template renders the same prompt with and without tools."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The chat template of {model} drops the tools, so the model would never see them: "
            "run with `--encoding hermes` (toolgym renders the prompt, tools included, itself)."
        )


def chat_template_of(model_dir: str | Path) -> str | None:
    """The chat template a Hugging Face checkpoint folder carries, for a request with tools; None if none.

    transformers 5 saves it as `chat_template.jinja`; older checkpoints keep it in tokenizer_config.json,
    as a string or as named templates (HF picks `tool_use` when tools are passed, else `default`).
    """
    folder = Path(model_dir)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    for name in ("tokenizer_config.json", "chat_template.json"):
        try:
            template = json.loads((folder / name).read_text()).get("chat_template")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(template, list):
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("tool_use") or named.get("default")
        if isinstance(template, str) and template:
            return template
    return None


def special_tokens_of(model_dir: str | Path) -> dict[str, str]:
    """`bos_token` and friends from tokenizer_config.json, as strings (templates print them)."""
    try:
        config = json.loads((Path(model_dir) / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return {}
    tokens = {}
    for key in _SPECIAL_TOKEN_KEYS:
        value = config.get(key)
        if isinstance(value, dict):  # the older AddedToken form
            value = value.get("content")
        if isinstance(value, str):
            tokens[key] = value
    return tokens


def render_chat_template(
    template: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = True,
    **variables: Any,
) -> str:
    """Render a Hugging Face chat template the way transformers' apply_chat_template does."""
    return (
        _environment()
        .from_string(template)
        .render(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt, **variables)
    )


def template_renders_tools(template: str, special_tokens: dict[str, str] | None = None) -> bool:
    """Whether `template` renders the probe conversation differently once a tool is passed."""
    variables = special_tokens or {}
    with_tools = render_chat_template(template, PROBE_MESSAGES, [PROBE_TOOL], **variables)
    without = render_chat_template(template, PROBE_MESSAGES, None, **variables)
    return with_tools != without


def local_template_renders_tools(model_dir: str | Path) -> bool | None:
    """`template_renders_tools` for a checkpoint folder; None when it carries no chat template."""
    template = chat_template_of(model_dir)
    if template is None:
        return None
    return template_renders_tools(template, special_tokens_of(model_dir))


def served_template_renders_tools(
    base_url: str, model: str, *, timeout_s: float = 30.0, transport: Any = None
) -> bool | None:
    """The same check through a vLLM server: tokenize the probe conversation with and without the tool.

    None when the server cannot tell (no `/tokenize`, or it rejects the request): the run then goes ahead
    as before, since a server we cannot question is not proof of a bad template.
    """
    import httpx

    url = base_url.rstrip("/").removesuffix("/v1") + "/tokenize"
    body = {"model": model, "messages": PROBE_MESSAGES, "add_generation_prompt": True}
    tokens = []
    with httpx.Client(timeout=timeout_s, transport=transport) as client:
        for tools in ([PROBE_TOOL], None):
            try:
                reply = client.post(url, json={**body, "tools": tools} if tools else body)
            except httpx.HTTPError:
                return None
            if reply.status_code != 200:
                return None
            try:
                tokens.append(reply.json()["tokens"])
            except (ValueError, KeyError, TypeError):
                return None
    return tokens[0] != tokens[1]


def require_tools_in_chat_template(base_url: str | None, model: str, *, timeout_s: float = 30.0) -> None:
    """Raise ChatTemplateDropsTools when `model`'s chat template ignores tools, before an `--encoding chat` run.

    `model` is checked locally when it names a checkpoint folder here (vLLM serves a model under its path
    unless told another name), else on every server of `base_url` (one URL or a `URL[=CAP],...` list).
    """
    from .clients import base_urls

    renders = local_template_renders_tools(model) if Path(model).is_dir() else None
    if renders is False:
        raise ChatTemplateDropsTools(model)
    if renders:
        return
    for url in base_urls(base_url) if base_url else []:
        if served_template_renders_tools(url, model, timeout_s=timeout_s) is False:
            raise ChatTemplateDropsTools(model)


def _raise_exception(message: str) -> None:
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys=False
):
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


_ENV = None
_PROBE_DAY = datetime(2025, 1, 1)


def _environment():
    """transformers' template environment: sandboxed, trimmed blocks, loop controls, `{% generation %}`."""
    global _ENV
    if _ENV is None:
        from jinja2 import nodes
        from jinja2.ext import Extension, loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        class GenerationBlock(Extension):
            """Templates mark the assistant's tokens with `{% generation %}`; rendering keeps the body."""

            tags = {"generation"}

            def parse(self, parser):
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

            def _body(self, caller):
                return caller()

        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        # a fixed day: the two renders compared must differ only by the tools
        env.globals["strftime_now"] = lambda fmt: _PROBE_DAY.strftime(fmt)
        _ENV = env
    return _ENV
