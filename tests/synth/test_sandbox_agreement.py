"""Admission gives the same tasks in a Docker sandbox as in-process, and a sample of admitted tasks through the
rollout runner (the runtime check) agrees with admission."""

from __future__ import annotations

import json
import shutil

from toolgym.envs.spec import TaskSpec
from toolgym.synth import code_interpreter, general, pipeline


def _jobs(out, in_sandbox: bool, backend) -> list[tuple]:
    keys = [("general", ("catalogue_orders", v)) for v in (0, 3)]
    keys.append(("code_interpreter", code_interpreter.FAMILY.plan("tiny")[0]))
    return [(str(out), fam, key, 0, 8, in_sandbox, backend, True) for fam, key in keys]


def test_admission_in_a_sandbox_keeps_the_same_tasks(tmp_path, docker_backend):
    for v in (0, 3):
        general.FAMILY.build_env(tmp_path / "envs", ("catalogue_orders", v), seed=0)
    code_interpreter.FAMILY.build_env(tmp_path / "envs", code_interpreter.FAMILY.plan("tiny")[0], seed=0)
    results = {}
    for in_sandbox in (False, True):
        results[in_sandbox] = [pipeline._task_job(j) for j in _jobs(tmp_path, in_sandbox, docker_backend)]
        shutil.rmtree(tmp_path / ".work" / "tasks")
    pipeline._close_lease()
    inproc, sandboxed = results[False], results[True]
    assert sum(len(r["tasks"]) for r in inproc) >= 10
    assert json.dumps(inproc, sort_keys=True) == json.dumps(sandboxed, sort_keys=True)


def test_the_runtime_check_agrees_with_admission(tmp_path, docker_backend):
    for v in (0, 3):
        general.FAMILY.build_env(tmp_path / "envs", ("catalogue_orders", v), seed=0)
    jobs = _jobs(tmp_path, False, docker_backend)[:2]
    rows = [r for job in jobs for r in pipeline._task_job(job)["tasks"]]
    tasks = [TaskSpec.model_validate(r) for r in rows]
    sample = pipeline.sandbox_sample(tasks, 0.3, seed=0)
    assert {t.verifier for t in sample} and len(sample) >= 4
    assert pipeline.sandbox_check(tmp_path, sample, backend=docker_backend) == []
    # a task whose expected answer is wrong must show up as a disagreement
    broken = next(t for t in sample if "expected" in t.params)  # an answer or a final-state digest
    broken = broken.model_copy(update={"params": {**broken.params, "expected": "no such answer"}})
    assert [b["task"] for b in pipeline.sandbox_check(tmp_path, [broken], backend=docker_backend)] == [
        broken.id
    ]
