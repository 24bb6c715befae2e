"""toolgym.agent: messages, wire encodings, the thinking context and LLM clients (DESIGN.md, "The agent loop").

Messages, encodings and the thinking context use the standard library only, so other parts can import
them cheaply; the httpx-based clients load on first use.
"""

from __future__ import annotations

from typing import Any

from . import encodings
from .messages import (
    Message,
    ToolCall,
    ToolCallDict,
    assistant,
    normalize_messages,
    system,
    tool_call,
    tool_result,
    user,
)
from .thinking import ModelContext, ThinkingContext, apply_thinking_rule, token_counter

_CLIENT_NAMES = {
    "ChatClient",
    "CompletionsClient",
    "ContextLengthExceeded",
    "MODEL_ERROR_KINDS",
    "ModelServerBadResponse",
    "ModelServerDropped",
    "ModelServerError",
    "ModelServerHTTPError",
    "ModelServerRejected",
    "ModelServerSlowStream",
    "ModelServerTimeout",
    "ModelServerUnavailable",
    "RetryPolicy",
    "Usage",
}


def __getattr__(name: str) -> Any:
    if name == "LocalPolicy":  # torch and transformers load only when a local model is used
        from .local import LocalPolicy

        return LocalPolicy
    if name in _CLIENT_NAMES:
        from . import clients

        return getattr(clients, name)
    raise AttributeError(f"module 'toolgym.agent' has no attribute {name!r}")


__all__ = [
    "MODEL_ERROR_KINDS",
    "ChatClient",
    "CompletionsClient",
    "ContextLengthExceeded",
    "LocalPolicy",
    "Message",
    "ModelContext",
    "ModelServerBadResponse",
    "ModelServerDropped",
    "ModelServerError",
    "ModelServerHTTPError",
    "ModelServerRejected",
    "ModelServerSlowStream",
    "ModelServerTimeout",
    "ModelServerUnavailable",
    "RetryPolicy",
    "ThinkingContext",
    "ToolCall",
    "ToolCallDict",
    "Usage",
    "apply_thinking_rule",
    "assistant",
    "encodings",
    "normalize_messages",
    "system",
    "token_counter",
    "tool_call",
    "tool_result",
    "user",
]
