"""A corpus: environments plus their tasks, from any of the places tasks live.

- a synthesis output folder: `<dir>/envs/<env_id>/` and `<dir>/tasks/*.parquet` (task shards);
- an env store: `<dir>/<env_id>/` folders, each with its own `tasks.jsonl`;
- `"reference"`: the built-in reference environments.
Rollouts, exports and evaluation all take a corpus, so they never care which producer made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .spec import TaskSpec, load_tasks


class CorpusError(ValueError):
    """A corpus path that holds no environments or tasks; the message names what was expected."""


@dataclass
class Corpus:
    root: Path
    env_dirs: dict[str, Path]
    """env_id -> its folder."""
    tasks: list[TaskSpec]
    """All tasks, sorted by id."""

    def tasks_of(self, env_id: str) -> list[TaskSpec]:
        return [t for t in self.tasks if t.env_id == env_id]

    def select(
        self,
        *,
        env_ids: list[str] | None = None,
        category: str | None = None,
        limit: int | None = None,
        sample: int | None = None,
        seed: int = 0,
    ) -> Corpus:
        """The tasks that pass the filters (and only their environments): the first `limit`, or a seeded
        random `sample` of them, kept in id order."""
        tasks = [
            t
            for t in self.tasks
            if (not env_ids or t.env_id in env_ids) and (category is None or t.category == category)
        ]
        if sample is not None:
            if sample > len(tasks):
                raise CorpusError(f"cannot sample {sample} tasks from the {len(tasks)} that match")
            import random

            tasks = sorted(random.Random(seed).sample(tasks, sample), key=lambda t: t.id)
        tasks = tasks[:limit] if limit else tasks
        used = {t.env_id for t in tasks}
        return Corpus(self.root, {k: v for k, v in self.env_dirs.items() if k in used}, tasks)

    def per_category(
        self,
        n: int,
        *,
        seed: int = 0,
        max_difficulty: int | None = None,
        categories: list[str] | None = None,
    ) -> Corpus:
        """A seeded sample of `n` tasks of every category (all of a category with fewer), optionally only those
        of difficulty at most `max_difficulty` and only the given `categories`: the same tasks for the same
        arguments. Each category's draw is seeded by its name, so naming fewer categories keeps the draw of
        the ones named."""
        import random

        if categories:
            have = sorted({t.category for t in self.tasks})
            unknown = sorted(set(categories) - set(have))
            if unknown:
                raise CorpusError(
                    f"no task of category {', '.join(unknown)} in {self.root}; it has: {', '.join(have) or 'none'}"
                )
        keep = [
            t
            for t in self.tasks
            if (max_difficulty is None or (t.difficulty or 0) <= max_difficulty)
            and (not categories or t.category in categories)
        ]
        tasks = []
        for category in sorted({t.category for t in keep}):
            of = [t for t in keep if t.category == category]
            tasks += random.Random(f"{seed}:{category}").sample(of, min(n, len(of)))
        tasks.sort(key=lambda t: t.id)
        used = {t.env_id for t in tasks}
        return Corpus(self.root, {k: v for k, v in self.env_dirs.items() if k in used}, tasks)


def _env_folders(store: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(store.iterdir()) if (p / "env.json").is_file()}


def load_corpus(path: str | Path) -> Corpus:
    """The corpus at `path` (a synthesis output, an env store, or "reference")."""
    from .registry import provided_store

    path = provided_store(str(path)) or path
    root = Path(path)
    if not root.is_dir():
        raise CorpusError(f"{root} is not a folder: pass a synthesis output, an env store or 'reference'.")
    if (root / "envs").is_dir() and (root / "tasks").is_dir():
        from .shards import read_task_shards

        env_dirs = _env_folders(root / "envs")
        tasks = read_task_shards(root / "tasks")
    else:
        env_dirs = _env_folders(root)
        tasks = [t for d in env_dirs.values() if (d / "tasks.jsonl").exists() for t in load_tasks(d)]
    if not env_dirs or not tasks:
        raise CorpusError(
            f"{root} holds no environments with tasks: expected envs/ and tasks/*.parquet (a synthesis output) "
            "or <env_id>/env.json folders with tasks.jsonl (an env store)."
        )
    missing = sorted({t.env_id for t in tasks} - set(env_dirs))
    if missing:
        raise CorpusError(f"tasks name environments that {root} does not hold: {', '.join(missing[:5])}")
    return Corpus(root, env_dirs, sorted(tasks, key=lambda t: t.id))
