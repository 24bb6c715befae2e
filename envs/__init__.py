"""toolgym.envs: the environment format, the env server, the gymnasium API and the registry.

env = toolgym.envs.make("toolgym/trip_planning")      # a gymnasium.Env (ToolEnv)
obs, info = env.reset(seed=0); obs, reward, terminated, truncated, info = env.step(message)
"""

from __future__ import annotations

from .gym import StepInfo, ToolEnv, ToolResult
from .inside.toolgym_env import ClassToolset, Context, ToolError, Toolset, tool, tools_from_class
from .lease import IN_PROCESS, EnvLease, InProcess, requirement_sets
from .messages import Message, ToolCall, ToolCallDict
from .registry import EnvNotFound, add_store, default_store, find_env, list_envs, make, register_all, stores
from .runtime import EnvRuntimeError, EnvServerOps, Script, replay, sandbox_mounts
from .schema import check_tools, tool_schema, tools_from_module
from .spec import (
    EnvLimits,
    EnvSpec,
    Provenance,
    TaskSpec,
    ToolSchema,
    TurnSpec,
    env_schema,
    load_env_spec,
    load_tasks,
    write_env_spec,
    write_tasks,
)
from .validate import validate_env

__all__ = [
    "IN_PROCESS",
    "ClassToolset",
    "Context",
    "EnvLease",
    "EnvLimits",
    "EnvNotFound",
    "EnvRuntimeError",
    "EnvServerOps",
    "EnvSpec",
    "InProcess",
    "Message",
    "Provenance",
    "Script",
    "StepInfo",
    "TaskSpec",
    "ToolError",
    "Toolset",
    "TurnSpec",
    "ToolCall",
    "ToolCallDict",
    "ToolEnv",
    "ToolResult",
    "ToolSchema",
    "replay",
    "requirement_sets",
    "tool",
    "tools_from_class",
    "write_env_spec",
    "add_store",
    "check_tools",
    "default_store",
    "env_schema",
    "find_env",
    "list_envs",
    "load_env_spec",
    "load_tasks",
    "make",
    "register_all",
    "sandbox_mounts",
    "stores",
    "tool_schema",
    "tools_from_module",
    "validate_env",
    "write_tasks",
]

try:  # gymnasium.make("toolgym/<id>") works for every id known at import; add_store() registers more
    register_all()
except OSError:  # an unreadable store must not break the import; `toolgym envs list` will say why
    pass
