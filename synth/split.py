"""Held-out splits by environment: whole environments (and, for general, whole schema shapes) go to train or to
held-out, so a score on held-out tasks measures transfer to environments the model never trained on, not
memorised tasks, tools or schemas.

A split writes two corpora, `OUT/train/` and `OUT/held_out/` (each `envs/`, `tasks/*.parquet`, `manifest.json`,
loadable by every command that takes a corpus), and `OUT/split.json`, which says which unit went where. The same
corpus, fraction and seed always give the same split and the same bytes.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from toolgym.envs.corpus import Corpus, CorpusError
from toolgym.envs.spec import load_env_spec

PARTS = ("train", "held_out")


def split_unit(env_dir: Path) -> str:
    """What must stay on one side of the split: a synthesized general environment's schema shape (its provenance
    family, "general/<shape>": environments of one shape share tables, tools and task templates), any other
    environment by itself."""
    spec = load_env_spec(env_dir)
    family = spec.provenance.family
    if spec.category == "general" and family.startswith("general/"):
        return f"general:{family}"
    return f"{spec.category}:{spec.id}"


def plan_split(corpus: Corpus, held_out: float = 0.2, seed: int = 0) -> dict[str, dict]:
    """{unit: {"part", "category", "envs", "tasks"}}: per category, a seeded `held_out` share of its units (at
    least one where it has two or more, never all) is held out, the rest is train."""
    if not 0 < held_out < 1:
        raise ValueError(f"--held-out is a share between 0 and 1 (e.g. 0.2), not {held_out}")
    tasks_per_env = Counter(t.env_id for t in corpus.tasks)
    units: dict[str, dict] = {}
    for env_id, env_dir in sorted(corpus.env_dirs.items()):
        if not tasks_per_env[env_id]:
            continue
        unit = split_unit(env_dir)
        entry = units.setdefault(unit, {"category": unit.split(":", 1)[0], "envs": [], "tasks": 0})
        entry["envs"].append(env_id)
        entry["tasks"] += tasks_per_env[env_id]
    by_category: dict[str, list[str]] = defaultdict(list)
    for unit in sorted(units):
        by_category[units[unit]["category"]].append(unit)
    for category, names in sorted(by_category.items()):
        order = list(names)
        random.Random(f"{seed}:{category}").shuffle(order)
        n = min(max(1, round(held_out * len(order))), len(order) - 1) if len(order) >= 2 else 0
        for i, unit in enumerate(order):
            units[unit]["part"] = "held_out" if i < n else "train"
    return dict(sorted(units.items()))


def split_corpus(corpus: Corpus, out: str | Path, held_out: float = 0.2, seed: int = 0) -> dict:
    """Write the split of `corpus` into `out` (see the module's docstring); returns what split.json holds."""
    from .filter import write_filtered

    out = Path(out)
    plan = plan_split(corpus, held_out, seed)
    if not plan:
        raise CorpusError(f"{corpus.root} has no environment with tasks to split")
    part_of = {env_id: u["part"] for u in plan.values() for env_id in u["envs"]}
    summary: dict = {"held_out_share": held_out, "seed": seed, "corpus": str(corpus.root), "parts": {}}
    for part in PARTS:
        tasks = [t for t in corpus.tasks if part_of.get(t.env_id) == part]
        manifest = write_filtered(
            out / part,
            corpus,
            tasks,
            {"split": part, "held_out_share": held_out, "seed": seed, "dropped": {}},
        )
        summary["parts"][part] = {
            "units": sum(u["part"] == part for u in plan.values()),
            "envs": manifest["envs"],
            "tasks": manifest["tasks"],
            "by_category": manifest["by_category"],
        }
    # Categories with a single unit: nothing of them can be held out, which the command says.
    summary["alone"] = sorted(c for c, n in Counter(u["category"] for u in plan.values()).items() if n < 2)
    summary["units"] = plan
    (out / "split.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
