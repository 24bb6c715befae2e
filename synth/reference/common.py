"""What the reference builders share: write an environment folder from its tools.py/verify.py sources, a
generated state and tasks, with env.json's tool schemas taken from the tool functions themselves."""

from __future__ import annotations

import shutil
from pathlib import Path

from toolgym.envs.schema import load_tools_module, tools_from_module
from toolgym.envs.spec import EnvLimits, EnvSpec, Provenance, TaskSpec, write_env_spec, write_tasks


def write_env(
    out: Path,
    *,
    env_id: str,
    category: str,
    domain: str,
    description: str,
    source_dir: Path,
    seed: int,
    tasks: list[TaskSpec],
    limits: EnvLimits | None = None,
) -> Path:
    """Copy tools.py and verify.py from `source_dir` into `out` (state/ must already be written), derive the
    tool schemas from tools.py, and write env.json (with its content hash) and tasks.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("tools.py", "verify.py"):
        shutil.copyfile(source_dir / name, out / name)
    tools = tools_from_module(load_tools_module(out / "tools.py"))
    spec = EnvSpec(
        id=env_id,
        category=category,
        domain=domain,
        description=description,
        tools=tools,
        limits=limits or EnvLimits(),
        provenance=Provenance(producer="reference", family=domain, seed=seed, version="1"),
    )
    write_env_spec(out, spec)
    write_tasks(out, tasks)
    return out


def provenance(domain: str, seed: int) -> Provenance:
    return Provenance(producer="reference", family=domain, seed=seed, version="1")


def main(build, doc: str | None) -> None:
    """The command line every builder shares: `python -m toolgym.synth.reference.<name>.build STORE --seed N`."""
    import argparse

    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0] if doc else None)
    ap.add_argument("store")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(build(args.store, args.seed))
