"""The general family: every shape of `shapes/`, each rendered into variants (vocabulary, rules, data)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from pathlib import Path

from ..family import Candidate, Family, Key
from . import shapes as shapes_pkg
from .base import Shape, Variant


@cache
def shapes() -> dict[str, Shape]:
    """NAME -> shape, every module of `shapes/` that defines SHAPE, in name order (deterministic)."""
    out = {}
    for info in sorted(pkgutil.iter_modules(shapes_pkg.__path__), key=lambda m: m.name):
        shape = getattr(importlib.import_module(f"{shapes_pkg.__name__}.{info.name}"), "SHAPE", None)
        if shape is not None:
            out[shape.NAME] = shape
    return out


class GeneralFamily(Family):
    """Shapes x variants. A key is (shape, index); the index picks the vocabulary (index mod their count)."""

    NAME = "general"
    CATEGORY = "general"
    VERSION = "4"
    PER_SHAPE = {"tiny": 1, "demo": 1, "small": 12, "full": 110}
    TASKS = {"tiny": 10, "demo": 12, "small": 20, "full": 20}

    @property
    def SCALES(self) -> dict[str, tuple[int, int]]:  # noqa: N802 - the Family contract's name
        n = len(shapes())
        return {s: (self.PER_SHAPE[s] * n, self.TASKS[s]) for s in self.PER_SHAPE}

    def plan(self, scale: str) -> list[Key]:
        return [(name, i) for name in shapes() for i in range(self.PER_SHAPE[scale])]

    def variant(self, key: Key, seed: int) -> Variant:
        name, index = key
        shape = shapes()[name]
        return Variant(name, index, seed, shape.VOCABS[index % len(shape.VOCABS)])

    def domain(self, key: Key) -> str:
        return self.variant(key, 0).domain

    def env_id(self, key: Key) -> str:
        return f"gen_{key[0]}_{self.domain(key)}_v{key[1]:03d}"

    def variant_config(self, key: Key, seed: int) -> dict:
        v = self.variant(key, seed)
        return {"shape": v.shape, "index": v.index, "domain": v.domain}

    def build_env(self, store: Path, key: Key, seed: int) -> Path:
        out = Path(store) / self.env_id(key)
        (out / "state").mkdir(parents=True, exist_ok=True)
        v = self.variant(key, seed)
        description = shapes()[key[0]].build(out, v)
        return self.write_spec(out, key, seed, description)

    def write_spec(self, out, key, seed, description, limits=None):
        # The provenance family names the shape ("general/calendar_bookings"): the report counts schema shapes by it.
        from toolgym.envs.spec import Provenance

        from ..family import write_spec

        provenance = Provenance(
            producer="template", family=f"general/{key[0]}", seed=seed, version=self.VERSION
        )
        write_spec(out, self.env_id(key), self.CATEGORY, self.domain(key), description, provenance, limits)
        return out

    def make_tasks(self, env_dir: Path, key: Key, seed: int, n_tasks: int) -> list[Candidate]:
        return shapes()[key[0]].tasks(Path(env_dir), self.variant(key, seed), n_tasks)

    def harden(self, env_dir, key, seed, candidate, reason):
        return shapes()[key[0]].harden(Path(env_dir), self.variant(key, seed), candidate, reason)


FAMILY = GeneralFamily()
