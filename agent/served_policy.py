"""A picklable recipe for the policy of a served model: what `toolgym rollout --policy llm` builds in every
worker, whether the worker is in this process or a Ray actor on another machine (it only needs the URL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ServedPolicy:
    """Called with no argument, a fresh `LLMPolicy`; the HTTP client is made once per process and shared by the
    policies it makes (its `max_concurrency` caps that process's requests), and never pickled."""

    base_url: Any
    """The server's URL (whatever the clients take: one URL, or a list where they accept one)."""
    model: str
    encoding: str = "chat"
    """chat: the server's chat template; deepseek_v32 or hermes: raw completions rendered by us."""
    thinking: bool = False
    max_concurrency: int = 8
    timeout_s: float = 120.0
    sampling: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._client = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_client"] = None  # an open HTTP client stays in the process that made it
        return state

    def client(self):
        if self._client is None:
            from .clients import ChatClient, CompletionsClient

            if self.encoding == "chat":
                self._client = ChatClient(
                    self.base_url, self.model, max_concurrency=self.max_concurrency, timeout_s=self.timeout_s
                )
            else:
                self._client = CompletionsClient(
                    self.base_url,
                    self.model,
                    encoding=self.encoding,
                    max_concurrency=self.max_concurrency,
                    timeout_s=self.timeout_s,
                )
        return self._client

    def __call__(self):
        from .policies import LLMPolicy

        return LLMPolicy(self.client(), thinking=self.thinking, **self.sampling)
