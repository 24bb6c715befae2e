"""What one episode leaves behind: every message, reasoning, call, result, reward, timing, token and error.

A trajectory is plain data (dicts and lists inside), so it round-trips through JSON and parquet unchanged and
datasets, evaluation and rescoring can be built from it later without re-running anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ERROR_KINDS = (
    "parse",  # the model's text could not be read as a message (bad DSML/JSON, cut mid-call)
    "unknown_tool",
    "invalid_arguments",  # bad JSON, wrong types, missing or extra arguments
    "tool_error",  # the tool refused the call (a domain error), raised, or timed out
    "no_tool_call",  # text where a tool call was needed
    "model_error",  # the policy failed in an unexpected way (or a model server error of no finer kind)
    # Model server failures, told apart (toolgym.agent.clients); all but context_length are the infrastructure's:
    "model_unavailable",  # nothing answers at the URL (connection refused)
    "model_timeout",  # no answer began within the client's request timeout (a hung server)
    "model_slow_stream",  # the answer began but did not finish within the request timeout
    "model_dropped",  # the connection closed before a whole answer
    "model_http_error",  # still 5xx (or 408/409/429) after the client's retries
    "model_bad_response",  # not JSON, or not the shape of a completion
    "model_rejected",  # another 4xx: a configuration error (unknown model, bad parameter)
    "context_length",  # the server refused the prompt as longer than the context window: the agent's failure
    "env_error",  # the environment's server died
)


@dataclass
class StepRecord:
    """One model turn and what the environment did with it."""

    index: int
    policy_s: float
    """Seconds the model took (the server round trip; all of a policy's time when it has no server)."""
    env_s: float
    """Seconds the environment (the tools, the verifier) took."""
    loop_s: float
    """Seconds of overhead outside model and tools: context building, rendering, parsing, bookkeeping."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: int = 0
    errors: list[dict] = field(default_factory=list)
    """{"kind": one of ERROR_KINDS, "detail": str} for each error of this step."""
    context_strategy: str | None = None
    """The overflow strategy the thinking context applied before this turn, if any."""


@dataclass
class Trajectory:
    """One episode. `messages` is the conversation as the environment holds it (reasoning included)."""

    env_id: str
    task_id: str
    policy: str
    seed: int | None
    messages: list[dict]
    tools: list[dict]
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    stop_reason: str = ""
    """answer | submit | step_budget | token_budget | time_budget | context_budget | context_length |
    repeated_failure | model_error | env_error. `model_error`: the model server failed (the step error's kind
    says how; an infrastructure failure); `context_length`: the server refused the grown prompt as longer than
    the model's context window (the agent's failure, like context_budget)."""
    verdict: dict | None = None
    answer: Any = None
    steps: list[StepRecord] = field(default_factory=list)
    malformed: list[dict] = field(default_factory=list)
    """Model outputs that never reached the environment: {"step", "text", "errors"}."""
    wall_s: float = 0.0

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.steps)

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.steps)

    def error_counts(self) -> dict[str, int]:
        counts = {kind: 0 for kind in ERROR_KINDS}
        for step in self.steps:
            for err in step.errors:
                counts[err["kind"]] = counts.get(err["kind"], 0) + 1
        return counts

    @property
    def success(self) -> bool:
        return self.reward >= 1.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Trajectory:
        data = dict(data)
        data["steps"] = [StepRecord(**s) for s in data.get("steps", [])]
        return cls(**data)
