"""Env stores on disk, lookup by id, `make()`, and gymnasium registration of every known id as `toolgym/<id>`.

Stores, searched in order: paths added with `add_store()` or `$TOOLGYM_ENV_PATH` (colon-separated), the
default store (`$TOOLGYM_ENV_STORE`, else `~/.cache/toolgym/envs`), and the built-in reference environments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import gymnasium

from .spec import EnvSpec, load_env_spec

NAMESPACE = "toolgym"
_user_stores: list[Path] = []


class EnvNotFound(LookupError):
    """No store holds an environment of that id."""


def default_store() -> Path:
    """Where synthesized environments go unless told otherwise."""
    return Path(os.environ.get("TOOLGYM_ENV_STORE") or Path.home() / ".cache" / "toolgym" / "envs")


def add_store(path: str | Path) -> None:
    """Search `path` (a folder of environment folders) before the default store, and register its ids."""
    path = Path(path).resolve()
    if path not in _user_stores:
        _user_stores.insert(0, path)
    register_all()


def stores(include_reference: bool = True) -> list[Path]:
    """Every store, in search order (the reference store is built on first use)."""
    found = list(_user_stores)
    for p in os.environ.get("TOOLGYM_ENV_PATH", "").split(os.pathsep):
        if p and Path(p).resolve() not in found:
            found.append(Path(p).resolve())
    found.append(default_store().resolve())
    if include_reference:
        found += [provide() for provide in _providers.values()]
    return found


_providers: dict = {}
"""Stores produced on first use by a producer outside envs (the reference environments of `toolgym.synth`):
envs imports no producer, so producers register here (`toolgym/__init__.py` adds the reference one)."""


def add_store_provider(name: str, provide) -> None:
    """Search the store that `provide()` returns (building it if need be) after every other, under `name` (what
    `load_corpus(name)` accepts), and register its ids with gymnasium."""
    _providers[name] = provide
    register_all()


def provided_store(name: str) -> Path | None:
    """The store a provider registered under `name` ("reference"), or None."""
    provide = _providers.get(name)
    return provide() if provide is not None else None


@dataclass(frozen=True)
class EnvEntry:
    id: str
    path: Path
    store: Path


def _ids_in(store: Path) -> list[EnvEntry]:
    if not store.is_dir():
        return []
    return [
        EnvEntry(p.name, p, store)
        for p in sorted(store.iterdir())
        if p.is_dir() and (p / "env.json").is_file()
    ]


def list_envs(category: str | None = None, domain: str | None = None) -> list[tuple[EnvEntry, EnvSpec]]:
    """Known environments (the first store holding an id wins), optionally filtered by category and domain."""
    seen, out = set(), []
    for store in stores():
        for entry in _ids_in(store):
            if entry.id in seen:
                continue
            seen.add(entry.id)
            try:
                spec = load_env_spec(entry.path)
            except Exception:  # noqa: BLE001 - a broken env is skipped here; `toolgym envs validate` explains it
                continue
            if (category is None or spec.category == category) and (domain is None or spec.domain == domain):
                out.append((entry, spec))
    return out


def strip_namespace(env_id: str) -> str:
    return env_id.split("/", 1)[1] if env_id.startswith(NAMESPACE + "/") else env_id


def find_env(env_id: str) -> Path:
    """The folder of environment `env_id` (with or without the `toolgym/` prefix), or a path to one."""
    env_id = strip_namespace(env_id)
    as_path = Path(env_id)
    if (as_path / "env.json").is_file():
        return as_path.resolve()
    for store in stores():
        if (store / env_id / "env.json").is_file():
            return (store / env_id).resolve()
    known = ", ".join(e.id for e, _ in list_envs()) or "none"
    raise EnvNotFound(
        f"no environment {env_id!r} in any store (known: {known}); add its store with "
        "toolgym.envs.add_store(PATH) or set TOOLGYM_ENV_STORE"
    )


def make(env_id: str, **kwargs):
    """A ToolEnv for `env_id` ("toolgym/<id>", "<id>" or a folder path); kwargs go to ToolEnv."""
    from .gym import ToolEnv

    return ToolEnv(find_env(env_id), **kwargs)


def _gym_entry_point(env_id: str, **kwargs):
    return make(env_id, **kwargs)


def register_all() -> list[str]:
    """Register `toolgym/<id>` with gymnasium for every known id (cheap: folder names only)."""
    ids = []
    for store in stores():
        for entry in _ids_in(store):
            gym_id = f"{NAMESPACE}/{entry.id}"
            if gym_id not in gymnasium.registry:
                gymnasium.register(
                    gym_id,
                    entry_point=_gym_entry_point,
                    kwargs={"env_id": entry.id},
                    disable_env_checker=True,
                    order_enforce=False,
                )
            ids.append(gym_id)
    return ids
