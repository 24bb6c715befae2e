"""A worker's sandbox that dies mid-admission costs one retry in a fresh sandbox, never the run, and the
environment's tasks come out the same; a second failure stops the run with the environment named."""

from __future__ import annotations

import json

import pytest
from toolgym.envs.runtime import EnvRuntimeError, LocalEnvServer
from toolgym.synth import general, pipeline


class DiesOnce(LocalEnvServer):
    failures = 1

    def replay_many(self, scripts):
        if DiesOnce.failures:
            DiesOnce.failures -= 1
            raise EnvRuntimeError("the env server's Python session was restarted: it ran out of memory")
        return super().replay_many(scripts)


def _job(out, in_sandbox: bool) -> tuple:
    return (str(out), "general", ("catalogue_orders", 0), 0, 8, in_sandbox, None, True)


def test_a_dead_sandbox_is_retried_once_with_the_same_result(tmp_path, monkeypatch):
    general.FAMILY.build_env(tmp_path / "envs", ("catalogue_orders", 0), seed=0)
    want = pipeline._task_job(_job(tmp_path, False))
    (tmp_path / ".work" / "tasks" / f"{want['env_id']}.json").unlink()
    made = []
    monkeypatch.setattr(pipeline, "_close_lease", lambda: made.append("closed"))
    monkeypatch.setattr(
        pipeline, "_admission_ops", lambda env_dir, in_sandbox, backend: (DiesOnce(env_dir), True)
    )
    DiesOnce.failures = 1
    got = pipeline._task_job(_job(tmp_path, True))
    assert made == ["closed"] and json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)

    (tmp_path / ".work" / "tasks" / f"{want['env_id']}.json").unlink()
    DiesOnce.failures = 2
    with pytest.raises(EnvRuntimeError, match="catalogue_orders.*failed twice"):
        pipeline._task_job(_job(tmp_path, True))
