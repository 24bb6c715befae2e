"""A sample of synthesized tasks through the full sandboxed path (Docker) agrees with the in-process checks."""

from __future__ import annotations

from toolgym.synth import general, pipeline


def test_sandboxed_sample_agrees_with_in_process(tmp_path, docker_backend):
    for v in (0, 3):
        general.FAMILY.build_env(tmp_path / "envs", ("retail_orders", v), seed=0)
    jobs = [(str(tmp_path), "general", ("retail_orders", v), 0, 8) for v in (0, 3)]
    for job in jobs:
        pipeline._task_job(job)
    rows = [r for job in jobs for r in pipeline._task_job(job)["tasks"]]
    from toolgym.envs.spec import TaskSpec

    tasks = [TaskSpec.model_validate(r) for r in rows]
    sample = pipeline.sandbox_sample(tasks, 0.3, seed=0)
    assert {t.verifier for t in sample} and len(sample) >= 4
    assert pipeline.sandbox_check(tmp_path, sample, backend=docker_backend) == []
    # a task whose expected answer is wrong must show up as a disagreement
    broken = next(t for t in sample if t.verifier == "check_answer")
    broken = broken.model_copy(update={"params": {**broken.params, "expected": "no such answer"}})
    assert [b["task"] for b in pipeline.sandbox_check(tmp_path, [broken], backend=docker_backend)] == [
        broken.id
    ]
