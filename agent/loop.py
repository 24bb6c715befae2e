"""The agent loop: one episode of a policy against a `ToolEnv`, within step, token and wall-clock budgets.

Nothing the model writes can crash it: output that cannot be read goes back to the model as an error (and is
counted) without reaching the environment; bad calls come back from the env server as tool errors; a model
that repeats the same failure ends the episode cleanly. Every turn is recorded in the `Trajectory`.
"""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import dataclass
from typing import Any

from .policies import Policy, Turn
from .trajectory import StepRecord, Trajectory

FEEDBACK_NAME = "toolgym_feedback"


@dataclass(frozen=True)
class Budgets:
    """When an episode stops although the task is not done (the trajectory is then `truncated`)."""

    max_steps: int = 30
    """Model turns, malformed ones included."""
    max_tokens: int | None = None
    """Prompt plus completion tokens over the whole episode."""
    max_wall_s: float | None = None
    """Wall-clock seconds for the whole episode."""
    max_repeated_failures: int = 3
    """The same failure (the same malformed output, or the same failing call) this many times in a row ends
    the episode."""


def _takes_seed(start: Any) -> bool:
    """Whether a policy's `start` takes the episode's seed (`seed=`), so a sampling policy seeds from it."""
    try:
        params = inspect.signature(start).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable without a signature: the plain call
        return False
    # A named `seed` only: a **kwargs wrapper may hand it to a start that takes none.
    return any(p.name == "seed" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _feedback(errors: list[str]) -> dict:
    """The error observation for output that never reached the environment.

    It travels as a user message named toolgym_feedback in the model's view only: the environment's
    conversation (and so the dataset) never holds the malformed turn.
    """
    lines = "; ".join(errors[:5])
    return {
        "role": "user",
        "name": FEEDBACK_NAME,
        "content": f"Your last message could not be read as a reply or tool call ({lines}). "
        "Write the tool call again in the required format, or answer in plain text.",
    }


async def run_episode(
    env,
    policy: Policy,
    *,
    seed: int | None = None,
    task_id: str | None = None,
    budgets: Budgets = Budgets(),
) -> Trajectory:
    """Run one episode of `policy` on `env` (a ToolEnv, stepped through its async twin)."""
    started = time.perf_counter()
    options = {"task_id": task_id} if task_id else None
    _, info = await env.areset(seed=seed, options=options)
    task = env.unwrapped.task
    # The episode's seed (the rollout's per-sample seed) fixes a sampling policy's draws whatever worker runs
    # the episode and whenever; policies whose start takes no seed are started as before.
    if _takes_seed(policy.start):
        policy.start(task, seed=seed)
    else:
        policy.start(task)
    traj = Trajectory(
        env_id=info.get("env_id", ""),
        task_id=info.get("task_id") or "",
        policy=policy.name,
        seed=seed,
        messages=info["messages"],
        tools=info["tools"],
    )
    tools = info["tools"]  # the current user turn's tools (a multi-turn task may change them)
    pending: list[dict] = []  # feedback the model sees before its next turn
    last_failure: str | None = None
    repeats = 0
    tokens = 0
    for index in range(budgets.max_steps):
        if budgets.max_wall_s is not None and time.perf_counter() - started > budgets.max_wall_s:
            traj.stop_reason = "time_budget"
            break
        t0 = time.perf_counter()
        view = traj.messages + pending
        try:
            turn: Turn = await policy.act(view, tools)
        except Exception as exc:  # noqa: BLE001 - a dead server ends the episode, not the run
            # A client's ModelServerError carries its `kind` (model_timeout, model_http_error, context_length,
            # ...) and `infra`: the infrastructure's failures end as "model_error" (the rollout retries them);
            # the agent's own (its context outgrew the window) end with their kind as the stop reason.
            # Anything else a policy raises is a "model_error" of kind "model_error".
            from .encodings._safe import one_line

            kind = getattr(exc, "kind", None)
            named = isinstance(kind, str) and bool(kind)
            try:
                detail = one_line(str(exc), 1000)
            except Exception:  # noqa: BLE001 - even a failing __str__ ends the episode cleanly
                detail = ""
            if not named:
                detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            traj.steps.append(
                StepRecord(
                    index,
                    time.perf_counter() - t0,
                    0.0,
                    0.0,
                    errors=[{"kind": kind if named else "model_error", "detail": detail}],
                )
            )
            traj.stop_reason = kind if named and getattr(exc, "infra", True) is False else "model_error"
            break
        t1 = time.perf_counter()
        model_s = turn.model_s if turn.model_s is not None else t1 - t0
        step = StepRecord(
            index,
            model_s,
            0.0,
            (t1 - t0) - model_s,
            turn.prompt_tokens,
            turn.completion_tokens,
            context_strategy=turn.context_strategy,
        )
        traj.steps.append(step)
        tokens += turn.prompt_tokens + turn.completion_tokens
        if turn.stop:
            traj.stop_reason = turn.stop
            break
        calls = turn.message.get("tool_calls") or []
        step.tool_calls = len(calls)
        failure = None
        if turn.parse_errors and not calls:
            # Unreadable output: back to the model as an error, never to the environment.
            step.errors += [{"kind": "parse", "detail": e} for e in turn.parse_errors]
            traj.malformed.append({"step": index, "text": turn.raw_text, "errors": turn.parse_errors})
            pending = [
                dict(turn.message, content=turn.raw_text or turn.message.get("content", "")),
                _feedback(turn.parse_errors),
            ]
            failure = "parse:" + (turn.raw_text or "")
            step.loop_s += time.perf_counter() - t1
        else:
            if turn.parse_errors:  # readable calls with anomalies: counted, the calls still run
                step.errors += [{"kind": "parse", "detail": e} for e in turn.parse_errors]
            pending = []
            before = len(traj.messages)
            te = time.perf_counter()
            step.loop_s += te - t1
            _, reward, terminated, truncated, info = await env.astep(turn.message)
            t2 = time.perf_counter()
            step.env_s = t2 - te
            traj.messages = info["messages"]
            tools = info.get("tools", tools)
            tool_msgs = [m for m in traj.messages[before:] if m.get("role") == "tool"]
            for msg, result in zip(tool_msgs, info.get("tool_results", []), strict=False):
                if not result["ok"]:
                    step.errors.append(
                        {"kind": result["error_kind"] or "tool_error", "detail": msg["content"]}
                    )
            if info.get("env_error"):
                step.errors.append({"kind": "env_error", "detail": info["env_error"]})
            if calls and step.errors and len(step.errors) == len(calls):
                failure = "calls:" + json.dumps([c["function"] for c in calls], sort_keys=True)
            step.loop_s += time.perf_counter() - t2
            if terminated or truncated:
                traj.reward = float(reward)
                traj.terminated, traj.truncated = terminated, truncated
                traj.verdict = info.get("verdict")
                traj.answer = info.get("answer")
                traj.stop_reason = (
                    "env_error"
                    if info.get("env_error")
                    else "step_budget"
                    if truncated
                    else ("submit" if calls else "answer")
                )
                break
        if failure is not None and failure == last_failure:
            repeats += 1
        else:
            repeats = 1 if failure is not None else 0
        last_failure = failure
        if repeats >= budgets.max_repeated_failures:
            traj.stop_reason = "repeated_failure"
            break
        if budgets.max_tokens is not None and tokens >= budgets.max_tokens:
            traj.stop_reason = "token_budget"
            break
    else:
        traj.stop_reason = "step_budget"
    if not traj.terminated:
        traj.truncated = True
    traj.wall_s = time.perf_counter() - started
    return traj


def summary(traj: Trajectory) -> dict[str, Any]:
    """A one-line view of a trajectory for logs and progress bars."""
    errors = {k: v for k, v in traj.error_counts().items() if v}
    return {
        "task": traj.task_id,
        "reward": traj.reward,
        "stop": traj.stop_reason,
        "steps": len(traj.steps),
        "errors": errors,
        "wall_s": round(traj.wall_s, 3),
    }
