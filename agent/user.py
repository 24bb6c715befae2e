"""Simulated users for multi-turn tasks: new user messages arrive mid-episode, so the thinking rule is exercised.

A user is anything with `reply(messages, task) -> str | None` (None ends the conversation); `ToolEnv(user=...)`
asks it once the task's scripted turns are used up. `ScriptedUser` says fixed lines; `LLMUser` has a model play
the user from the task's `user_instructions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STOP = "###STOP###"

USER_PROMPT = (
    "You are playing a user who is talking to an AI assistant. Stay in character and never act as the "
    "assistant.\n\nWho you are and what you want:\n{instructions}\n\n"
    "Write only your next message to the assistant, short and natural. Reveal details only when they are "
    f"needed. When your goal is met, or the assistant clearly cannot help, reply exactly {STOP}."
)


class ScriptedUser:
    """Says `turns` in order after the task's own scripted turns, then ends the conversation."""

    def __init__(self, turns: Sequence[str]) -> None:
        self.turns = list(turns)
        self._said: dict[str, int] = {}

    def reply(self, messages: list[dict], task: Any) -> str | None:
        key = getattr(task, "id", "")
        i = self._said.get(key, 0)
        if i >= len(self.turns):
            return None
        self._said[key] = i + 1
        return self.turns[i]


class LLMUser:
    """A model playing the user, over any OpenAI-compatible chat endpoint (synchronous: it runs inside the env).

    The conversation is shown with the roles swapped: the assistant's replies are what the user model reads,
    tool traffic is left out, since a user does not see it.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        instructions: str | None = None,
        max_turns: int = 5,
        timeout_s: float = 120.0,
        **sampling: Any,
    ) -> None:
        import httpx

        from .clients import api_root

        self.url = api_root(base_url) + "/chat/completions"
        self.model = model
        self.instructions = instructions
        self.max_turns = max_turns
        self.sampling = sampling
        self.http = httpx.Client(timeout=timeout_s)
        self._turns: dict[str, int] = {}

    def view(self, messages: list[dict], instructions: str) -> list[dict]:
        out = [{"role": "system", "content": USER_PROMPT.format(instructions=instructions)}]
        for m in messages:
            if m["role"] == "user":
                out.append({"role": "assistant", "content": m.get("content") or ""})
            elif m["role"] == "assistant" and not m.get("tool_calls") and m.get("content"):
                out.append({"role": "user", "content": m["content"]})
        return out

    def reply(self, messages: list[dict], task: Any) -> str | None:
        instructions = self.instructions or getattr(task, "user_instructions", None)
        key = getattr(task, "id", "")
        if not instructions or self._turns.get(key, 0) >= self.max_turns:
            return None
        self._turns[key] = self._turns.get(key, 0) + 1
        body = {"model": self.model, "messages": self.view(messages, instructions), **self.sampling}
        import httpx

        from .clients import ModelServerBadResponse, ModelServerError
        from .encodings._safe import clean_text

        try:
            response = self.http.post(self.url, json=body)
            response.raise_for_status()
            text = ((response.json().get("choices") or [{}])[0].get("message") or {}).get("content") or ""
        except (httpx.HTTPError, ValueError, AttributeError, IndexError, TypeError) as exc:
            # The user's model server is infrastructure: its failure is never the agent's (a RuntimeError, so
            # the rollout runner retries the episode).
            kind = ModelServerBadResponse if not isinstance(exc, httpx.HTTPError) else ModelServerError
            raise kind(f"the simulated user's model server failed: {type(exc).__name__}: {exc}") from None
        text = clean_text(str(text)).strip()
        return None if not text or STOP in text else text
