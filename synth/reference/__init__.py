"""The built-in reference environments, each generated deterministically from a seed by its own build.py.

`reference_store()` builds them once into a cache folder keyed by the hash of their sources, so a changed
builder gives a new store and an unchanged one is never rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import tempfile
from pathlib import Path

BUILDERS = ("trip_planning", "order_desk", "code_interpreter", "search", "code_repair")
"""Reference domains, in the order they were written; each is `toolgym.synth.reference.<name>.build`."""
SEED = 0
HERE = Path(__file__).resolve().parent


def sources_hash() -> str:
    """sha256 of every source a reference environment depends on (builders, tools, verifiers, the templates they
    share with the families, the env toolkit)."""
    from toolgym import envs

    synth, env_pkg = HERE.parent, Path(envs.__file__).resolve().parent
    h = hashlib.sha256()
    files = [(synth, p) for p in sorted(HERE.rglob("*.py")) + sorted((synth / "templates").rglob("*"))]
    files += [(synth, synth / "family.py")]
    files += [(env_pkg, p) for p in sorted((env_pkg / "inside").glob("*.py"))]
    files += [(env_pkg, env_pkg / "spec.py"), (env_pkg, env_pkg / "schema.py")]
    for root, path in files:
        if "__pycache__" in path.parts or not path.is_file():
            continue
        h.update(
            root.name.encode() + b"/" + path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes()
        )
    return h.hexdigest()[:16]


def build_all(store: str | Path, seed: int = SEED) -> list[Path]:
    """Build every reference environment into `store`; the folders written, in builder order."""
    out: list[Path] = []
    for name in BUILDERS:
        built = importlib.import_module(f"{__name__}.{name}.build").build(store, seed)
        out += built if isinstance(built, list) else [built]
    return out


def reference_envs() -> list[Path]:
    """The folders of the built reference environments, sorted by id."""
    store = reference_store()
    return sorted(p for p in store.iterdir() if (p / "env.json").is_file())


def reference_store() -> Path:
    """The folder holding the built reference environments (built on first use, atomically)."""
    cache = Path(os.environ.get("TOOLGYM_CACHE") or Path.home() / ".cache" / "toolgym")
    store = cache / f"reference-{sources_hash()}"
    if store.is_dir():
        return store
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".reference-", dir=cache))
    try:
        build_all(tmp)
        for path in [tmp, *tmp.rglob("*")]:  # the sandbox user (uid 1000) reads it through a bind mount
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:
            tmp.rename(store)
        except OSError:  # another process built it first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return store
