"""toolgym: agentic task synthesis and sandboxed tool environments.

    import toolgym
    env = toolgym.make("toolgym/trip_planning")       # a gymnasium.Env (ToolEnv)
    obs, info = env.reset(seed=0)

`import toolgym` registers every known environment with gymnasium, so `gymnasium.make("toolgym/<id>")`
works after it; the other names load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "make": ("toolgym.envs", "make"),
    "ToolEnv": ("toolgym.envs", "ToolEnv"),
    "open_sandbox": ("toolgym.sandbox", "open_sandbox"),
    "Limits": ("toolgym.sandbox", "Limits"),
    "SandboxPool": ("toolgym.sandbox", "SandboxPool"),
    "run_episode": ("toolgym.agent.loop", "run_episode"),
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'toolgym' has no attribute {name!r}")


__all__ = ["__version__", *_EXPORTS]


def _reference_store():
    """The built-in reference environments (built on first use): a producer of `toolgym.synth`, which envs may
    not import, so the public layer plugs it into the registry."""
    from toolgym.synth.reference import reference_store

    return reference_store()


try:
    from toolgym.envs.registry import add_store_provider  # noqa: E402 - registers the gymnasium ids
except ImportError:  # an install without gymnasium still gets the sandbox and the CLI
    pass
else:
    try:
        add_store_provider("reference", _reference_store)
    except OSError:  # an unwritable cache must not break the import; `toolgym envs list` will say why
        pass
