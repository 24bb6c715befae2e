"""What the reference builders share: write an environment folder from its tools.py/verify.py (the builder's own
file, or rendered from a template it shares with a family), a generated state and its fixed tasks, proposed as
`Candidate`s like a family's, with env.json's tool schemas taken from the tool functions themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

from toolgym.envs.spec import EnvLimits, Provenance, TaskSpec, write_tasks

from ..family import Candidate, jinja, write_spec


def state_db(out: Path) -> Path:
    """`<out>/state/db.sqlite`, ready to write: its folder made, an older build's database removed."""
    path = Path(out) / "state" / "db.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    return path


def write_env(
    out: Path,
    seed: int,
    tasks: list[Candidate],
    *,
    category: str,
    domain: str,
    description: str,
    source_dir: Path,
    limits: EnvLimits | None = None,
    rendered: tuple[str, ...] = (),
) -> Path:
    """Write environment `<out>` (its id is the folder's name; state/ must already be written): tools.py and
    verify.py, the ones named in `rendered` from `synth/templates/reference/<builder>/<file>.j2` and the others
    copied from the builder's folder `source_dir`; env.json (tool schemas from tools.py, content hash); and the
    candidates `tasks` as tasks.jsonl, numbered in order."""
    out.mkdir(parents=True, exist_ok=True)
    builder = Path(source_dir).name
    for name in ("tools.py", "verify.py"):
        if name in rendered:
            (out / name).write_text(jinja(True).get_template(f"reference/{builder}/{name}.j2").render())
        else:
            shutil.copyfile(source_dir / name, out / name)
    write_spec(out, out.name, category, domain, description, provenance(domain, seed), limits)
    write_tasks(out, task_rows(out.name, category, builder, seed, tasks))
    return out


def provenance(domain: str, seed: int) -> Provenance:
    return Provenance(producer="reference", family=domain, seed=seed, version="1")


def task_rows(
    env_id: str, category: str, family: str, seed: int, candidates: list[Candidate]
) -> list[TaskSpec]:
    """The fixed tasks of a reference environment: candidate i becomes `<env_id>-<i:03d>`."""
    return [
        c.task(f"{env_id}-{i:03d}", env_id, category, provenance(family, seed))
        for i, c in enumerate(candidates)
    ]


def main(build, doc: str | None) -> None:
    """The command line every builder shares: `python -m toolgym.synth.reference.<name>.build STORE --seed N`."""
    import argparse

    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("store")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(build(args.store, args.seed))
